"""URLs of the receiver-kit tests: views decorated with ``webhook_receiver``."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse, JsonResponse
from django.urls import path

from webhooks.receiving import webhook_receiver

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_" + "QXNvdGhlcnRlc3RzZWNyZXRvZjMyYnl0ZXMhIQ=="
handled: list[dict[str, Any]] = []
failures: list[str] = []


@webhook_receiver(SECRET)
def receive(request: Any) -> HttpResponse:
    handled.append(json.loads(request.body))
    return JsonResponse({"ok": True})


@webhook_receiver(lambda request: [SECRET, OLD_SECRET])
def receive_rotating(request: Any) -> HttpResponse:
    handled.append(json.loads(request.body))
    return JsonResponse({"ok": True})


@webhook_receiver(SECRET)
def flaky(request: Any) -> HttpResponse:
    from webhooks.models import ReceivedWebhook

    if failures:
        failures.pop()
        assert ReceivedWebhook.objects.filter(webhook_id=request.headers["webhook-id"]).exists()
        return HttpResponse("try later", status=503)
    handled.append(json.loads(request.body))
    return HttpResponse("ok")


urlpatterns = [
    path("hook/", receive),
    path("rotating/", receive_rotating),
    path("flaky/", flaky),
]
