"""JSON Schemas (draft 2020-12, the dialect of OpenAPI 3.1) of the bodies we send.

One schema per event type, for the whole body: the envelope (``id``, ``type``, ``timestamp``,
``sequence``, ``changes``) and ``data``. ``data`` is derived from the model's DRF serializer
for model events (``{"id", "url"}`` for thin ones), is what the site declares in
``WEBHOOKS["EVENTS"]`` for a custom event, and is only "an object" when it declares nothing.

The schemas describe the output of :mod:`webhooks.events.payloads` exactly, and stay open:
they never forbid members they do not list, so that a field added later is not a breaking
change for receivers whose types were generated from them.

Pure functions of the catalog and the settings; nothing here reads or writes rows.
"""

from __future__ import annotations

import copy
import decimal
import functools
import logging
import types
import typing
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from webhooks import ids
from webhooks.events.catalog import TEST_EVENT_TYPE, Catalog, EventType, ModelEvents, get_catalog

logger = logging.getLogger("webhooks")

#: The JSON Schema dialect of every schema here (the one OpenAPI 3.1 uses).
DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: ``evt_`` and the 26 Crockford base32 characters of the event's UUID.
EVENT_ID_PATTERN = "^evt_[0-9A-HJKMNP-TV-Z]{26}$"
#: How deep nested serializers are described; deeper ones are only "an object" (the examples
#: of ``webhooks.api.examples`` stop at the same depth).
MAX_DEPTH = 4
#: A decimal rendered as a string (DRF's ``COERCE_DECIMAL_TO_STRING``, on by default).
DECIMAL_STRING = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
UUID_STRING = {"type": "string", "format": "uuid"}

JSON = dict[str, Any]


# --- the envelope -------------------------------------------------------------------------


def event_schema(event_type: str | EventType, catalog: Catalog | None = None, *,
                 fields: Collection[str] | None = None) -> JSON:
    """The JSON Schema of the body of ``event_type``'s events.

    ``fields``: the payload field allowlist of a subscription; the schema then describes the
    restricted body (:func:`narrow`). Raises ``KeyError`` for a type not in the catalog.
    """
    catalog = catalog or get_catalog()
    known = catalog.types[event_type] if isinstance(event_type, str) else event_type
    config = model_events(known, catalog)
    properties: JSON = {
        "id": {"type": "string", "pattern": EVENT_ID_PATTERN,
               "description": str(_("The event's id, also the webhook-id header: deduplicate "
                                    "on it."))},
        "type": {"const": known.name},
        "timestamp": {"type": "string", "format": "date-time",
                      "description": str(_("When the event was recorded (UTC, ISO 8601)."))},
    }
    required = ["id", "type", "timestamp"]
    if known.name != TEST_EVENT_TYPE:
        properties["sequence"] = {
            "type": "integer", "minimum": 1,
            "description": str(_("1, 2, 3… per object, in commit order: apply an event only "
                                 "if its sequence is higher than the last one applied for "
                                 "that object.") if config else _(
                "1, 2, 3… per sequence_key, in commit order; present when the event was sent "
                "with one.")),
        }
        if config:
            required.append("sequence")
    changes = changes_schema(known, config)
    if changes is not None:
        properties["changes"] = changes
        required.append("changes")
    properties["data"] = data_schema(known, catalog, config)
    required.append("data")
    schema: JSON = {"$schema": DIALECT, "title": known.name,
                    "description": known.description, "type": "object",
                    "properties": properties, "required": required}
    return schema if fields is None else narrow(schema, fields)


def narrow(schema: Mapping[str, Any], fields: Collection[str]) -> JSON:
    """``schema`` (an event's) for a subscription that restricts ``data`` to ``fields``: the
    other properties of ``data`` are gone and may not appear (see
    :func:`webhooks.events.payloads.restrict_payload`). An empty allowlist restricts nothing."""
    result = copy.deepcopy(dict(schema))
    if not fields:
        return result
    keep = sorted(set(fields))
    data = result["properties"]["data"]
    if isinstance(data.get("properties"), Mapping):
        data["properties"] = {k: v for k, v in data["properties"].items() if k in keep}
    if isinstance(data.get("required"), list):
        data["required"] = [name for name in data["required"] if name in keep]
    data["propertyNames"] = {"enum": keep}  # only applies when data is an object
    return result


