"""Identifiers that are unique, time-ordered and not guessable: UUIDv7 and their public form.

Every object has one public id, ``<prefix>_<26 characters>`` (``evt_01J…``, ``dlv_01J…``,
``ep_01J…``, ``att_01J…``): the API answers it as ``id``, the admin shows and links it, the logs
and the management commands use it. It is the row's UUID primary key in Crockford base32, so it
costs no column and no lookup. Wherever an id is read, :func:`parse` also accepts the bare UUID
(the form the REST API used to answer).
"""

from __future__ import annotations

import os
import time
import uuid

#: The prefixes of the public ids: events, deliveries, endpoints, delivery attempts.
EVENT, DELIVERY, ENDPOINT, ATTEMPT = "evt", "dlv", "ep", "att"

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_CROCKFORD)}
_DECODE.update({c.lower(): i for c, i in _DECODE.items()})
#: Every 10-bit value as its two characters: an id is 13 lookups (every event pays this).
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]


def uuid7() -> uuid.UUID:
    """Return a UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits.

    Rows keyed by these sort by creation time, which keeps B-tree inserts at the right edge of
    the index, while the random part makes ids impossible to enumerate.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # 12 random bits
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # 62 random bits
    return uuid.UUID(int=value)


def encode(value: uuid.UUID) -> str:
    """Encode a UUID as 26 Crockford base32 characters (sortable like the UUID itself)."""
    n = value.int
    return "".join([_PAIRS[(n >> shift) & 0x3FF] for shift in range(120, -1, -10)])


def decode(text: str) -> uuid.UUID:
    """Decode :func:`encode` output; raises ``ValueError`` for anything else."""
    if len(text) != 26:
        raise ValueError("expected 26 characters")
    n = 0
    for char in text:
        try:
            n = (n << 5) | _DECODE[char]
        except KeyError:
            raise ValueError(f"invalid character {char!r}") from None
    if n >> 128:
        raise ValueError("value out of range")
    return uuid.UUID(int=n)


def to_public(prefix: str, value: uuid.UUID) -> str:
    """``evt_01J…`` style id for ``value``."""
    return f"{prefix}_{encode(value)}"


def from_public(prefix: str, text: str) -> uuid.UUID:
    """Parse a ``prefix_…`` id back to its UUID; raises ``ValueError`` when it is not one."""
    head, sep, tail = text.partition("_")
    if not sep or head != prefix:
        raise ValueError(f"expected an id starting with {prefix}_")
    return decode(tail)


def parse(prefix: str, text: str) -> uuid.UUID | None:
    """The UUID that ``text`` names: a ``prefix_…`` public id, or the UUID itself (hex, with
    or without hyphens); ``None`` for anything else (another prefix included)."""
    text = text.strip()
    try:
        if "_" in text:
            return from_public(prefix, text)
        return uuid.UUID(text)
    except ValueError:
        return None


def pattern(prefix: str) -> str:
    """A regular expression that :func:`to_public` output with ``prefix`` matches (the first
    character is ``0``-``7``: 26 characters of 5 bits hold 128 bits and 2 zero bits)."""
    return f"^{prefix}_[0-7][0-9A-HJKMNP-TV-Z]{{25}}$"
