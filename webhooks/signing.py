"""Standard Webhooks signatures: secrets, signing and verification. Pure Python, no Django."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _secrets
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SIGNATURE_VERSION = "v1"
SECRET_BYTES = 32


def generate_secret(nbytes: int = SECRET_BYTES) -> str:
    """A new ``whsec_<base64>`` signing secret of ``nbytes`` random bytes (24 at least)."""
    if nbytes < 24:
        raise ValueError("a signing secret needs at least 24 random bytes")
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(nbytes)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The raw HMAC key of a ``whsec_`` secret (a bare base64 string is accepted too).

    The base64 may omit its ``=`` padding, as Standard Webhooks allows.
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(_padded(encoded), validate=True)
    except ValueError as exc:
        raise ValueError("the signing secret is not valid base64") from exc


def _padded(encoded: str) -> str:
    """``encoded`` completed with the ``=`` padding its length lacks (none if it has it)."""
    return encoded + "=" * (-len(encoded) % 4)


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">`` for one secret."""
    key = secret if isinstance(secret, bytes) else secret_key(secret)
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(f"{msg_id}.{timestamp}.".encode())
    mac.update(body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(mac.digest()).decode('ascii')}"


def signature_header(
    secrets: Iterable[str | bytes], msg_id: str, timestamp: int, body: bytes
) -> str:
    """The ``webhook-signature`` value: one signature per valid secret, space-separated."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def signatures_match(expected: str, header: str) -> bool:
    """Whether any ``v1`` signature in ``header`` equals ``expected``, compared in constant time.

    Every candidate is compared (no early exit) so timing does not reveal which one matched.
    """
    found = False
    expected_bytes = expected.encode("ascii")
    for candidate in header.split():
        version, _, _value = candidate.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        if hmac.compare_digest(candidate.encode("ascii", "replace"), expected_bytes):
            found = True
    return found
