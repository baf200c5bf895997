"""Encryption at rest of endpoint secrets and custom headers (Fernet, keys from settings).

``WEBHOOKS["ENCRYPTION_KEYS"]`` lists Fernet keys, newest first: values are encrypted with the
first and decrypted with any, so a key is rotated by putting a new one in front and running
``manage.py webhooks_reencrypt``. With no keys and ``DEBUG`` on, a key derived from
``SECRET_KEY`` is used (system check ``webhooks.W030``); with ``DEBUG`` off that is an error
(``webhooks.E030``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models

from webhooks.conf import webhooks_settings as conf
from webhooks.exceptions import WebhooksConfigurationError

_CACHE_LIMIT = 4096
#: What to do about stored values no key decrypts (check ``webhooks.E032``,
#: ``webhooks_reencrypt``).
UNREADABLE_ADVICE = (
    "Add the key they were encrypted with to WEBHOOKS['ENCRYPTION_KEYS'], after the new one "
    "(the first key encrypts, every key decrypts; a development database's key is "
    "webhooks.encryption.derived_key(SECRET_KEY)), then run `manage.py webhooks_reencrypt`; once "
    "it has finished, that key can be removed. If that key is lost, so are those secrets: "
    "delete those endpoints (`Endpoint.objects.filter(pk__in=[...]).only('pk').delete()` in "
    "`manage.py shell`) and create them again, with new secrets for their receivers."
)
_plaintexts: dict[str, str] = {}


def generate_key() -> str:
    """A new random Fernet key, for ``ENCRYPTION_KEYS``."""
    return Fernet.generate_key().decode("ascii")


def derived_key(secret_key: str) -> str:
    """The development key derived from ``SECRET_KEY`` (used only while ``DEBUG`` is on)."""
    digest = hashlib.sha256(b"django-webhooks encryption key:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def configured_keys() -> tuple[str, ...]:
    keys = tuple(conf.ENCRYPTION_KEYS)
    if keys:
        return keys
    if settings.DEBUG:
        return (derived_key(settings.SECRET_KEY),)
    raise WebhooksConfigurationError(
        "WEBHOOKS['ENCRYPTION_KEYS'] is empty: endpoint secrets cannot be encrypted. Generate "
        "a key with `python -c 'from webhooks.encryption import generate_key; "
        "print(generate_key())'`."
    )


@functools.lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode("ascii")) for key in keys])
    except (ValueError, TypeError, UnicodeError) as exc:
        raise WebhooksConfigurationError(
            "WEBHOOKS['ENCRYPTION_KEYS'] holds a value that is not a Fernet key "
            "(32 url-safe base64-encoded bytes)."
        ) from exc


def encrypt(plaintext: str) -> str:
    return _fernet(configured_keys()).encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str) -> str:
    cached = _plaintexts.get(token)
    if cached is not None:
        return cached
    try:
        plaintext = _fernet(configured_keys()).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as exc:
        raise WebhooksConfigurationError(
            "A stored webhook secret cannot be decrypted: WEBHOOKS['ENCRYPTION_KEYS'] does not "
            "hold the key it was encrypted with."
        ) from exc
    if len(_plaintexts) >= _CACHE_LIMIT:
        _plaintexts.clear()
    _plaintexts[token] = plaintext
    return plaintext


def uses_newest_key(token: str) -> bool:
    """Whether ``token`` was encrypted with the first (newest) key."""
    return key_index(token) == 0


def key_index(token: str) -> int | None:
    """The position in ``ENCRYPTION_KEYS`` of the key that decrypts ``token``, or ``None`` when
    none does (it was encrypted with a key that is not in the list). Nothing is cached: this
    answers for the keys configured now.

    Raises :class:`WebhooksConfigurationError` when the keys themselves are wrong (empty with
    ``DEBUG`` off, or not Fernet keys).
    """
    keys = configured_keys()
    _fernet(keys)  # every key valid, or a clear error
    for index, key in enumerate(keys):
        try:
            Fernet(key.encode("ascii")).decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeError):
            continue
        return index
    return None


class EncryptedTextField(models.TextField):
    """Text stored as a Fernet token; reads give the plaintext. Not usable in lookups."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)


class EncryptedJSONField(models.TextField):
    """A JSON value (custom headers) stored encrypted as one Fernet token."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return {}
        return json.loads(decrypt(value))

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value) if value else {}
            except ValueError:
                return value  # the validator reports it
        return value

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return None
        return encrypt(json.dumps(value, separators=(",", ":")))

    def value_to_string(self, obj: Any) -> Any:
        return self.value_from_object(obj)

    def formfield(self, **kwargs: Any) -> Any:
        from django import forms

        return super(models.TextField, self).formfield(
            **{"form_class": forms.JSONField, **kwargs})
