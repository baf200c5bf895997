"""The event catalog: which event types the site publishes, and what each model publishes.

Built from the ``WEBHOOKS["MODELS"]`` and ``WEBHOOKS["EVENTS"]`` settings, cached until they
change. Imports nothing that writes or sends events: :mod:`webhooks.events.capture` and
:mod:`webhooks.outbox` build on it.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import models
from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _

from webhooks.conf import webhooks_settings
from webhooks.exceptions import WebhooksConfigurationError
from webhooks.owners import SETTING as OWNER_SETTING
from webhooks.owners import get_owner_model

#: What an event type name looks like: dotted lowercase words, at least two of them.
EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
#: Model actions that can publish events.
ACTIONS = ("created", "updated", "deleted")
#: What a model's custom action looks like (``"actions": ["shipped", "refund_requested"]``).
CUSTOM_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*$")
#: The event type of test deliveries sent from the admin or the API.
TEST_EVENT_TYPE = "webhook.test"
#: Keys a ``WEBHOOKS["MODELS"]`` entry accepts.
MODEL_OPTIONS = frozenset({"events", "serializer", "owner", "name", "description", "track",
                           "updated_when", "thin", "actions"})
#: Where an instance keeps its tracked fields' old values between pre_save and post_save.
SNAPSHOT_ATTR = "_webhooks_old_values"
_MISSING = object()


@dataclass(frozen=True)
class EventType:
    """One entry of the catalog."""

    name: str
    description: str
    model: str | None = None  # "app_label.Model" for model events
    #: The JSON Schema of ``data`` a custom event declares (``WEBHOOKS["EVENTS"]``), if any.
    schema: Mapping[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ModelEvents:
    """What one model publishes, parsed from ``WEBHOOKS["MODELS"]``."""

    label: str
    model: type[models.Model]
    name: str
    actions: frozenset[str]
    serializer_path: str | None
    owner_path: tuple[str, ...] = field(default=())
    #: (field name, attribute name) of the fields whose old values are kept for ``updated``.
    track: tuple[tuple[str, str], ...] = field(default=())
    #: ``updated`` is only sent when one of these fields changed (empty: on every save).
    updated_when: frozenset[str] = field(default=frozenset())
    #: Thin events: ``data`` is only ``{"id", "url"}``, the URL made from this template.
    thin_url: str | None = None
    #: Custom actions (``order.shipped``), sent from code with ``webhooks.send_model_event``.
    custom_actions: tuple[str, ...] = field(default=())
    _local: threading.local = field(default_factory=threading.local, compare=False,
                                    repr=False)

    def event_type(self, action: str) -> str:
        return f"{self.name}.{action}"

    def publishes(self, action: str) -> bool:
        """Whether ``action`` is one of this model's declared actions (built-in or custom)."""
        return action in self.actions or action in self.custom_actions

    @functools.cached_property
    def sequence_prefix(self) -> str:
        """``app_label.model:`` of the concrete model, so a proxy and its model share the
        counters of their rows."""
        return f"{self.model._meta.concrete_model._meta.label_lower}:"  # type: ignore[union-attr]

    def sequence_key(self, instance: models.Model) -> str | None:
        """The key of ``instance``'s sequence counter: ``app_label.model:pk``."""
        pk = instance.pk
        return None if pk is None else f"{self.sequence_prefix}{pk}"

    @functools.cached_property
    def serializer_class(self) -> Any:
        if self.serializer_path:
            return import_string(self.serializer_path)
        return default_serializer_for(self.model)

    def read_old_values(self, instance: models.Model, using: str, update_fields: Any) -> None:
        """Before an update, read the tracked columns that are being saved, by primary key:
        one indexed query, only for models with ``track``/``updated_when``, and none when
        ``update_fields`` leaves every tracked field out. Kept on the instance until
        ``post_save``."""
        if instance._state.adding or instance.pk is None:
            return  # an insert (or a blind save): nothing to compare with
        saved = None if update_fields is None else set(update_fields)
        wanted = [(name, attname) for name, attname in self.track
                  if saved is None or name in saved or attname in saved]
        old = None
        if wanted:
            old = (type(instance)._base_manager.using(using).filter(pk=instance.pk)
                   .values(*[attname for _, attname in wanted]).first())
        instance.__dict__[SNAPSHOT_ATTR] = (
            {} if old is None else {name: old[attname] for name, attname in wanted})

    def changes(self, instance: models.Model, update_fields: Any) -> tuple[dict[str, Any], bool]:
        """``({field: {"old", "new"}}, relevant)`` for the save that just happened.

        Fields left out of ``update_fields`` did not change. ``relevant`` tells whether an
        ``updated`` event is due: always without ``updated_when``; otherwise when one of its
        fields changed, or may have (its old value could not be read).
        """
        old_values = instance.__dict__.pop(SNAPSHOT_ATTR, None)
        saved = None if update_fields is None else set(update_fields)
        values = instance.__dict__
        found: dict[str, Any] = {}
        unknown: set[str] = set()
        for name, attname in self.track:
            if saved is not None and name not in saved and attname not in saved:
                continue
            old = _MISSING if old_values is None else old_values.get(name, _MISSING)
            new = values.get(attname, _MISSING)
            if old is _MISSING or new is _MISSING:
                unknown.add(name)
            elif old != new:
                found[name] = {"old": old, "new": new}
        relevant = not self.updated_when or bool(self.updated_when & (set(found) | unknown))
        return found, relevant

    def thin_data(self, instance: models.Model) -> dict[str, Any]:
        assert self.thin_url is not None  # noqa: S101 - only called for thin events
        return {"id": instance.pk, "url": self.thin_url.format(pk=instance.pk)}

    def data(self, instance: models.Model) -> Any:
        """The ``data`` of an event about ``instance``: thin, or the serializer's output."""
        return self.thin_data(instance) if self.thin_url else self.serialize(instance)

    def serialize(self, instance: models.Model) -> Any:
        """The event's ``data`` for ``instance``.

        One serializer per thread is reused: building a DRF serializer's fields costs more
        than using them, and a save should not pay that every time.
        """
        serializer = getattr(self._local, "serializer", None)
        if serializer is None:
            serializer = self._local.serializer = self.serializer_class()
        serializer.instance = instance
        try:
            return serializer.to_representation(instance)
        finally:
            serializer.instance = None

    def owner_id(self, instance: models.Model) -> Any:
        """Primary key of the owner ``instance`` belongs to, or ``None``.

        The last hop reads the foreign key's column (``customer_id``), so a one-hop path costs
        no query.
        """
        if not self.owner_path:
            return None
        obj: Any = instance
        for name in self.owner_path[:-1]:
            obj = getattr(obj, name, None)
            if obj is None:
                return None
        last = obj._meta.get_field(self.owner_path[-1])
        return getattr(obj, last.attname, None)


