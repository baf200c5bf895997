"""Example payloads for the event-type catalog, built from the serializers that build the
real ones, so that an example never drifts from what receivers get."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import UUIDField as UUIDModelField
from rest_framework import fields as f
from rest_framework import relations, serializers

from webhooks import ids
from webhooks.conf import webhooks_settings
from webhooks.events.catalog import TEST_EVENT_TYPE, Catalog, EventType
from webhooks.events.payloads import build_payload
from webhooks.events.schemas import (
    DECIMAL_STRING,
    MAX_DEPTH,
    changes_schema,
    embeddable,
    method_schema,
    model_events,
)

logger = logging.getLogger("webhooks")

#: Fixed id and time of every example, so that examples are stable (and cacheable).
EXAMPLE_EVENT_ID = uuid.UUID("01890a5d-ac96-774b-bcce-b302099a8057")
EXAMPLE_TIME = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def example_body(event_type: EventType, catalog: Catalog) -> dict[str, Any]:
    """The whole body a receiver gets for ``event_type``: ``{"id", "type", "timestamp",
    "data"}`` with placeholder values, and ``"sequence"`` for model events (custom events have
    one only when the sending code passes a ``sequence_key``)."""
    body = build_payload(EXAMPLE_EVENT_ID, event_type.name, EXAMPLE_TIME,
                         example_data(event_type, catalog), example_changes(event_type, catalog),
                         sequence=1 if event_type.model else None)
    result: dict[str, Any] = json.loads(body)
    return result


def example_data(event_type: EventType, catalog: Catalog) -> Any:
    """``data`` of an example: from ``EVENT_EXAMPLES`` when the site gave one, else from the
    model's serializer, else from the schema a custom event declares (its first ``examples``
    value, or one made from it), else ``{}`` (a custom event whose shape only its code
    knows)."""
    configured = webhooks_settings.EVENT_EXAMPLES
    if event_type.name in configured:
        return configured[event_type.name]
    if event_type.schema is not None:
        return schema_example(embeddable(event_type.schema))
    if event_type.name == TEST_EVENT_TYPE:
        return {"endpoint_id": ids.to_public(ids.ENDPOINT, EXAMPLE_EVENT_ID),
                "message": "This is a test webhook."}
    if event_type.model:
        for config in catalog.models.values():
            if config.label == event_type.model:
                if config.thin_url:
                    return {"id": 1, "url": config.thin_url.format(pk=1)}
                try:
                    return serializer_example(config.serializer_class())
                except Exception:  # a site's serializer may need what it does not have here
                    logger.warning("No example for %s: its serializer failed.",
                                   event_type.name, exc_info=True)
                    return {}
    return {}


def example_changes(event_type: EventType, catalog: Catalog) -> Any:
    """``changes`` of an ``updated`` example for a model that tracks fields (every tracked
    field, with values of its type), else ``None``."""
    schema = changes_schema(event_type, model_events(event_type, catalog))
    if schema is None:
        return None
    return {name: {"old": schema_example(change["properties"]["old"]),
                   "new": schema_example(change["properties"]["new"])}
            for name, change in schema["properties"].items()}


def serializer_example(serializer: serializers.BaseSerializer[Any], depth: int = 0) -> Any:
    """Placeholder output of ``serializer``: its readable fields, each with a value of its
    type (the keys are exactly those the serializer writes)."""
    if isinstance(serializer, serializers.ListSerializer):
        return [serializer_example(serializer.child, depth + 1)]  # type: ignore[arg-type]
    if not isinstance(serializer, serializers.Serializer) or depth > MAX_DEPTH:
        return {}
    return {
        name: field_example(field, depth)
        for name, field in serializer.fields.items()
        if not field.write_only
    }


_TYPED: list[tuple[type[f.Field], Any]] = [
    (f.DecimalField, Decimal("10")),
    (f.DateTimeField, EXAMPLE_TIME),
    (f.DateField, EXAMPLE_TIME.date()),
    (f.TimeField, EXAMPLE_TIME.time()),
    (f.DurationField, timedelta(hours=1)),
]
_SIMPLE: list[tuple[type[f.Field], Any]] = [
    (f.BooleanField, True),
    (f.EmailField, "user@example.com"),
    (f.URLField, "https://example.com/"),
    (f.UUIDField, "9c5b94b1-35ad-49bb-b118-8e8fc24abf80"),
    (f.SlugField, "example"),
    (f.IPAddressField, "192.0.2.1"),
    (f.IntegerField, 1),
    (f.FloatField, 1.5),
    (f.JSONField, {}),
    (f.DictField, {}),
    (f.HStoreField, {}),
    (f.CharField, "string"),
]


def field_example(field: f.Field[Any, Any, Any, Any], depth: int) -> Any:
    """A placeholder value for one serializer field, as the field would render it."""
    if isinstance(field, serializers.BaseSerializer):
        return serializer_example(field, depth + 1)
    if isinstance(field, f.SerializerMethodField):
        return schema_example(method_schema(field))
    if isinstance(field, relations.ManyRelatedField):
        return [field_example(field.child_relation, depth)]
    if isinstance(field, relations.HyperlinkedRelatedField):
        return "https://example.com/"
    if isinstance(field, relations.SlugRelatedField | relations.StringRelatedField):
        return "string"
    if isinstance(field, relations.RelatedField):
        queryset = getattr(field, "queryset", None)
        pk = queryset.model._meta.pk if queryset is not None else None
        return "9c5b94b1-35ad-49bb-b118-8e8fc24abf80" if isinstance(pk, UUIDModelField) else 1
    if isinstance(field, f.ChoiceField):
        choices = list(field.choices)
        return choices[0] if choices else None
    if isinstance(field, f.ListField):
        return [field_example(field.child, depth)]
    for kind, typed in _TYPED:
        if isinstance(field, kind):
            return field.to_representation(typed)  # rendered the way the field renders it
    for kind, value in _SIMPLE:
        if isinstance(field, kind):
            return value
    if isinstance(field, f.ReadOnlyField):
        return "string"
    return None


#: Placeholder strings per JSON Schema ``format``.
_FORMATS = {
    "date-time": "2024-01-02T03:04:05Z",
    "date": "2024-01-02",
    "time": "03:04:05Z",
    "uuid": "9c5b94b1-35ad-49bb-b118-8e8fc24abf80",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
}


def schema_example(schema: Any) -> Any:
    """A value valid against ``schema`` as far as a placeholder can be: its ``const``,
    ``examples``, ``default`` or first ``enum`` value, else one made from its type (objects
    with every listed property, arrays of one item)."""
    if not isinstance(schema, dict):
        return None
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return next((v for v in schema["enum"] if v is not None), None)
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or [] if isinstance(o, dict)
                   and o.get("type") != "null"]
        if options:
            return schema_example({**{k: v for k, v in schema.items() if k != key},
                                   **options[0]})
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and "properties" in schema:
        kind = "object"
    return _typed_example(kind, schema)


def _typed_example(kind: Any, schema: dict[str, Any]) -> Any:
    if kind == "object":
        return {name: schema_example(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [schema_example(schema.get("items"))] * max(1, schema.get("minItems") or 0)
    if kind == "string":
        if schema.get("pattern") == DECIMAL_STRING["pattern"]:
            return "10.00"
        text = _FORMATS.get(schema.get("format", ""), "string")
        text += "x" * ((schema.get("minLength") or 0) - len(text))
        return text[:schema.get("maxLength") or None]
    if kind in ("integer", "number"):
        value = 1 if kind == "integer" else 1.5
        if schema.get("minimum") is not None:
            value = max(value, schema["minimum"])
        if schema.get("maximum") is not None:
            value = min(value, schema["maximum"])
        return value
    if kind == "boolean":
        return True
    return None