def model_events(event_type: EventType, catalog: Catalog) -> ModelEvents | None:
    """The ``MODELS`` entry behind a model event type, else ``None``."""
    if not event_type.model:
        return None
    return next((c for c in catalog.models.values() if c.label == event_type.model), None)


def data_schema(event_type: EventType, catalog: Catalog,
                config: ModelEvents | None = None) -> JSON:
    """The schema of ``data``: the test event's, the declared one of a custom event, derived
    from the serializer (or thin) of a model event; "an object" when nothing is known."""
    config = config or model_events(event_type, catalog)
    if event_type.name == TEST_EVENT_TYPE:
        return {"type": "object", "properties": {
            "endpoint_id": {"type": "string", "pattern": ids.pattern(ids.ENDPOINT),
                            "description": str(_("The endpoint the test was sent to."))},
            "message": {"type": "string"}}, "required": ["endpoint_id", "message"]}
    if event_type.schema is not None:
        return embeddable(event_type.schema)
    if config is not None:
        if config.thin_url:
            return {"type": "object", "properties": {
                "id": model_field_schema(config.model._meta.pk),
                "url": {"type": "string", "format": "uri",
                        "description": str(_("Where to fetch the object, with your "
                                             "credentials."))}},
                "required": ["id", "url"]}
        try:
            return serializer_schema(config.serializer_class())
        except Exception:  # a site's serializer may need what it does not have here
            logger.warning("No schema for %s: its serializer failed.", event_type.name,
                           exc_info=True)
    return {"type": "object"}


def changes_schema(event_type: EventType, config: ModelEvents | None) -> JSON | None:
    """``{field: {"old", "new"}}`` of an ``updated`` event of a model with tracked fields
    (only the fields that changed are there), else ``None``. The values are the model's own
    (a foreign key's id), as Django's JSON encoder writes them."""
    if config is None or not config.track or not event_type.name.endswith(".updated"):
        return None
    properties = {}
    for name, _attname in config.track:
        value = nullable(model_field_schema(config.model._meta.get_field(name)),
                         getattr(config.model._meta.get_field(name), "null", False))
        properties[name] = {"type": "object", "properties": {"old": value, "new": value},
                            "required": ["old", "new"]}
    return {"type": "object", "properties": properties,
            "propertyNames": {"enum": [name for name, _attname in config.track]},
            "description": str(_("The tracked fields that changed, with their old and new "
                                 "values."))}


def embeddable(schema: Mapping[str, Any]) -> JSON:
    """A declared schema, made to work inside another document: its local references
    (``#/$defs/…``, ``#/definitions/…``, ``#``) are inlined, a recursive one down to
    :data:`MAX_DEPTH` levels (then: anything), and its ``$schema``, ``$id`` and definitions
    dropped. (``pydantic``'s ``model_json_schema()`` output, for example, refers to its
    ``$defs``.)"""
    root = dict(schema)

    def resolve(node: Any, depth: int) -> Any:
        if isinstance(node, list):
            return [resolve(item, depth) for item in node]
        if not isinstance(node, Mapping):
            return copy.deepcopy(node)
        ref = node.get("$ref")
        if isinstance(ref, str) and (ref == "#" or ref.startswith("#/")):
            if depth >= MAX_DEPTH:
                return {}
            target: Any = root
            for part in ref[2:].split("/") if ref != "#" else []:
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part) if isinstance(target, Mapping) else None
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            inlined = resolve(target if isinstance(target, Mapping) else {}, depth + 1)
            return {**inlined, **resolve(siblings, depth)} if siblings else inlined
        return {key: resolve(value, depth) for key, value in node.items()}

    result: JSON = resolve({k: v for k, v in root.items()
                            if k not in ("$schema", "$id", "$defs", "definitions")}, 0)
    return result


# --- serializers --------------------------------------------------------------------------


