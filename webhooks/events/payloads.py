"""Event payloads: the JSON body every delivery of an event sends, and what a subscription may
restrict it to.

Pure functions of the catalog and the settings; nothing here writes to the database.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from webhooks import ids
from webhooks.conf import webhooks_settings
from webhooks.events.catalog import TEST_EVENT_TYPE, Catalog, get_catalog
from webhooks.exceptions import PayloadError
from webhooks.models import WILDCARD


@functools.cache
def payload_limit() -> int:
    """``MAX_PAYLOAD_BYTES``, read once per settings change rather than once per event."""
    return webhooks_settings.MAX_PAYLOAD_BYTES


def clear_caches(**kwargs: Any) -> None:
    """``setting_changed`` receiver: read ``MAX_PAYLOAD_BYTES`` again."""
    if kwargs.get("setting") in (None, "WEBHOOKS"):
        payload_limit.cache_clear()


#: One encoder for every payload: ``json.dumps(cls=...)`` would build a new one per call.
_ENCODER = DjangoJSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
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
    encode = _ENCODER.encode
    try:
        # Member by member: each part is plain JSON, and the id and timestamp need no escaping.
        head = (f'{{"id":"evt_{ids.encode(event_id)}","type":{encode(event_type)},'
                f'"timestamp":"{timestamp.replace("+00:00", "Z")}"')
        tail = f',"data":{encode(data)}'
        if changes is not None:
            tail += f',"changes":{encode(changes)}'
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise PayloadError(f"the payload is not JSON-serializable: {exc}") from exc
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



def allowed_fields(restrictions: Mapping[str, Iterable[str]], event_type: str,
                   ) -> tuple[str, ...]:
    """The fields ``data`` is restricted to for ``event_type`` by an endpoint's subscriptions
    (``{event type or "*": fields}``): the type's own subscription wins over ``"*"``; empty:
    not restricted."""
    fields = restrictions.get(event_type)
    if fields is None:
        fields = restrictions.get(WILDCARD, ())
    return tuple(fields or ())


def restrict_payload(payload: str, fields: Iterable[str]) -> str:
    """``payload`` with only ``fields`` of its ``data`` (when ``data`` is an object)."""
    document = json.loads(payload)
    data = document.get("data")
    if isinstance(data, dict):
        keep = set(fields)
        document["data"] = {k: v for k, v in data.items() if k in keep}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


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
