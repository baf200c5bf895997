"""The receiver kit: verify(), the view decorator, dedupe, and interop with other libraries."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.http import JsonResponse
from django.test import Client, override_settings
from django.utils import timezone
from standardwebhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook

import webhooks
from tests import receiving_urls
from tests.helpers import make_endpoint
from tests.receiver import Receiver
from webhooks import signing
from webhooks.delivery.fanout import fan_out
from webhooks.delivery.loop import drain
from webhooks.models import ReceivedWebhook
from webhooks.receiving import WebhookVerificationError, verify

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.receiving_urls")]
SECRET = receiving_urls.SECRET


@pytest.fixture(autouse=True)
def _clean() -> None:
    receiving_urls.handled.clear()
    receiving_urls.failures.clear()


def signed(body: bytes, msg_id: str = "evt_1", secret: str = SECRET,
           ts: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {"HTTP_WEBHOOK_ID": msg_id, "HTTP_WEBHOOK_TIMESTAMP": str(ts),
            "HTTP_WEBHOOK_SIGNATURE": signing.sign(secret, msg_id, ts, body)}


def post(path: str, body: bytes, **headers: str) -> Any:
    return Client().post(path, body, content_type="application/json", **headers)


def test_a_genuine_webhook_is_handled_once() -> None:
    body = b'{"type":"order.created","data":{"id":1}}'
    first = post("/hook/", body, **signed(body))
    again = post("/hook/", body, **signed(body))  # the sender retried (new timestamp)
    assert first.status_code == 200 and first.json() == {"ok": True}
    assert again.status_code == 200 and again.json() == {"duplicate": True}
    assert receiving_urls.handled == [{"type": "order.created", "data": {"id": 1}}]
    assert ReceivedWebhook.objects.get().webhook_id == "evt_1"


@pytest.mark.parametrize("case,status", [
    ("no headers", 400), ("bad timestamp", 400), ("bad signature", 401),
    ("other secret", 401), ("stale", 401), ("tampered body", 401),
])
def test_rejections(case: str, status: int) -> None:
    body = b'{"a":1}'
    headers = signed(body)
    if case == "no headers":
        headers = {}
    elif case == "bad timestamp":
        headers["HTTP_WEBHOOK_TIMESTAMP"] = "soon"
    elif case == "bad signature":
        headers["HTTP_WEBHOOK_SIGNATURE"] = "v1,AAAA"
    elif case == "other secret":
        headers = signed(body, secret=signing.generate_secret())
    elif case == "stale":
        headers = signed(body, ts=int(time.time()) - 3600)
    else:
        body = b'{"a":2}'
    response = post("/hook/", body, **headers)
    assert response.status_code == status
    assert "error" in response.json()
    assert receiving_urls.handled == []
    assert not ReceivedWebhook.objects.exists()


def test_only_post() -> None:
    assert Client().get("/hook/").status_code == 405


def test_a_failing_handler_forgets_the_id_so_the_retry_runs_it() -> None:
    body = b'{"n":1}'
    receiving_urls.failures.append("once")
    assert post("/flaky/", body, **signed(body, "evt_f")).status_code == 503
    assert not ReceivedWebhook.objects.exists()
    assert post("/flaky/", body, **signed(body, "evt_f")).status_code == 200
    assert receiving_urls.handled == [{"n": 1}]


def test_rotation_on_the_receiving_side_accepts_either_secret() -> None:
    body = b'{"r":1}'
    for i, secret in enumerate((SECRET, receiving_urls.OLD_SECRET)):
        assert post("/rotating/", body, **signed(body, f"evt_r{i}", secret)).status_code == 200
    assert len(receiving_urls.handled) == 2


def test_expired_ids_are_forgotten() -> None:
    ReceivedWebhook.objects.create(webhook_id="old", expires_at=timezone.now()
                                   - timedelta(seconds=1))
    ReceivedWebhook.objects.create(webhook_id="fresh", expires_at=timezone.now()
                                   + timedelta(days=1))
    body = b"{}"
    post("/hook/", body, **signed(body, "evt_new"))
    assert set(ReceivedWebhook.objects.values_list("webhook_id", flat=True)) == {"fresh",
                                                                                  "evt_new"}


# --- interop both ways -----------------------------------------------------------------------


@override_settings(ROOT_URLCONF="tests.urls")
def test_our_deliveries_verify_with_svix_and_standardwebhooks(receiver: Receiver) -> None:
    endpoint = make_endpoint(receiver.url())
    endpoint.rotate_secret(timedelta(hours=1))  # two signatures: each library must cope
    webhooks.send_event("invoice.paid", {"amount": "1.00"})
    fan_out()
    drain()
    (request,) = receiver.received()
    for secret in (endpoint.secret, endpoint.previous_secret):
        SvixWebhook(secret).verify(request.body, request.headers)  # raises when it fails
        payload = StandardWebhook(secret).verify(request.body, request.headers)
        assert payload["data"] == {"amount": "1.00"}
    verify(request.headers, request.body, endpoint.secret)


@pytest.mark.parametrize("library", [SvixWebhook, StandardWebhook])
def test_their_signatures_verify_with_ours(library: Any) -> None:
    body = '{"type":"x.y","data":{}}'
    now = datetime.now(UTC).replace(microsecond=0)
    signature = library(SECRET).sign("msg_abc", now, body)
    headers = {"webhook-id": "msg_abc", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": signature}
    verify(headers, body.encode(), SECRET)
    with pytest.raises(WebhookVerificationError):
        verify(headers, body.encode() + b" ", SECRET)
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    assert post("/hook/", body.encode(), **meta).status_code == 200
    assert json.loads(body) in receiving_urls.handled


# --- strict timestamps and usable secrets --------------------------------------------------


def _signed_at(raw_timestamp: str, body: bytes, secret: str | bytes = SECRET) -> dict[str, str]:
    """Headers whose signature is right for the timestamp ``int()`` would read in
    ``raw_timestamp``: only the header's spelling is wrong."""
    return {"webhook-id": "evt_ts", "webhook-timestamp": raw_timestamp,
            "webhook-signature": signing.sign(secret, "evt_ts", int(raw_timestamp), body)}