def serializer_schema(serializer: Any, depth: int = 0) -> JSON:
    """What ``serializer.to_representation`` writes: an object of its readable fields (an
    array of them for ``many=True``). Every field is required: a serializer writes each of its
    fields, except one whose dotted source crosses an empty relation."""
    from rest_framework import serializers
    from rest_framework.fields import empty

    if isinstance(serializer, serializers.ListSerializer):
        return {"type": "array", "items": serializer_schema(serializer.child, depth + 1)}
    if not isinstance(serializer, serializers.Serializer) or depth > MAX_DEPTH:
        return {"type": "object"}
    model = getattr(getattr(serializer, "Meta", None), "model", None)
    properties: JSON = {}
    required = []
    for name, field in serializer.fields.items():
        if field.write_only:
            continue
        model_field = _model_field(model, field)
        schema = field_schema(field, depth, model_field)
        schema = nullable(schema, field.allow_null or getattr(model_field, "null", False))
        help_text = getattr(field, "help_text", None)
        if help_text and "description" not in schema:
            schema["description"] = str(help_text)
        properties[name] = schema
        skippable = (len(field.source_attrs) > 1 and not field.required
                     and not field.allow_null and field.default is empty)
        if not skippable:
            required.append(name)
    return {"type": "object", "properties": properties, "required": required}


def _model_field(model: Any, field: Any) -> models.Field[Any, Any] | None:
    """The model field a serializer field renders (a one-step source of a model
    serializer), else ``None``."""
    if model is None or len(getattr(field, "source_attrs", ())) != 1:
        return None
    try:
        found = model._meta.get_field(field.source_attrs[0])
    except Exception:
        return None
    return found if isinstance(found, models.Field) else None  # not a reverse relation


def field_schema(field: Any, depth: int = 0, model_field: Any = None) -> JSON:
    """The schema of what one serializer field writes (nullability left to the caller)."""
    from rest_framework import fields as f
    from rest_framework import relations, serializers

    annotated = _annotation(type(field))
    if annotated is not None:
        return annotated
    if isinstance(field, serializers.BaseSerializer):
        return serializer_schema(field, depth + 1)
    if isinstance(field, relations.ManyRelatedField):
        return {"type": "array", "items": field_schema(field.child_relation, depth, model_field)}
    if isinstance(field, relations.RelatedField):
        return related_schema(field, model_field)
    if isinstance(field, f.SerializerMethodField):
        return method_schema(field)
    if isinstance(field, f.ChoiceField):
        values = list(dict.fromkeys(field.choice_strings_to_values.values()))
        blank = field.allow_blank or (getattr(model_field, "blank", False) and isinstance(
            model_field, models.CharField | models.TextField))
        if blank and "" not in values:
            values.append("")
        choice: JSON = {"enum": values}
        if isinstance(field, f.MultipleChoiceField):
            return {"type": "array", "items": choice, "uniqueItems": True}
        return choice
    for kind, build in _field_schemas():
        if isinstance(field, kind):
            return build(field, depth)
    return {}


def _big_integer(field: Any, depth: int) -> JSON:
    from rest_framework.settings import api_settings

    if getattr(field, "coerce_to_string", getattr(api_settings, "COERCE_BIGINT_TO_STRING",
                                                   False)):
        return {"type": "string", "pattern": "^-?[0-9]+$"}
    return _integer(field, depth)


def _integer(field: Any, depth: int) -> JSON:
    schema: JSON = {"type": "integer"}
    if field.min_value is not None:
        schema["minimum"] = field.min_value
    if field.max_value is not None:
        schema["maximum"] = field.max_value
    return schema


def _temporal(setting: str, json_format: str) -> Callable[[Any, int], JSON]:
    """DRF's date, time and datetime fields: ISO 8601 (``json_format``) unless the field or
    ``setting`` asks for another format; a naive datetime (``USE_TZ = False``) has no offset,
    so it is not an RFC 3339 ``date-time``."""

    def build(field: Any, depth: int) -> JSON:
        from rest_framework import ISO_8601
        from rest_framework.settings import api_settings

        output = getattr(field, "format", getattr(api_settings, setting))
        iso = output is None or str(output).lower() == ISO_8601
        if not iso or (json_format == "date-time" and not settings.USE_TZ):
            return {"type": "string"}
        return {"type": "string", "format": json_format} if json_format else {"type": "string"}

    return build


def _string(field: Any, depth: int) -> JSON:
    schema: JSON = {"type": "string"}
    if getattr(field, "max_length", None):
        schema["maxLength"] = field.max_length
    return schema