@dataclass(frozen=True)
class Catalog:
    """Every event type the site publishes, and which models publish what."""

    types: Mapping[str, EventType]
    models: Mapping[type[models.Model], ModelEvents]

    def __contains__(self, name: object) -> bool:
        return name in self.types


def _article(noun: str) -> str:
    return "An" if noun[:1].lower() in "aeiou" else "A"


def snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def parse_model_entry(label: str, options: Any) -> ModelEvents:
    """Parse one ``MODELS`` entry; raises :class:`WebhooksConfigurationError` when it is wrong."""
    if not isinstance(options, Mapping):
        raise WebhooksConfigurationError(f"WEBHOOKS['MODELS'][{label!r}] must be a dict.")
    unknown = set(options) - MODEL_OPTIONS
    if unknown:
        raise WebhooksConfigurationError(
            f"WEBHOOKS['MODELS'][{label!r}] has unknown options: {', '.join(sorted(unknown))}."
        )
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError) as exc:
        raise WebhooksConfigurationError(
            f"WEBHOOKS['MODELS'] names {label!r}, which is not an installed model."
        ) from exc
    if model._meta.app_label in ("webhooks", "django_q"):
        raise WebhooksConfigurationError(
            f"WEBHOOKS['MODELS'] cannot publish {label!r}: the webhook machinery's own models "
            "would publish events about themselves without end."
        )
    actions = options.get("events", list(ACTIONS))
    if (
        isinstance(actions, str)
        or not isinstance(actions, list | tuple)
        or not actions
        or not set(actions) <= set(ACTIONS)
    ):
        raise WebhooksConfigurationError(
            f"WEBHOOKS['MODELS'][{label!r}]['events'] must be a non-empty list drawn from "
            f"{', '.join(ACTIONS)}."
        )
    name = options.get("name") or snake_case(model.__name__)
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*", name):
        raise WebhooksConfigurationError(
            f"WEBHOOKS['MODELS'][{label!r}]['name'] must be lowercase words joined by dots."
        )
    serializer = options.get("serializer")
    if serializer is not None:
        if not isinstance(serializer, str):
            raise WebhooksConfigurationError(
                f"WEBHOOKS['MODELS'][{label!r}]['serializer'] must be a dotted import path."
            )
        try:
            serializer_class = import_string(serializer)
        except ImportError as exc:
            raise WebhooksConfigurationError(
                f"WEBHOOKS['MODELS'][{label!r}]['serializer'] = {serializer!r} cannot be "
                f"imported: {exc}"
            ) from exc
        from rest_framework.serializers import BaseSerializer

        if not (isinstance(serializer_class, type) and issubclass(serializer_class,
                                                                   BaseSerializer)):
            raise WebhooksConfigurationError(
                f"WEBHOOKS['MODELS'][{label!r}]['serializer'] = {serializer!r} is not a DRF "
                "serializer class."
            )
    owner = options.get("owner")
    owner_path: tuple[str, ...] = ()
    if owner is not None:
        if not isinstance(owner, str) or not owner:
            raise WebhooksConfigurationError(
                f"WEBHOOKS['MODELS'][{label!r}]['owner'] must be a field path such as "
                "'customer', 'customer__organization' or 'customer.organization'."
            )
        owner_path = tuple(owner.replace(".", "__").split("__"))
        _check_owner_path(label, model, owner_path)
    track, updated_when = _parse_tracking(label, model, options)
    thin = options.get("thin")
    if thin is not None and (not isinstance(thin, str) or "{pk}" not in thin):
        raise WebhooksConfigurationError(
            f"WEBHOOKS['MODELS'][{label!r}]['thin'] must be a URL template containing {{pk}}, "
            "such as 'https://shop.example.com/api/orders/{pk}/'."
        )
    if thin is not None and serializer is not None:
        raise WebhooksConfigurationError(
            f"WEBHOOKS['MODELS'][{label!r}] cannot have both 'thin' and 'serializer': a thin "
            "event carries only an id and a URL."
        )
    custom_actions = _parse_custom_actions(label, options)
    return ModelEvents(
        label=label,
        model=model,
        name=name,
        actions=frozenset(actions),
        serializer_path=serializer,
        owner_path=owner_path,
        track=track,
        updated_when=updated_when,
        thin_url=thin,
        custom_actions=custom_actions,
    )


