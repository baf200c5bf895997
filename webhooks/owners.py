"""The owner model: who endpoints and events belong to (``settings.WEBHOOKS_OWNER_MODEL``).

An owner is an instance of the model the top-level setting ``WEBHOOKS_OWNER_MODEL`` names
(``"app_label.Model"``, like ``AUTH_USER_MODEL``); by default the user model. It must be chosen
before the first ``migrate``: the foreign keys of :class:`~webhooks.models.Endpoint` and
:class:`~webhooks.models.Event` are created pointing at it.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.backends.base.operations import BaseDatabaseOperations
from django.utils.module_loading import import_string

from webhooks.conf import webhooks_settings
from webhooks.exceptions import InvalidOwner, WebhooksConfigurationError

#: The top-level setting that names the owner model.
SETTING = "WEBHOOKS_OWNER_MODEL"


def owner_model_label() -> str:
    """``"app_label.Model"`` of the owner model: ``WEBHOOKS_OWNER_MODEL``, else the user
    model. Read when the models and migrations load, as ``AUTH_USER_MODEL`` is."""
    value = getattr(settings, SETTING, None)
    return value if value else settings.AUTH_USER_MODEL


def get_owner_model() -> type[models.Model]:
    """The owner model class; :class:`WebhooksConfigurationError` when the setting names no
    installed model (the system check ``webhooks.E070`` says the same at startup)."""
    label = owner_model_label()
    try:
        return apps.get_model(label, require_ready=False)
    except (LookupError, ValueError) as exc:
        raise WebhooksConfigurationError(
            f"{SETTING} = {label!r} is not an installed model ('app_label.ModelName')."
        ) from exc


def owner_is_user_model() -> bool:
    """Whether owners are users (the default)."""
    return get_owner_model() is apps.get_model(settings.AUTH_USER_MODEL, require_ready=False)


#: Integer primary keys' ranges, the same whatever the database (a key out of range is refused
#: before any query, not left to PostgreSQL's ``DataError`` or SQLite's silence).
_INTEGER_RANGES = BaseDatabaseOperations.integer_field_ranges


def owner_pk(owner: Any) -> Any:
    """The primary key of ``owner`` (an owner instance or its primary key; ``None`` stays
    ``None``), checked against the owner model's primary key field.

    Raises :class:`~webhooks.exceptions.InvalidOwner` for an instance of another model, an
    unsaved instance, or a key of the wrong type (a string for an integer key, a bool, a
    number out of range, text that is not a UUID for a UUID key…), the same on every database.
    """
    if owner is None:
        return None
    model = get_owner_model()
    if isinstance(owner, models.Model):
        concrete = model._meta.concrete_model
        if owner._meta.concrete_model is not concrete:
            raise InvalidOwner(
                f"owner must be a {model._meta.label} ({SETTING}) or its primary key, not a "
                f"{type(owner)._meta.label}.")
        if owner.pk is None:
            raise InvalidOwner(f"owner is an unsaved {model._meta.label}: it has no primary key.")
        return owner.pk
    return _checked_key(model, owner)


def _checked_key(model: type[models.Model], value: Any) -> Any:
    pk = model._meta.pk
    assert pk is not None  # noqa: S101 - every concrete model has one (checked by E071)
    target = pk.target_field if pk.is_relation else pk  # type: ignore[attr-defined]  # a one-to-one key
    kind = target.get_internal_type()
    label = model._meta.label
    if isinstance(value, bool):
        raise InvalidOwner(f"owner must be a {label} or its primary key, not {value!r}.")
    if kind in _INTEGER_RANGES:
        if not isinstance(value, int):
            raise InvalidOwner(
                f"owner must be a {label} or its integer primary key, not {value!r} "
                f"({type(value).__name__}).")
        low, high = _INTEGER_RANGES[kind]
        if not low <= value <= high:
            raise InvalidOwner(f"owner {value} is out of range for {label}'s primary key.")
        return value
    if kind == "UUIDField":
        if isinstance(value, uuid.UUID):
            return value
        if isinstance(value, str):
            try:
                return uuid.UUID(value)
            except ValueError:
                pass
        raise InvalidOwner(f"owner must be a {label} or its UUID primary key, not {value!r}.")
    try:
        return target.to_python(value)
    except ValidationError as exc:
        raise InvalidOwner(
            f"owner {value!r} is not a valid primary key of {label}: "
            f"{'; '.join(exc.messages)}") from exc


def default_api_owner(request: Any) -> Any:
    """The default ``API_OWNER``: the authenticated user when owners are users, else ``None``
    (the API then answers 403: a site with another owner model says how to find it)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not owner_is_user_model():
        return None
    return user


@functools.cache
def _resolver(path: str | None) -> Callable[[Any], Any]:
    return default_api_owner if path is None else import_string(path)


def api_owner(request: Any) -> Any:
    """The owner the REST API acts for in ``request``: what ``WEBHOOKS["API_OWNER"]`` returns
    (``None``: the request has no owner, a 403). An owner of the wrong model is a
    configuration error, never a silent cross-owner read."""
    owner = _resolver(webhooks_settings.API_OWNER)(request)
    if owner is None:
        return None
    model = get_owner_model()
    if not isinstance(owner, models.Model) or (
            owner._meta.concrete_model is not model._meta.concrete_model):
        raise WebhooksConfigurationError(
            f"WEBHOOKS['API_OWNER'] returned {owner!r}, which is not a {model._meta.label} "
            f"({SETTING}) nor None.")
    return owner


def clear_caches(**kwargs: Any) -> None:
    """``setting_changed`` receiver: forget the resolved ``API_OWNER``."""
    if kwargs.get("setting") in (None, "WEBHOOKS"):
        _resolver.cache_clear()
