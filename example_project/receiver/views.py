"""The receiving end: ``POST /receiver/<slug>/`` verifies and stores, ``GET /receiver/`` lists.

The receiver plays the third party that registered each endpoint: it verifies a webhook with
what that party would have copied from the site's API or admin, for every endpoint that posts
to the inbox's URL (the demo's own endpoints, and any made through the API or the admin, such
as the one ``docs/api.md`` creates): its ``whsec_`` secret (``v1``) or ``whpk_`` public key
(``v1a``), and during a rotation the previous one as well.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from example_project.receiver.models import Inbox, ReceivedWebhook
from webhooks import signing
from webhooks.models import Endpoint
from webhooks.receiving import WebhookVerificationError, verify


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _pretty(body: str) -> str:
    payload = _parse(body.encode())
    return body if payload is None else json.dumps(payload, indent=2, ensure_ascii=False)


def _receiver_key(key: str) -> str:
    """What a receiver verifies ``key``'s signatures with: a ``whsec_`` secret itself, the
    ``whpk_`` public key of a ``whsk_`` signing key."""
    if key.startswith(signing.SIGNING_KEY_PREFIX):
        return signing.public_key(key)
    return key


def verification_keys(request: HttpRequest, inbox: Inbox | None) -> list[str]:
    """The keys the webhooks posted to this URL are verified with: the inbox's own secret
    (when it has one), and the keys of every endpoint whose URL is this one."""
    keys = [_receiver_key(inbox.secret)] if inbox is not None and inbox.secret else []
    for endpoint in Endpoint.objects.filter(url__contains=request.path):
        if urlsplit(endpoint.url).path == request.path:
            keys += [_receiver_key(key) for key in endpoint.signing_secrets()]
    return list(dict.fromkeys(keys))


@csrf_exempt
@require_POST
def receive(request: HttpRequest, slug: str) -> HttpResponse:
    """Verify the signature, deduplicate on ``webhook-id``, store, answer 2xx quickly.

    An inbox is made on the first webhook to a new slug that an endpoint posts to (an endpoint
    created through the API, say); a slug nothing posts to is a 404.
    """
    inbox = Inbox.objects.filter(slug=slug).first()
    keys = verification_keys(request, inbox)
    if inbox is None:
        if not keys:
            raise Http404("No inbox, and no endpoint posts here.")
        inbox, _created = Inbox.objects.get_or_create(slug=slug)
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
        if not keys:
            raise WebhookVerificationError("no endpoint posts here any more: nothing to verify "
                                           "the signature with")
        verify(request.headers, request.body, keys)
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
