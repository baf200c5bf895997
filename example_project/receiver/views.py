"""The receiving end: ``POST /receiver/<slug>/`` verifies and stores, ``GET /receiver/`` lists."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from example_project.receiver.models import Inbox, ReceivedWebhook
from webhooks.receiving import WebhookVerificationError, verify


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _pretty(body: str) -> str:
    payload = _parse(body.encode())
    return body if payload is None else json.dumps(payload, indent=2, ensure_ascii=False)


@csrf_exempt
@require_POST
def receive(request: HttpRequest, slug: str) -> HttpResponse:
    """Verify the signature, deduplicate on ``webhook-id``, store, answer 2xx quickly."""
    inbox = get_object_or_404(Inbox, slug=slug)
    webhook_id = request.headers.get("webhook-id", "")
    payload = _parse(request.body)
    row = ReceivedWebhook(
        inbox=inbox,
        webhook_id=webhook_id[:255],
        event_type=str(payload.get("type", ""))[:100] if isinstance(payload, dict) else "",
        headers=dict(request.headers),
        body=request.body.decode("utf-8", "replace"),
    )
    try:
        verify(request.headers, request.body, inbox.secret)
    except WebhookVerificationError as exc:
        row.error = str(exc)
        row.save()
        return JsonResponse({"ok": False, "error": str(exc)}, status=401)
    # Deliveries are "at least once": a retry of something already handled is acknowledged
    # and ignored.
    if inbox.webhooks.filter(webhook_id=webhook_id, verified=True).exists():
        return JsonResponse({"ok": True, "duplicate": True})
    row.verified = True
    row.save()
    return JsonResponse({"ok": True})


@require_GET
def inbox_list(request: HttpRequest) -> HttpResponse:
    """The latest webhooks received, refreshed every few seconds."""
    rows = ReceivedWebhook.objects.select_related("inbox")[:50]
    entries = [(row, _pretty(row.body)) for row in rows]
    return render(request, "receiver/inbox.html", {
        "entries": entries,
        "inboxes": Inbox.objects.all(),
        "base_url": request.build_absolute_uri("/receiver/"),
    })
