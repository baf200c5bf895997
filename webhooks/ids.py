"""Identifiers that are unique, time-ordered and not guessable: UUIDv7 and their short form."""

from __future__ import annotations

import os
import time
import uuid

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
