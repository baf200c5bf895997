"""Verifying webhooks on the receiving side (Standard Webhooks), for Django sites and tests."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from webhooks import signing
from webhooks.exceptions import WebhooksError

DEFAULT_TOLERANCE = 300


class WebhookVerificationError(WebhooksError):
    """The request is not a genuine, fresh webhook: bad or missing headers or signature."""


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    # Django's request.META spelling.
    meta = headers.get("HTTP_" + name.upper().replace("-", "_"))
    if meta is None:
        raise WebhookVerificationError(f"missing {name} header")
    return meta


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secret_or_secrets: str | Iterable[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check a webhook's signature and timestamp; raise :class:`WebhookVerificationError`.

    ``headers`` may be ``request.headers`` or ``request.META``. Several secrets can be given
    (during a rotation on the receiving side); a signature by any of them is accepted. The
    comparison is constant-time and the timestamp must be within ``tolerance`` seconds.
    """
    msg_id = _header(headers, "webhook-id")
    raw_timestamp = _header(headers, "webhook-timestamp")
    signature = _header(headers, "webhook-signature")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise WebhookVerificationError("invalid webhook-timestamp header") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old or in the future")
    secrets = [secret_or_secrets] if isinstance(secret_or_secrets, str) else secret_or_secrets
    matched = False
    for secret in secrets:
        try:
            expected = signing.sign(secret, msg_id, timestamp, body)
        except ValueError:
            raise WebhookVerificationError("the secret is not a valid whsec_ secret") from None
        matched |= signing.signatures_match(expected, signature)
    if not matched:
        raise WebhookVerificationError("no matching signature")