def _string_format(json_format: str) -> Callable[[Any, int], JSON]:
    return lambda field, depth: {**_string(field, depth), "format": json_format}


def _uuid(field: Any, depth: int) -> JSON:
    if field.uuid_format == "hex_verbose":
        return dict(UUID_STRING)
    return {"type": "integer"} if field.uuid_format == "int" else {"type": "string"}


def _ip(field: Any, depth: int) -> JSON:
    kinds = {"ipv4": "ipv4", "ipv6": "ipv6"}
    return ({"type": "string", "format": kinds[field.protocol]} if field.protocol in kinds
            else {"type": "string"})


def _list(field: Any, depth: int) -> JSON:
    schema: JSON = {"type": "array", "items": nullable(field_schema(field.child, depth),
                                                         field.child.allow_null)}
    if getattr(field, "min_length", None) is not None:
        schema["minItems"] = field.min_length
    if getattr(field, "max_length", None) is not None:
        schema["maxItems"] = field.max_length
    return schema


def _dict(field: Any, depth: int) -> JSON:
    return {"type": "object", "additionalProperties": nullable(field_schema(field.child, depth),
                                                               field.child.allow_null)}


def _file(field: Any, depth: int) -> JSON:
    # An empty file is written as null whatever the field says.
    return {"type": ["string", "null"]}


def _constant(schema: JSON) -> Callable[[Any, int], JSON]:
    return lambda field, depth: dict(schema)


@functools.cache
def _field_schemas() -> list[tuple[type, Callable[[Any, int], JSON]]]:
    """(DRF field class, how its output is described), most specific first."""
    from rest_framework import fields as f

    big = getattr(f, "BigIntegerField", None)  # DRF 3.17+
    return [
        (f.BooleanField, _constant({"type": "boolean"})),
        # A string either way: DRF's COERCE_DECIMAL_TO_STRING (on by default) writes one, and
        # without it the Decimal it returns is written as one by Django's JSON encoder.
        (f.DecimalField, _constant(DECIMAL_STRING)),
        *([(big, _big_integer)] if big is not None else []),
        (f.IntegerField, _integer),
        (f.FloatField, _constant({"type": "number"})),
        (f.DateTimeField, _temporal("DATETIME_FORMAT", "date-time")),
        (f.DateField, _temporal("DATE_FORMAT", "date")),
        # RFC 3339's "time" has an offset, which DRF's times do not: only a string.
        (f.TimeField, _temporal("TIME_FORMAT", "")),
        (f.DurationField, _constant({"type": "string"})),
        (f.UUIDField, _uuid),
        (f.EmailField, _string_format("email")),
        (f.URLField, _string_format("uri")),
        (f.IPAddressField, _ip),
        (f.FileField, _file),
        (f.HStoreField, _constant({"type": "object",
                                   "additionalProperties": {"type": ["string", "null"]}})),
        (f.DictField, _dict),
        (f.ListField, _list),
        (f.JSONField, _constant({})),
        (f.CharField, _string),
    ]


def related_schema(field: Any, model_field: Any = None) -> JSON:
    """A relation: the target's primary key (its type), a URL, a slug or a string."""
    from rest_framework import relations

    if isinstance(field, relations.HyperlinkedRelatedField):
        return {"type": "string", "format": "uri"}
    if isinstance(field, relations.PrimaryKeyRelatedField):
        if field.pk_field is not None:
            return field_schema(field.pk_field)
        target = _related_model(field, model_field)
        return model_field_schema(target._meta.pk) if target is not None else {}
    if isinstance(field, relations.SlugRelatedField):
        target = _related_model(field, model_field)
        try:
            return model_field_schema(target._meta.get_field(field.slug_field))
        except Exception:
            return {"type": "string"}
    if isinstance(field, relations.StringRelatedField):
        return {"type": "string"}
    return {}


def _related_model(field: Any, model_field: Any) -> Any:
    """The model a relation field points at: its queryset's, or (read-only fields have no
    queryset) the model field's."""
    queryset = getattr(field, "queryset", None)
    if queryset is not None:
        return queryset.model
    return getattr(model_field, "related_model", None)