def _parse_custom_actions(label: str, options: Mapping[str, Any]) -> tuple[str, ...]:
    """``actions``: a list of distinct lowercase words, none of them a built-in action."""
    value = options.get("actions", [])
    where = f"WEBHOOKS['MODELS'][{label!r}]['actions']"
    if isinstance(value, str) or not isinstance(value, list | tuple) or not all(
        isinstance(v, str) and CUSTOM_ACTION_RE.match(v) for v in value
    ):
        raise WebhooksConfigurationError(
            f"{where} must be a list of lowercase words (letters, digits, underscores), such "
            "as ['shipped', 'refunded']."
        )
    reserved = sorted(set(value) & set(ACTIONS))
    if reserved:
        raise WebhooksConfigurationError(
            f"{where} names {', '.join(reserved)}: built-in actions are chosen with 'events'."
        )
    if len(set(value)) != len(value):
        raise WebhooksConfigurationError(f"{where} names an action twice.")
    return tuple(value)


def _parse_tracking(label: str, model: type[models.Model], options: Mapping[str, Any],
                    ) -> tuple[tuple[tuple[str, str], ...], frozenset[str]]:
    """``track`` and ``updated_when``: lists of concrete field names (the latter are tracked
    too, so that a change can be seen)."""
    lists = {}
    for key in ("track", "updated_when"):
        value = options.get(key, [])
        if isinstance(value, str) or not isinstance(value, list | tuple) or not all(
            isinstance(v, str) for v in value
        ):
            raise WebhooksConfigurationError(
                f"WEBHOOKS['MODELS'][{label!r}][{key!r}] must be a list of field names."
            )
        lists[key] = list(value)
    names = list(dict.fromkeys([*lists["track"], *lists["updated_when"]]))
    track = []
    for name in names:
        try:
            model_field = model._meta.get_field(name)
        except Exception as exc:
            raise WebhooksConfigurationError(
                f"WEBHOOKS['MODELS'][{label!r}]: {model.__name__} has no field {name!r} to "
                "track."
            ) from exc
        if not getattr(model_field, "concrete", False) or model_field.many_to_many:
            raise WebhooksConfigurationError(
                f"WEBHOOKS['MODELS'][{label!r}]: {model.__name__}.{name} is not a column "
                "(many-to-many and reverse relations cannot be tracked)."
            )
        track.append((name, model_field.attname))  # type: ignore[union-attr]
    return tuple(track), frozenset(lists["updated_when"])


