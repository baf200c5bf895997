"""Event payloads: the JSON body every delivery of an event sends, and what a subscription may
restrict it to.

Pure functions of the catalog and the settings; nothing here writes to the database.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from django.utils.module_loading import import_string

from webhooks import ids
from webhooks.conf import webhooks_settings
from webhooks.events.catalog import TEST_EVENT_TYPE, Catalog, get_catalog
from webhooks.exceptions import PayloadError, WebhooksConfigurationError


@functools.cache
def payload_limit() -> int:
    """``MAX_PAYLOAD_BYTES``, read once per settings change rather than once per event."""
    return webhooks_settings.MAX_PAYLOAD_BYTES


def clear_caches(**kwargs: Any) -> None:
    """``setting_changed`` receiver: read ``MAX_PAYLOAD_BYTES`` and ``JSON_ENCODER`` again."""
    if kwargs.get("setting") in (None, "WEBHOOKS"):
        payload_limit.cache_clear()
        json_encoder.cache_clear()


def encoder_class(path: str) -> type[json.JSONEncoder]:
    """The ``json.JSONEncoder`` subclass named by ``path`` (a ``JSON_ENCODER`` value); raises
    :class:`WebhooksConfigurationError` when it cannot be imported or is not one."""
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise WebhooksConfigurationError(
            f"WEBHOOKS['JSON_ENCODER'] = {path!r} cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, json.JSONEncoder)):
        raise WebhooksConfigurationError(
            f"WEBHOOKS['JSON_ENCODER'] = {path!r} is not a json.JSONEncoder subclass.")
    return cls


def encoder_options() -> dict[str, Any]:
    """How the payload encoder is built: compact, UTF-8 as is, no ``NaN`` (not JSON)."""
    return {"separators": (",", ":"), "ensure_ascii": False, "allow_nan": False}


@functools.cache
def json_encoder() -> json.JSONEncoder:
    """The one encoder of every payload (``JSON_ENCODER``), built once per settings change:
    ``json.dumps(cls=...)`` would build a new one per call."""
    return encoder_class(webhooks_settings.JSON_ENCODER)(**encoder_options())


#: What the member ``"sequence": n`` adds to a body at most (20 digits hold any 64-bit value).
SEQUENCE_ALLOWANCE = len(',"sequence":') + 20


def payload_parts(event_id: Any, event_type: str, created_at: datetime, data: Any,
                  changes: Mapping[str, Any] | None = None, *,
                  sequenced: bool = False) -> tuple[str, str]:
    """The JSON body of an event in two parts, around where ``"sequence": n`` goes.

    ``head + tail`` is the body of an event without a sequence number, and
    ``f'{head},"sequence":{n}{tail}'`` the body of one with. The split lets the number be
    filled in by the database, in the statement that draws it (see :mod:`webhooks.outbox`).
    ``sequenced`` says whether the size limit must leave room for the number. Raises
    :class:`PayloadError` like :func:`build_payload`.
    """
    timestamp = created_at.astimezone(UTC).isoformat(timespec="milliseconds")
    encode = json_encoder().encode
    try:
        # Member by member: each part is plain JSON, and the id and timestamp need no escaping.
        head = (f'{{"id":"evt_{ids.encode(event_id)}","type":{encode(event_type)},'
                f'"timestamp":"{timestamp.replace("+00:00", "Z")}"')
        tail = f',"data":{encode(data)}'
        if changes is not None:
            tail += f',"changes":{encode(changes)}'
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise unserializable_error(exc, data=data, changes=changes) from exc
    tail += "}"
    limit = payload_limit()
    length = len(head) + len(tail) + (SEQUENCE_ALLOWANCE if sequenced else 0)
    if length * 4 > limit:  # UTF-8 takes at most 4 bytes a character: only then measure
        size = len(head.encode()) + len(tail.encode())
        if size + (SEQUENCE_ALLOWANCE if sequenced else 0) > limit:
            raise PayloadError(
                f"the payload is {size} bytes, more than MAX_PAYLOAD_BYTES ({limit}); send "
                "less data or an id the receiver can fetch"
            )
    return head, tail


def build_payload(event_id: Any, event_type: str, created_at: datetime, data: Any,
                  changes: Mapping[str, Any] | None = None,
                  sequence: int | None = None) -> str:
    """The JSON body of an event, built once: ``{"id", "type", "timestamp", "data"}``, plus
    ``"sequence": n`` for events that have one (model events, and custom events sent with a
    ``sequence_key``) and ``"changes": {field: {"old", "new"}}`` on ``updated`` events of
    tracked models.

    Raises :class:`PayloadError` when ``data`` cannot be represented as JSON or the body is
    larger than ``MAX_PAYLOAD_BYTES`` (it is never truncated).
    """
    head, tail = payload_parts(event_id, event_type, created_at, data, changes,
                               sequenced=sequence is not None)
    if sequence is None:
        return head + tail
    return f'{head},"sequence":{int(sequence)}{tail}'


def restrict_payload(payload: str, fields: Iterable[str]) -> str:
    """``payload`` with only ``fields`` wherever a field's value appears: the members of its
    ``data`` (when ``data`` is an object) and of its ``changes`` (old and new values of tracked
    fields), so that a field left out of the allowlist reaches the receiver nowhere."""
    document = json.loads(payload)
    keep = set(fields)
    for member in ("data", "changes"):
        value = document.get(member)
        if isinstance(value, dict):
            document[member] = {k: v for k, v in value.items() if k in keep}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def subscriber_payload(payload: str, event_type: str,
                       allowlists: Mapping[str, Sequence[str]]) -> str:
    """The body one endpoint gets for an event: ``payload`` restricted to the allowlist of the
    endpoint's subscription to ``event_type``, or else of its subscription to every type
    (``"*"``). ``allowlists`` maps each of the endpoint's subscribed types to its fields (empty:
    every field)."""
    fields = subscriber_fields(event_type, allowlists)
    return restrict_payload(payload, fields) if fields and payload else payload


def subscriber_fields(event_type: str, allowlists: Mapping[str, Sequence[str]],
                      ) -> tuple[str, ...]:
    """The allowlist that applies to an endpoint's deliveries of ``event_type``: its
    subscription's to the type, else its subscription's to every type (``"*"``); empty:
    every field."""
    fields = allowlists.get(event_type)
    if fields is None:
        fields = allowlists.get("*", ())  # models.WILDCARD (not imported: no ORM here)
    return tuple(fields)


def payload_fields(event_type: str, catalog: Catalog | None = None) -> list[str] | None:
    """The top-level fields of ``data`` for ``event_type``, when they are known: a model
    event's serializer fields (or ``id``/``url`` for thin events), the properties of the
    schema a custom event declares, else the keys of its ``EVENT_EXAMPLES`` entry; ``None``
    when only the sending code knows."""
    catalog = catalog or get_catalog()
    known = catalog.types.get(event_type)
    if known is None:
        return None
    if event_type == TEST_EVENT_TYPE:
        return ["endpoint_id", "message"]
    if known.model:
        for config in catalog.models.values():
            if config.label == known.model:
                if config.thin_url:
                    return ["id", "url"]
                try:
                    serializer = config.serializer_class()
                    return [name for name, f in serializer.fields.items() if not f.write_only]
                except Exception:  # a site's serializer may need what it does not have here
                    return None
    declared = (known.schema or {}).get("properties")
    if isinstance(declared, Mapping):
        return list(declared)
    example = webhooks_settings.EVENT_EXAMPLES.get(event_type)
    return sorted(example) if isinstance(example, dict) else None


#: What encoding a value can raise when it is not JSON.
_ENCODING_ERRORS = (TypeError, ValueError, OverflowError, RecursionError)
#: How deep :func:`find_unserializable` looks (the encoder itself stops near 1000 levels).
_MAX_DEPTH = 200


def unserializable_error(exc: BaseException, **parts: Any) -> PayloadError:
    """The :class:`PayloadError` for ``exc``, raised while encoding ``parts`` (``data``,
    ``changes``), naming the first value to blame: ``data["items"][2]["price"]: Object of type
    Money is not JSON serializable``. Only called once encoding has failed."""
    for name, value in parts.items():
        found = find_unserializable(value, name)
        if found is not None:
            path, reason = found
            return PayloadError(f"the payload is not JSON-serializable: {path}: {reason}",
                                path=path)
    return PayloadError(f"the payload is not JSON-serializable: {exc}")


def find_unserializable(value: Any, path: str, depth: int = 0,
                        parents: frozenset[int] = frozenset()) -> tuple[str, str] | None:
    """The path (``data["items"][2]``) of the first value in ``value`` that the payload
    encoder refuses, and why; ``None`` when it encodes. Objects and arrays are walked the way
    the encoder walks them (dicts and lists and tuples); anything else is encoded whole."""
    if isinstance(value, dict | list | tuple):
        if id(value) in parents:
            return path, "circular reference"
        if depth >= _MAX_DEPTH:
            return None
        inner = parents | {id(value)}
        items = (value.items() if isinstance(value, dict) else enumerate(value))
        for key, item in items:
            if isinstance(value, dict):
                try:
                    json_encoder().encode({key: None})
                except _ENCODING_ERRORS as exc:
                    return path, str(exc)
            step = json.dumps(key, ensure_ascii=False) if isinstance(key, str) else repr(key)
            found = find_unserializable(item, f"{path}[{step}]", depth + 1, inner)
            if found is not None:
                return found
        return None
    try:
        json_encoder().encode(value)
    except _ENCODING_ERRORS as exc:
        return path, str(exc)
    return None
