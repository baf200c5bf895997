"""Standard Webhooks signatures: secrets, signing and verification. Pure Python, no Django.

Two schemes, as the specification defines them:

- ``v1``: HMAC-SHA256 with a shared ``whsec_<base64>`` secret;
- ``v1a``: ed25519 with a ``whsk_<base64>`` signing (private) key; receivers verify with its
  ``whpk_<base64>`` public key, which cannot sign.

Both sign ``"{msg_id}.{timestamp}.{body}"``. A key's prefix says its scheme, so a list of keys
(the current one and, during a rotation, the previous one) may mix them: each gives one entry
of the space-separated ``webhook-signature`` header.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SIGNATURE_VERSION = "v1"
SECRET_BYTES = 32
#: How many bytes a signing secret's key holds (Standard Webhooks: 24 to 64).
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64

#: The asymmetric scheme: its signature label, and the prefixes of its keys.
ASYMMETRIC_VERSION = "v1a"
SIGNING_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
#: Signature schemes an endpoint can use, by their signature label.
SCHEMES = (SIGNATURE_VERSION, ASYMMETRIC_VERSION)
_ED25519_BYTES = 32
_RAW = serialization.Encoding.Raw


def generate_secret(nbytes: int = SECRET_BYTES) -> str:
    """A new ``whsec_<base64>`` signing secret of ``nbytes`` random bytes (24 to 64)."""
    if not MIN_SECRET_BYTES <= nbytes <= MAX_SECRET_BYTES:
        raise ValueError("a signing secret needs 24 to 64 random bytes")
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
    """The ``webhook-signature`` value: one signature per valid key, space-separated
    (``v1a`` for a ``whsk_`` signing key, ``v1`` for a ``whsec_`` secret or raw HMAC key)."""
    return " ".join(
        sign_v1a(secret, msg_id, timestamp, body)
        if isinstance(secret, str) and key_scheme(secret) == ASYMMETRIC_VERSION
        else sign(secret, msg_id, timestamp, body)
        for secret in secrets)


# --- v1a: ed25519 ---------------------------------------------------------------------------


def key_scheme(key: str | bytes) -> str:
    """The scheme a signing key is for: ``"v1a"`` for ``whsk_…``, else ``"v1"``."""
    return (ASYMMETRIC_VERSION if isinstance(key, str) and key.startswith(SIGNING_KEY_PREFIX)
            else SIGNATURE_VERSION)


def generate_key(scheme: str = SIGNATURE_VERSION) -> str:
    """A new signing key of ``scheme``: a ``whsec_`` secret for ``v1``, a ``whsk_`` ed25519
    signing key for ``v1a``."""
    if scheme == ASYMMETRIC_VERSION:
        return generate_signing_key()
    if scheme == SIGNATURE_VERSION:
        return generate_secret()
    raise ValueError(f"unknown signature scheme {scheme!r}")


def generate_signing_key() -> str:
    """A new ``whsk_<base64>`` ed25519 signing key (the 32-byte private key)."""
    raw = Ed25519PrivateKey.generate().private_bytes(
        _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return SIGNING_KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def _decode_key(key: str, prefix: str, sizes: tuple[int, ...]) -> bytes:
    """The bytes of a ``<prefix><base64>`` key, checked to be one of ``sizes`` long (padding
    may be left out)."""
    if not key.startswith(prefix):
        raise ValueError(f"the key does not start with {prefix}")
    encoded = key[len(prefix):]
    try:
        raw = base64.b64decode(_padded(encoded), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"the {prefix} key is not valid base64") from exc
    if len(raw) not in sizes:
        raise ValueError(f"the {prefix} key is not an ed25519 key")
    return raw


def signing_private_key(key: str) -> Ed25519PrivateKey:
    """The ed25519 private key of a ``whsk_`` key: 32 bytes, or 64 (the private key then the
    public key, libsodium's layout; the public half must match)."""
    raw = _decode_key(key, SIGNING_KEY_PREFIX, (_ED25519_BYTES, 2 * _ED25519_BYTES))
    private = Ed25519PrivateKey.from_private_bytes(raw[:_ED25519_BYTES])
    public = private.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
    if len(raw) > _ED25519_BYTES and not hmac.compare_digest(raw[_ED25519_BYTES:], public):
        raise ValueError("the whsk_ key's public half does not match its private key")
    return private


def public_key(key: str) -> str:
    """The ``whpk_<base64>`` public key of a ``whsk_`` signing key: what receivers verify
    ``v1a`` signatures with."""
    raw = signing_private_key(key).public_key().public_bytes(
        _RAW, serialization.PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def sign_v1a(key: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1a,<base64 ed25519 signature of "{msg_id}.{timestamp}.{body}">`` by a ``whsk_``
    key."""
    signature = signing_private_key(key).sign(f"{msg_id}.{timestamp}.".encode() + body)
    return f"{ASYMMETRIC_VERSION},{base64.b64encode(signature).decode('ascii')}"


def verify_v1a(public: str, msg_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """Whether any ``v1a`` entry of the ``header`` is a valid signature by the ``whpk_`` key
    ``public``. ``ValueError`` when ``public`` is not a ``whpk_`` ed25519 public key."""
    verifier = Ed25519PublicKey.from_public_bytes(
        _decode_key(public, PUBLIC_KEY_PREFIX, (_ED25519_BYTES,)))
    content = f"{msg_id}.{timestamp}.".encode() + body
    for candidate in header.split():
        version, _, value = candidate.partition(",")
        if version != ASYMMETRIC_VERSION:
            continue
        try:
            verifier.verify(base64.b64decode(value, validate=True), content)
        except (InvalidSignature, binascii.Error, ValueError):
            continue
        return True
    return False


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