def _check_owner_path(label: str, model: type[models.Model], path: tuple[str, ...]) -> None:
    """Each hop is a forward foreign key (or one-to-one) and the last one points at the owner
    model's primary key, so the owner's key is read off a column, never looked up."""
    owner_model = get_owner_model()
    where = f"WEBHOOKS['MODELS'][{label!r}]['owner']"
    current = model
    for i, name in enumerate(path):
        try:
            field_ = current._meta.get_field(name)
        except Exception as exc:
            raise WebhooksConfigurationError(
                f"{where}: {current.__name__} has no field {name!r}.") from exc
        if not (field_.many_to_one or field_.one_to_one) or field_.auto_created:
            raise WebhooksConfigurationError(
                f"{where}: {current.__name__}.{name} is not a foreign key.")
        current = field_.related_model  # type: ignore[assignment]
        if i < len(path) - 1:
            continue
        if current._meta.concrete_model is not owner_model._meta.concrete_model:
            raise WebhooksConfigurationError(
                f"{where} must end at the owner model {owner_model._meta.label} "
                f"({OWNER_SETTING}), but {'__'.join(path)!r} reaches {current._meta.label}.")
        target = getattr(field_, "target_field", None)
        if target is not None and not target.primary_key:
            raise WebhooksConfigurationError(
                f"{where}: {current.__name__}.{name} points at {owner_model._meta.label}."
                f"{target.name}, not at its primary key.")


def build_catalog() -> Catalog:
    """Build the catalog from settings; raises :class:`WebhooksConfigurationError`."""
    types: dict[str, EventType] = {
        TEST_EVENT_TYPE: EventType(
            TEST_EVENT_TYPE, str(_("A test event sent from the admin or the API."))
        ),
    }
    model_map: dict[type[models.Model], ModelEvents] = {}
    for label, options in webhooks_settings.MODELS.items():
        entry = parse_model_entry(label, options)
        if entry.model in model_map:
            raise WebhooksConfigurationError(f"WEBHOOKS['MODELS'] lists {label!r} twice.")
        model_map[entry.model] = entry
        descriptions = options.get("description") or {}
        verbose = entry.model._meta.verbose_name
        for action in (*sorted(entry.actions, key=ACTIONS.index), *entry.custom_actions):
            name = entry.event_type(action)
            description = (
                descriptions.get(action) if isinstance(descriptions, Mapping) else None
            ) or f"{_article(str(verbose))} {verbose} was {action.replace('_', ' ')}."
            if name in types:
                raise WebhooksConfigurationError(f"Event type {name!r} is declared twice.")
            types[name] = EventType(name, str(description), model=label)
    for name, entry in webhooks_settings.EVENTS.items():
        if not isinstance(name, str) or not EVENT_TYPE_RE.match(name):
            raise WebhooksConfigurationError(
                f"WEBHOOKS['EVENTS'] key {name!r} is not a valid event type: use lowercase "
                "words joined by dots, such as 'invoice.paid'."
            )
        if name in types:
            raise WebhooksConfigurationError(f"Event type {name!r} is declared twice.")
        types[name] = custom_event_type(name, entry)
    return Catalog(types=types, models=model_map)


