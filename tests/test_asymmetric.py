"""Asymmetric signatures (Standard Webhooks ``v1a``, ed25519): keys, signing, the endpoint's
scheme, rotation, the API, the admin and the receiver kit.

The sender's signatures are checked by :func:`spec_verify`, written from the specification's
text with ``cryptography`` alone, never through :mod:`webhooks.signing`.
"""

from __future__ import annotations

import base64
import time
from datetime import timedelta
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import connection
from django.test import Client
from django.urls import path, reverse
from django.utils import timezone
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from tests.factories import make_endpoint, make_owner, member_of, publish
from tests.receiver import Receiver
from webhooks import services, signing
from webhooks.delivery.loop import drain
from webhooks.delivery.sending import build_headers
from webhooks.models import Endpoint, Event
from webhooks.receiving import WebhookVerificationError, verify, webhook_receiver

pytestmark = pytest.mark.django_db

API = "/api/webhooks"


# --- an independent verifier, from the specification's text -----------------------------------


def spec_verify(public_key: str, headers: dict[str, str], body: bytes) -> int:
    """How many ``v1a`` entries of ``webhook-signature`` are valid ed25519 signatures by
    ``public_key`` (``whpk_<base64 of the public key>``) of ``"{id}.{timestamp}.{body}"``.

    Written from the Standard Webhooks text only: the signature header is a space-delimited
    list of ``<version>,<base64 signature>``; asymmetric ones are ``v1a`` (ed25519).
    """
    assert public_key.startswith("whpk_")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key[len("whpk_"):]))
    lowered = {name.lower(): value for name, value in headers.items()}
    content = (f"{lowered['webhook-id']}.{lowered['webhook-timestamp']}.".encode()
               + body)
    valid = 0
    for entry in lowered["webhook-signature"].split(" "):
        version, _, encoded = entry.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(encoded), content)
        except InvalidSignature:
            continue
        valid += 1
    return valid


def versions(headers: dict[str, str]) -> list[str]:
    """The version of each entry of the ``webhook-signature`` header, in order."""
    lowered = {name.lower(): value for name, value in headers.items()}
    return [entry.partition(",")[0] for entry in lowered["webhook-signature"].split(" ")]


# --- keys and signatures (pure) ---------------------------------------------------------------


def test_signing_keys_are_whsk_and_public_keys_whpk_of_raw_ed25519_keys() -> None:
    private = signing.generate_signing_key()
    assert private.startswith("whsk_")
    assert len(base64.b64decode(private[5:], validate=True)) == 32
    public = signing.public_key(private)
    assert public.startswith("whpk_")
    assert len(base64.b64decode(public[5:], validate=True)) == 32
    assert signing.generate_signing_key() != private
    # A 64-byte (seed and public key, libsodium's layout) whsk_ names the same key.
    raw = base64.b64decode(private[5:]) + base64.b64decode(public[5:])
    assert signing.public_key("whsk_" + base64.b64encode(raw).decode()) == public
    with pytest.raises(ValueError):
        signing.public_key("whsk_" + base64.b64encode(raw[:32] + bytes(32)).decode())
    for bad in ("whsk_", "whsk_!!!", "whsk_" + base64.b64encode(bytes(16)).decode(),
                signing.generate_secret()):
        with pytest.raises(ValueError):
            signing.public_key(bad)


def test_v1a_signatures_verify_independently_from_the_spec_text() -> None:
    private = signing.generate_signing_key()
    body, ts = b'{"id":"evt_1","type":"a.b","data":{"x":"\xc3\xa9"}}', int(time.time())
    header = signing.signature_header([private], "evt_1", ts, body)
    version, _, encoded = header.partition(",")
    assert version == "v1a"
    assert len(base64.b64decode(encoded, validate=True)) == 64
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(ts), "webhook-signature": header}
    assert spec_verify(signing.public_key(private), headers, body) == 1
    assert spec_verify(signing.public_key(private), headers, body + b" ") == 0
    other = signing.public_key(signing.generate_signing_key())
    assert spec_verify(other, headers, body) == 0


def test_a_header_mixes_schemes_one_signature_per_key() -> None:
    secret, private = signing.generate_secret(), signing.generate_signing_key()
    body, ts = b"{}", int(time.time())
    header = signing.signature_header([private, secret], "msg", ts, body)
    headers = {"webhook-id": "msg", "webhook-timestamp": str(ts), "webhook-signature": header}
    assert versions(headers) == ["v1a", "v1"]
    assert spec_verify(signing.public_key(private), headers, body) == 1
    # A Standard Webhooks library that knows only v1 skips the v1a entry.
    Webhook(secret).verify(body, headers)


# --- the receiver kit -------------------------------------------------------------------------


