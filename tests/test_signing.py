from __future__ import annotations

import base64
import re
import time
import uuid

import pytest
from standardwebhooks import Webhook

from webhooks import ids, signing
from webhooks.receiving import WebhookVerificationError, verify


def test_secret_format_is_whsec_with_24_plus_random_bytes() -> None:
    secret = signing.generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert secret != signing.generate_secret()
    with pytest.raises(ValueError):
        signing.generate_secret(16)


def test_signature_verifies_with_standardwebhooks() -> None:
    secret = signing.generate_secret()
    body = b'{"id":"evt_1","type":"a.b","data":{}}'
    ts = int(time.time())
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(ts),
        "webhook-signature": signing.signature_header([secret], "evt_1", ts, body),
    }
    assert Webhook(secret).verify(body, headers)["type"] == "a.b"


def test_rotation_header_carries_one_signature_per_secret_each_verifiable() -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    body, ts = b"{}", int(time.time())
    header = signing.signature_header([new, old], "msg", ts, body)
    assert len(header.split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, {"webhook-id": "msg", "webhook-timestamp": str(ts),
                                      "webhook-signature": header})


def test_our_verifier_accepts_standardwebhooks_signatures() -> None:
    secret = signing.generate_secret()
    body = b'{"x":1}'
    ts = int(time.time())
    from datetime import UTC, datetime

    sig = Webhook(secret).sign("msg_1", datetime.fromtimestamp(ts, UTC), body.decode())
    verify({"webhook-id": "msg_1", "webhook-timestamp": str(ts), "webhook-signature": sig},
           body, secret)


@pytest.mark.parametrize("mutate", ["body", "id", "timestamp", "secret", "stale", "garbage"])
def test_verifier_rejects_tampering(mutate: str) -> None:
    secret = signing.generate_secret()
    body, ts = b'{"a":1}', int(time.time())
    headers = {"webhook-id": "m", "webhook-timestamp": str(ts),
               "webhook-signature": signing.sign(secret, "m", ts, body)}
    now = None
    if mutate == "body":
        body = b'{"a":2}'
    elif mutate == "id":
        headers["webhook-id"] = "n"
    elif mutate == "timestamp":
        headers["webhook-timestamp"] = str(ts + 1)
    elif mutate == "secret":
        secret = signing.generate_secret()
    elif mutate == "stale":
        now = ts + 301
    else:
        headers["webhook-signature"] = "v1,not-base64 v2,abc ,,,"
    with pytest.raises(WebhookVerificationError):
        verify(headers, body, secret, now=now)


def test_verifier_rejects_missing_and_malformed_headers() -> None:
    secret = signing.generate_secret()
    with pytest.raises(WebhookVerificationError, match="missing webhook-id"):
        verify({}, b"", secret)
    with pytest.raises(WebhookVerificationError, match="invalid webhook-timestamp"):
        verify({"webhook-id": "m", "webhook-timestamp": "soon", "webhook-signature": "v1,x"},
               b"", secret)


def test_ids_are_time_ordered_uuid7_and_round_trip() -> None:
    first, second = ids.uuid7(), ids.uuid7()
    assert first.version == 7
    assert first.variant == "specified in RFC 4122"
    assert ids.encode(first) <= ids.encode(second) or first.int >> 80 == second.int >> 80
    public = ids.to_public("evt", first)
    assert public.startswith("evt_") and len(public) == 30
    assert ids.from_public("evt", public) == first
    for bad in ("dlv_" + public[4:], "evt_short", "evt_" + "U" * 26, "evt_" + "Z" * 26):
        with pytest.raises(ValueError):
            ids.from_public("evt", bad)


def test_ids_parse_either_form_and_match_their_pattern() -> None:
    """Every object's one public id, and the bare UUID accepted wherever an id is read."""
    for _ in range(200):
        value = ids.uuid7()
        for prefix in (ids.EVENT, ids.DELIVERY, ids.ENDPOINT, ids.ATTEMPT):
            public = ids.to_public(prefix, value)
            assert re.fullmatch(ids.pattern(prefix), public)
            for text in (public, public.lower(), f" {public} ", str(value), value.hex):
                assert ids.parse(prefix, text) == value
    biggest = ids.to_public("ep", uuid.UUID(int=2**128 - 1))
    assert re.fullmatch(ids.pattern("ep"), biggest) and biggest.startswith("ep_7")
    value = ids.uuid7()
    for wrong in (ids.to_public("dlv", value), "ep_", "ep_" + "Z" * 26, "ep_x", "", "nope",
                  "ep_" + ids.encode(value) + "0", str(value)[:-1]):
        assert ids.parse("ep", wrong) is None, wrong
