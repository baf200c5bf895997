"""URLs of the receiver-kit trust tests: a handler that breaks a unique constraint, several
receivers (other secrets, per-URL senders, a shared name), for ``tests/test_receiving_trust.py``."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpResponse, JsonResponse
from django.urls import path
from django.views import View

from tests.receiving_urls import OLD_SECRET, SECRET
from tests.testapp.models import Membership, Note, Organization
from webhooks.receiving import webhook_receiver

OTHER_SECRET = "whsec_" + "b3RoZXItcmVjZWl2ZXItc2VjcmV0LTMyLWJ5dGVzISE="
#: 32 bytes whose base64 ends in one "=", written without it (Standard Webhooks allows it).
UNPADDED_SECRET = "whsec_" + "dW5wYWRkZWQtc2VjcmV0LW9mLTMyLWJ5dGVzLWxvbmc"
TENANT_SECRETS = {"acme": SECRET, "globex": OTHER_SECRET}
handled: list[tuple[str, dict[str, Any]]] = []


def _handle(name: str, request: Any) -> HttpResponse:
    handled.append((name, json.loads(request.body)))
    return JsonResponse({"ok": True})


@webhook_receiver(SECRET)
def first(request: Any) -> HttpResponse:
    return _handle("first", request)


@webhook_receiver(OTHER_SECRET)
def second(request: Any) -> HttpResponse:
    return _handle("second", request)


@webhook_receiver(lambda request: TENANT_SECRETS[request.resolver_match.kwargs["tenant"]])
def tenant(request: Any, tenant: str) -> HttpResponse:
    return _handle(tenant, request)


@webhook_receiver([SECRET, OLD_SECRET], name="partner")
def partner_v1(request: Any) -> HttpResponse:
    return _handle("partner_v1", request)


@webhook_receiver(SECRET, name="partner")
def partner_v2(request: Any) -> HttpResponse:
    return _handle("partner_v2", request)


@webhook_receiver(lambda request: TENANT_SECRETS[request.headers["x-partner"]],
                  name=lambda request: "partner:" + request.headers["x-partner"])
def by_header(request: Any) -> HttpResponse:
    """One view for several senders told apart by a header: ``name`` says which one."""
    return _handle(request.headers["x-partner"], request)


class ClassBased(View):
    def post(self, request: Any) -> HttpResponse:
        return _handle("class", request)


@webhook_receiver(UNPADDED_SECRET)
def unpadded(request: Any) -> HttpResponse:
    return _handle("unpadded", request)


@webhook_receiver(SECRET)
def breaks_a_constraint(request: Any) -> HttpResponse:
    """Writes a note, then a membership twice: the handler's own ``IntegrityError``."""
    Note.objects.create(text=request.headers["webhook-id"][:100])
    organization = Organization.objects.create(name="acme")
    user = get_user_model().objects.create(username="member")
    Membership.objects.create(organization=organization, user=user)
    Membership.objects.create(organization=organization, user=user)
    return HttpResponse("unreachable")


urlpatterns = [
    path("first/", first),
    path("second/", second),
    path("tenant/<slug:tenant>/", tenant),
    path("partner/v1/", partner_v1),
    path("partner/v2/", partner_v2),
    path("unpadded/", unpadded),
    path("constraint/", breaks_a_constraint),
    path("by-header/", by_header),
    path("class/", webhook_receiver(SECRET)(ClassBased.as_view())),
]