def custom_event_type(name: str, entry: Any) -> EventType:
    """The catalog entry of a ``WEBHOOKS["EVENTS"]`` item: a description, or
    ``{"description": ..., "schema": {...}}`` (the JSON Schema of its ``data``)."""
    if isinstance(entry, Mapping):
        schema = entry.get("schema")
        return EventType(name, str(entry.get("description", "")),
                         schema=dict(schema) if schema is not None else None)
    return EventType(name, str(entry))


@functools.cache
def get_catalog() -> Catalog:
    """The catalog for the current settings (cached; the cache is cleared when they change)."""
    return build_catalog()


@functools.cache
def default_serializer_for(model: type[models.Model]) -> Any:
    """A ``ModelSerializer`` with every field of ``model``, used when none is configured."""
    meta = type("Meta", (), {"model": model, "fields": "__all__"})
    return type(f"{model.__name__}WebhookSerializer", (_default_serializer_base(),),
                {"Meta": meta})


@functools.cache
def _default_serializer_base() -> Any:
    """The base of default serializers: a ``ModelSerializer`` whose output is DRF's, made
    faster for the columns it reads straight off the instance (one instance is reused for every
    save of a thread, see :meth:`ModelEvents.serialize`, so the plan is worked out once)."""
    from rest_framework import serializers
    from rest_framework.fields import Field, SkipField
    from rest_framework.relations import PKOnlyObject, PrimaryKeyRelatedField

    def plan(serializer: serializers.ModelSerializer[Any]) -> list[tuple[str, Any, str, int]]:
        """``(name, field, attname, kind)`` per readable field. ``kind`` 1: a column DRF reads
        with ``getattr`` (the field keeps DRF's ``get_attribute``); 2: a foreign key rendered
        as its primary key (the column holds it already); 0: anything else, left to DRF."""
        model: type[models.Model] = serializer.Meta.model
        columns = {f.name: f for f in model._meta.concrete_fields}
        steps = []
        for name, drf_field in serializer.fields.items():
            if drf_field.write_only:
                continue
            column = columns.get(name) if drf_field.source_attrs == [name] else None
            kind = 0
            if column is not None and column.is_relation:
                if (type(drf_field) is PrimaryKeyRelatedField
                        and drf_field.pk_field is None):
                    kind = 2
            elif column is not None and type(drf_field).get_attribute is Field.get_attribute:
                kind = 1
            steps.append((name, drf_field, column.attname if column is not None else name, kind))
        return steps

    class WebhookModelSerializer(serializers.ModelSerializer):
        def to_representation(self, instance: Any) -> dict[str, Any]:
            steps = self.__dict__.get("_webhooks_plan")
            if steps is None:
                steps = self.__dict__["_webhooks_plan"] = plan(self)
            values = instance.__dict__
            ret: dict[str, Any] = {}
            for name, drf_field, attname, kind in steps:
                value = values.get(attname, _MISSING) if kind else _MISSING
                if value is _MISSING or callable(value):  # deferred, or unusual: DRF's way
                    try:
                        attribute = drf_field.get_attribute(instance)
                    except SkipField:
                        continue
                    check = attribute.pk if isinstance(attribute, PKOnlyObject) else attribute
                    ret[name] = (None if check is None
                                 else drf_field.to_representation(attribute))
                elif value is None or kind == 2:
                    ret[name] = value
                else:
                    ret[name] = drf_field.to_representation(value)
            return ret

    return WebhookModelSerializer


def clear_caches(**kwargs: Any) -> None:
    """``setting_changed`` receiver: forget the catalog and the default serializers."""
    if kwargs.get("setting") in (None, "WEBHOOKS", "AUTH_USER_MODEL", "WEBHOOKS_OWNER_MODEL",
                                   "INSTALLED_APPS"):
        get_catalog.cache_clear()
        default_serializer_for.cache_clear()