@pytest.mark.parametrize("spell", [
    lambda ts: f"+{ts}", lambda ts: f" {ts}", lambda ts: f"{ts} ", lambda ts: f"\t{ts}",
    lambda ts: f"{ts}\n", lambda ts: f"0{ts}", lambda ts: f"000{ts}",
    lambda ts: f"{ts[:4]}_{ts[4:]}",
    lambda ts: "".join(chr(0x0660 + int(c)) for c in ts),  # Arabic-Indic digits
    lambda ts: "".join(chr(0xFF10 + int(c)) for c in ts),  # full-width digits
], ids=["plus", "leading space", "trailing space", "tab", "newline", "leading zero",
        "zeros", "underscore", "arabic-indic digits", "full-width digits"])
def test_the_timestamp_is_ascii_digits_only(spell: Any) -> None:
    body = b'{"a":1}'
    headers = _signed_at(spell(str(int(time.time()))), body)
    with pytest.raises(WebhookVerificationError, match="webhook-timestamp") as info:
        verify(headers, body, SECRET)
    assert info.value.malformed
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    assert post("/hook/", body, **meta).status_code == 400
    assert receiving_urls.handled == []


def test_a_plain_timestamp_still_verifies() -> None:
    body = b'{"a":1}'
    verify(_signed_at(str(int(time.time())), body), body, SECRET)


EMPTY_SECRETS = ["", "whsec_", [], [""], ["whsec_"], [SECRET, "whsec_"], ()]


@pytest.mark.parametrize("secrets", EMPTY_SECRETS, ids=repr)
def test_an_empty_secret_is_refused_by_verify(secrets: Any) -> None:
    """A forgery signed with an empty key must never verify: an empty secret (or none) is a
    configuration error, raised whatever the request."""
    from webhooks.receiving import WebhookSecretError

    body = b'{"forged":true}'
    forged = _signed_at(str(int(time.time())), body, secret=b"")
    with pytest.raises(WebhookSecretError, match="empty"):
        verify(forged, body, secrets)


@pytest.mark.parametrize("secrets", EMPTY_SECRETS, ids=repr)
def test_an_empty_secret_is_refused_by_the_decorator_at_once(secrets: Any) -> None:
    from webhooks.receiving import WebhookSecretError, webhook_receiver

    with pytest.raises(WebhookSecretError, match="empty"):
        webhook_receiver(secrets)


@pytest.mark.parametrize("secrets", EMPTY_SECRETS, ids=repr)
def test_an_empty_secret_from_a_callable_fails_the_request_loudly(secrets: Any) -> None:
    """The callable is asked per request: an empty answer is a server error (the sender
    retries later), never a 2xx for a forgery nor a 401 blaming the sender."""
    from django.test import RequestFactory

    from webhooks.receiving import WebhookSecretError, webhook_receiver

    handled: list[Any] = []
    view = webhook_receiver(lambda request: secrets, dedupe=False)(
        lambda request: handled.append(request) or JsonResponse({"ok": True}))
    body = b'{"forged":true}'
    forged = _signed_at(str(int(time.time())), body, secret=b"")
    request = RequestFactory().post(
        "/x/", body, content_type="application/json",
        **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in forged.items()})
    with pytest.raises(WebhookSecretError):
        view(request)
    assert handled == []