def signed_v1a(private: str, body: bytes, msg_id: str = "evt_1",
               ts: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": signing.signature_header([private], msg_id, ts, body)}


def test_the_receiver_kit_verifies_v1a_with_a_public_key() -> None:
    private = signing.generate_signing_key()
    public = signing.public_key(private)
    body = b'{"a":1}'
    headers = signed_v1a(private, body)
    verify(headers, body, public)
    # Next to whsec_ secrets (a receiver that takes both schemes), in any order.
    verify(headers, body, [signing.generate_secret(), public])
    verify(headers, body, (p for p in [signing.public_key(signing.generate_signing_key()),
                                       public]))


REFUSED = ["other key", "tampered body", "other id", "other timestamp", "stale", "v1 label",
           "garbage", "secret only", "v1 signature"]


@pytest.mark.parametrize("case", REFUSED)
def test_the_receiver_kit_refuses_what_the_key_did_not_sign(case: str) -> None:
    private = signing.generate_signing_key()
    body, ts = b'{"a":1}', int(time.time())
    genuine = signed_v1a(private, body, ts=ts)
    v1a_signature = genuine["webhook-signature"]
    # What each case changes of a genuine request: headers, body, the receiver's keys, now.
    changes: dict[str, dict[str, Any]] = {
        "other key": {"headers": signed_v1a(signing.generate_signing_key(), body, ts=ts)},
        "tampered body": {"body": b'{"a":2}'},
        "other id": {"headers": {**genuine, "webhook-id": "evt_2"}},
        "other timestamp": {"headers": {**genuine, "webhook-timestamp": str(ts + 1)}},
        "stale": {"now": ts + 301},
        "v1 label": {"headers": {**genuine, "webhook-signature": "v1," + v1a_signature[4:]}},
        "garbage": {"headers": {**genuine, "webhook-signature":
                                "v1a,not-base64 v1a, v1a,AAAA v2,abc ,,,"}},
        "secret only": {"keys": signing.generate_secret()},
        # A v1 signature never verifies against a public key.
        "v1 signature": {"headers": {**genuine, "webhook-signature": signing.sign(
            signing.generate_secret(), "evt_1", ts, body)}},
    }
    case_changes = changes[case]
    with pytest.raises(WebhookVerificationError):
        verify(case_changes.get("headers", genuine), case_changes.get("body", body),
               case_changes.get("keys", signing.public_key(private)),
               now=case_changes.get("now"))


def test_the_receiver_kit_refuses_a_private_key_or_a_broken_public_key() -> None:
    private = signing.generate_signing_key()
    body = b"{}"
    headers = signed_v1a(private, body)
    for key in (private, "whpk_", "whpk_%%%", "whpk_" + base64.b64encode(bytes(31)).decode()):
        with pytest.raises(WebhookVerificationError):
            verify(headers, body, key)


# --- the endpoint: scheme, key at rest, rotation ----------------------------------------------


def stored_columns(endpoint: Endpoint) -> str:
    """The key columns of ``endpoint`` as the database holds them."""
    pk = Endpoint._meta.pk
    assert pk is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT signing_secret, previous_secret FROM webhooks_endpoint "
                       "WHERE id = %s", [pk.get_db_prep_value(endpoint.pk, connection)])
        row = cursor.fetchone()
    assert row is not None
    return " ".join(row)


def test_a_v1a_endpoint_holds_an_encrypted_signing_key_and_shows_its_public_key() -> None:
    endpoint = make_endpoint("https://example.com/a", signature_scheme="v1a")
    endpoint.refresh_from_db()
    assert endpoint.signature_scheme == "v1a"
    assert endpoint.signing_secret.startswith("whsk_")
    assert endpoint.public_key == signing.public_key(endpoint.signing_secret)
    stored = stored_columns(endpoint)
    assert "whsk_" not in stored and endpoint.signing_secret[5:] not in stored
    plain = make_endpoint("https://example.com/b")
    assert plain.signature_scheme == "v1" and plain.secret.startswith("whsec_")
    assert plain.public_key is None


def test_rotating_a_v1a_key_keeps_the_old_key_signing_for_the_grace_period() -> None:
    endpoint = make_endpoint("https://example.com/a", signature_scheme="v1a")
    old_public = endpoint.public_key
    new = services.rotate_secret(endpoint, timedelta(hours=1))
    endpoint.refresh_from_db()
    assert new == endpoint.signing_secret and new.startswith("whsk_")
    assert endpoint.previous_secret.startswith("whsk_")
    assert endpoint.public_key not in (None, old_public)
    event = publish()
    body = event.payload.encode()
    headers = build_headers(endpoint, event, body, int(time.time()))
    assert versions(headers) == ["v1a", "v1a"]
    assert spec_verify(endpoint.public_key, headers, body) == 1
    assert old_public is not None and spec_verify(old_public, headers, body) == 1
    # After the grace period, only the new key signs.
    Endpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1))
    endpoint.refresh_from_db()
    headers = build_headers(endpoint, event, body, int(time.time()))
    assert versions(headers) == ["v1a"]
    assert spec_verify(old_public, headers, body) == 0