def method_schema(field: Any) -> JSON:
    """A ``SerializerMethodField``: its method's drf-spectacular annotation (a schema dict), or
    its return type hint, else anything."""
    method = getattr(field.parent, field.method_name, None)
    if method is None:
        return {}
    annotated = _annotation(method)
    if annotated is not None:
        return annotated
    try:
        hints = typing.get_type_hints(method)
    except Exception:
        return {}
    return type_schema(hints["return"]) if "return" in hints else {}


_PYTHON_TYPES: list[tuple[type, JSON]] = [
    (bool, {"type": "boolean"}),
    (int, {"type": "integer"}),
    (float, {"type": "number"}),
    (decimal.Decimal, DECIMAL_STRING),
    (str, {"type": "string"}),
    (datetime, {"type": "string", "format": "date-time"}),
    (date, {"type": "string", "format": "date"}),
    (time, {"type": "string"}),
    (timedelta, {"type": "string"}),
    (uuid.UUID, UUID_STRING),
    (dict, {"type": "object"}),
    (list, {"type": "array"}),
]


def type_schema(hint: Any) -> JSON:
    """A return type hint (``str``, ``int | None``, ``list[str]``, ``dict[str, Any]``…)."""
    if hint is None or hint is type(None):
        return {"type": "null"}
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        others = [a for a in args if a is not type(None)]
        inner = type_schema(others[0]) if len(others) == 1 else {}
        return nullable(inner, len(others) < len(args))
    if origin in (list, tuple, set, frozenset, Collection, typing.Sequence):
        return {"type": "array", "items": type_schema(args[0]) if args else {}}
    if origin in (dict, Mapping):
        return {"type": "object"}
    for kind, schema in _PYTHON_TYPES:
        if isinstance(hint, type) and issubclass(hint, kind):
            return dict(schema)
    return {}


def _annotation(target: Any) -> JSON | None:
    """A schema given with drf-spectacular's ``extend_schema_field({...})`` (a dict only)."""
    annotation = getattr(target, "_spectacular_annotation", None)
    value = annotation.get("field") if isinstance(annotation, Mapping) else None
    if not isinstance(value, Mapping):
        return None
    schema = {k: copy.deepcopy(v) for k, v in value.items() if k not in ("example", "nullable")}
    return nullable(schema, bool(value.get("nullable")))


# --- model fields -------------------------------------------------------------------------


def model_field_schema(model_field: Any) -> JSON:
    """A model field's value as Django's JSON encoder writes it (nullability left to the
    caller): a primary key, or a tracked field's old and new values (a foreign key's id)."""
    target = getattr(model_field, "target_field", None)
    if target is not None and (model_field.many_to_one or model_field.one_to_one):
        return model_field_schema(target)
    for kind, schema in _model_field_schemas():
        if isinstance(model_field, kind):
            return dict(schema)
    if getattr(model_field, "choices", None):
        return {"enum": [value for value, _label in model_field.flatchoices]}
    return {}


def _model_field_schemas() -> list[tuple[type, JSON]]:
    return [
        (models.BooleanField, {"type": "boolean"}),
        (models.DecimalField, DECIMAL_STRING),
        (models.IntegerField, {"type": "integer"}),  # small, big, positive and auto too
        (models.FloatField, {"type": "number"}),
        (models.DateTimeField, {"type": "string", "format": "date-time"}
         if settings.USE_TZ else {"type": "string"}),
        (models.DateField, {"type": "string", "format": "date"}),
        (models.TimeField, {"type": "string"}),
        (models.DurationField, {"type": "string"}),
        (models.UUIDField, UUID_STRING),
        (models.JSONField, {}),
        (models.EmailField, {"type": "string", "format": "email"}),
        (models.CharField, {"type": "string"}),
        (models.TextField, {"type": "string"}),
        (models.FileField, {"type": "string"}),
    ]


# --- helpers ------------------------------------------------------------------------------


def nullable(schema: JSON, allow_null: bool) -> JSON:
    """``schema``, also allowing ``null`` when ``allow_null`` (``{}`` allows it already)."""
    schema = dict(schema)
    if not allow_null or not schema:
        return schema
    kind = schema.get("type")
    if "enum" in schema and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    elif isinstance(kind, list):
        schema["type"] = kind if "null" in kind else [*kind, "null"]
    elif "enum" not in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    return schema