def test_switching_scheme_is_a_rotation_old_secret_signs_v1_for_the_grace_period() -> None:
    endpoint = make_endpoint("https://example.com/a")
    old_secret = endpoint.secret
    endpoint.signature_scheme = "v1a"
    services.update_endpoint(endpoint, ["signature_scheme"], disabled_reason="")
    endpoint.refresh_from_db()
    assert endpoint.signing_secret.startswith("whsk_")
    assert endpoint.signing_secrets() == [endpoint.signing_secret, old_secret]
    event = publish()
    body = event.payload.encode()
    headers = build_headers(endpoint, event, body, int(time.time()))
    assert versions(headers) == ["v1a", "v1"]
    assert endpoint.public_key is not None
    assert spec_verify(endpoint.public_key, headers, body) == 1
    Webhook(old_secret).verify(body, headers)  # the receiver has until the grace ends
    # Saving the same scheme again changes no key.
    key = endpoint.signing_secret
    services.update_endpoint(endpoint, ["signature_scheme"], disabled_reason="")
    endpoint.refresh_from_db()
    assert endpoint.signing_secret == key
    # And back to v1: a new whsec_, the ed25519 key signing during the grace period.
    endpoint.signature_scheme = "v1"
    endpoint.save()
    endpoint.refresh_from_db()
    assert endpoint.secret.startswith("whsec_") and endpoint.previous_secret == key


# --- on the wire: a real receiver -------------------------------------------------------------


def test_a_real_receiver_gets_a_v1a_signed_delivery_that_verifies(receiver: Receiver) -> None:
    endpoint = make_endpoint(receiver.url(), "invoice.paid", signature_scheme="v1a")
    event = publish(data={"invoice": 1})
    drain()
    (request,) = receiver.received()
    assert request.headers["webhook-id"] == event.public_id
    assert versions(request.headers) == ["v1a"]
    assert endpoint.public_key is not None
    assert spec_verify(endpoint.public_key, request.headers, request.body) == 1
    verify(request.headers, request.body, endpoint.public_key)
    with pytest.raises(WebhookVerificationError):
        verify(request.headers, request.body,
               signing.public_key(signing.generate_signing_key()))


def test_a_v1_endpoints_headers_are_unchanged(receiver: Receiver) -> None:
    endpoint = make_endpoint(receiver.url(), "invoice.paid")
    publish(data={"invoice": 1})
    drain()
    (request,) = receiver.received()
    assert versions(request.headers) == ["v1"]
    assert request.headers["webhook-signature"] == signing.sign(
        endpoint.secret, request.headers["webhook-id"],
        int(request.headers["webhook-timestamp"]), request.body)
    Webhook(endpoint.secret).verify(request.body, request.headers)


RECEIVED: list[bytes] = []
PUBLIC_KEYS: list[str] = []


@webhook_receiver(lambda request: PUBLIC_KEYS)
def _public_key_view(request: Any) -> Any:
    from django.http import HttpResponse

    RECEIVED.append(request.body)
    return HttpResponse(status=204)


urlpatterns = [path("v1a/", _public_key_view)]


@pytest.mark.urls("tests.test_asymmetric")
def test_a_receiver_view_configured_with_whpk_accepts_our_delivery(receiver: Receiver) -> None:
    endpoint = make_endpoint(receiver.url(), signature_scheme="v1a")
    publish()
    drain()
    (request,) = receiver.received()
    meta = {f"HTTP_{name.upper().replace('-', '_')}": value
            for name, value in request.headers.items() if name.startswith("webhook-")}
    RECEIVED.clear()
    PUBLIC_KEYS[:] = [signing.public_key(signing.generate_signing_key())]
    refused = Client().post("/v1a/", request.body, content_type="application/json", **meta)
    assert refused.status_code == 401 and RECEIVED == []
    assert endpoint.public_key is not None
    PUBLIC_KEYS[:] = [endpoint.public_key]
    accepted = Client().post("/v1a/", request.body, content_type="application/json", **meta)
    assert accepted.status_code == 204 and [request.body] == RECEIVED


# --- API --------------------------------------------------------------------------------------


@pytest.fixture
def alice() -> Any:
    """An owner of this configuration (a user, or an organization)."""
    return make_owner("alice")


def client_for(owner: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(member_of(owner))
    return client


@pytest.mark.owners
@pytest.mark.usefixtures("fresh_throttles")
def test_the_api_sets_the_scheme_and_shows_the_public_key_never_the_private_one(
        alice: Any) -> None:
    client = client_for(alice)
    created = client.post(API + "/endpoints/", {"url": "https://example.com/hook",
                                               "events": ["invoice.paid"],
                                               "signature_scheme": "v1a"}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["signature_scheme"] == "v1a"
    endpoint = Endpoint.objects.get(pk=Endpoint.parse_id(created.json()["id"]))
    secret = client.get(API + f"/endpoints/{endpoint.public_id}/secret/")
    assert secret.status_code == 200
    assert secret.json() == {"public_key": endpoint.public_key}
    assert secret["Cache-Control"] == "no-store"
    assert endpoint.signing_secret[5:] not in secret.content.decode()
    assert client.get(API + f"/endpoints/{endpoint.pk}/").json()["signature_scheme"] == "v1a"

    old_public = endpoint.public_key
    rotated = client.post(API + f"/endpoints/{endpoint.pk}/rotate-secret/",
                          {"grace_period": 60}, format="json")
    assert rotated.status_code == 200
    endpoint.refresh_from_db()
    assert set(rotated.json()) == {"public_key", "previous_secret_expires_at"}
    assert rotated.json()["public_key"] == endpoint.public_key != old_public
    assert rotated["Cache-Control"] == "no-store"

    bad = client.post(API + "/endpoints/", {"url": "https://example.com/hook",
                                           "events": ["invoice.paid"],
                                           "signature_scheme": "v2"}, format="json")
    assert bad.status_code == 400 and "signature_scheme" in bad.json()


@pytest.mark.owners
@pytest.mark.usefixtures("fresh_throttles")
def test_the_api_switches_a_v1_endpoint_to_v1a_and_a_put_without_it_keeps_it(
        alice: Any) -> None:
    client = client_for(alice)
    endpoint = make_endpoint("https://example.com/h", owner=alice)
    assert client.get(API + f"/endpoints/{endpoint.pk}/").json()["signature_scheme"] == "v1"
    assert client.get(API + f"/endpoints/{endpoint.pk}/secret/").json() == {
        "secret": endpoint.secret}
    old_secret = endpoint.secret
    changed = client.patch(API + f"/endpoints/{endpoint.pk}/", {"signature_scheme": "v1a"},
                           format="json")
    assert changed.status_code == 200 and changed.json()["signature_scheme"] == "v1a"
    endpoint.refresh_from_db()
    assert endpoint.signing_secrets() == [endpoint.signing_secret, old_secret]
    key = endpoint.signing_secret
    replaced = client.put(API + f"/endpoints/{endpoint.pk}/",
                          {"url": "https://example.com/h2", "events": ["*"]}, format="json")
    assert replaced.status_code == 200 and replaced.json()["signature_scheme"] == "v1a"
    endpoint.refresh_from_db()
    assert endpoint.signing_secret == key


# --- admin ------------------------------------------------------------------------------------


def test_the_admin_picks_the_scheme_and_shows_the_public_key(admin_client: Client) -> None:
    add = admin_client.get(reverse("admin:webhooks_endpoint_add"))
    assert 'name="signature_scheme"' in add.content.decode()
    response = admin_client.post(reverse("admin:webhooks_endpoint_add"), {
        "url": "https://example.com/admin-v1a", "description": "", "is_active": "on",
        "events": ["*"], "payload_fields": "{}", "headers": "{}",
        "signature_scheme": "v1a",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    endpoint = Endpoint.objects.get(url="https://example.com/admin-v1a")
    assert endpoint.signature_scheme == "v1a" and endpoint.public_key is not None
    page = admin_client.get(reverse("admin:webhooks_endpoint_change", args=[endpoint.pk]))
    html = page.content.decode()
    assert endpoint.public_key in html
    assert endpoint.signing_secret[5:] not in html
    # The private key is never revealed: the reveal route sends back to the page.
    reveal = admin_client.post(reverse("admin:webhooks_endpoint_secret", args=[endpoint.pk]))
    assert endpoint.signing_secret[5:] not in reveal.content.decode()
    rotate = admin_client.post(reverse("admin:webhooks_endpoint_rotate_secret",
                                       args=[endpoint.pk]))
    assert rotate.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.previous_secret.startswith("whsk_")


def test_a_test_event_to_a_v1a_endpoint_is_signed_v1a(receiver: Receiver) -> None:
    endpoint = make_endpoint(receiver.url(), signature_scheme="v1a")
    services.send_test_event(endpoint)
    drain()
    (request,) = receiver.received()
    assert endpoint.public_key is not None
    assert spec_verify(endpoint.public_key, request.headers, request.body) == 1
    assert Event.objects.get().type == "webhook.test"
