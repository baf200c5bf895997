"""Writing events into the outbox: one plain-SQL ``INSERT`` in the caller's transaction (with
the event's per-object sequence number drawn in it), then a dispatch asked for through
:mod:`webhooks.dispatch`.

Event rows are written with plain SQL, so Django's ``pre_save``/``post_save`` signals never
fire for them: the active dispatcher's ``event_written`` is told about each one instead.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, models, router, transaction
from django.utils import timezone

from webhooks import dispatch, ids
from webhooks.cursors import run
from webhooks.events.catalog import ACTIONS, ModelEvents, get_catalog
from webhooks.events.payloads import payload_parts
from webhooks.exceptions import InvalidInstance, PayloadError, UnknownEventType
from webhooks.models import Event, ObjectSequence
from webhooks.owners import owner_pk

if TYPE_CHECKING:  # pragma: no cover
    from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("webhooks")

#: Longest key an :class:`~webhooks.models.ObjectSequence` row can have.
MAX_SEQUENCE_KEY = 255


def emit_custom_event(event_type: str, data: Any, *, owner: Any = None,
                      sequence_key: str | models.Model | None = None) -> Event:
    """Implementation of :func:`webhooks.send_event`."""
    if event_type not in get_catalog():
        raise UnknownEventType(
            f"{event_type!r} is not in the event catalog: declare it in WEBHOOKS['EVENTS'] "
            "or WEBHOOKS['MODELS']."
        )
    if not isinstance(data, dict):
        raise PayloadError(
            f"data must be a JSON object (a dict), not {type(data).__name__}: wrap it in one, "
            'such as {"items": [...]}, so that receivers can rely on the same shape and fields '
            "can be added later.")
    if isinstance(sequence_key, models.Model):
        if sequence_key.pk is None:
            raise ValueError("sequence_key is an unsaved model instance: it has no primary key "
                             "to count its events by.")
        sequence_key = object_sequence_key(sequence_key)
    elif sequence_key is not None and (not isinstance(sequence_key, str) or not sequence_key):
        raise ValueError("sequence_key must be a non-empty string or a saved model instance, "
                         f"not {sequence_key!r}.")
    owner_id = owner_pk(owner)
    return write_event(event_type, data, owner_id=owner_id, using=router.db_for_write(Event),
                       sequence_key=sequence_key)


def emit_model_event(instance: models.Model, action: str) -> Event:
    """Implementation of :func:`webhooks.send_model_event`."""
    config = get_catalog().models.get(type(instance))
    if config is None:
        raise InvalidInstance(
            f"{type(instance).__name__} publishes no events: add "
            f"{instance._meta.label!r} to WEBHOOKS['MODELS'] (with 'actions' for custom ones)."
        )
    if not config.publishes(action):
        key = "events" if action in ACTIONS else "actions"
        raise UnknownEventType(
            f"{config.event_type(action)!r} is not in the event catalog: add {action!r} to "
            f"WEBHOOKS['MODELS'][{config.label!r}][{key!r}]."
        )
    if instance._state.adding or instance.pk is None:
        raise InvalidInstance(
            f"This {type(instance).__name__} has no primary key (it is not saved, or was "
            f"deleted): {config.event_type(action)!r} must say which object it is about."
        )
    return cast(Event, write_model_event(config, action, instance,
                                         instance._state.db or router.db_for_write(Event)))


def write_model_event(
    config: ModelEvents, action: str, instance: models.Model, using: str, *,
    changes: Any = None, strict: bool = True, returning: bool = True,
) -> Event | None:
    """Write ``<model>.<action>`` about ``instance``: its owner (the owner path), its ``data``
    (thin, or the serializer's output) and the next number of its object's sequence.

    The one writer of model events, for the signal receivers (:mod:`webhooks.events.capture`,
    not ``strict``: whatever the serializer does, the site's save succeeds and the event is kept
    with its ``error``, for staff to see) and for :func:`webhooks.send_model_event`
    (``strict``: the caller gets the serializer's exception or a :class:`PayloadError`).
    """
    event_type = config.event_type(action)
    error = ""
    data: Any = None
    owner_id: Any = None
    try:
        owner_id = config.owner_id(instance)
        data = config.data(instance)
    except Exception as exc:  # a site's serializer may raise anything
        if strict:
            raise
        logger.exception("Could not serialize %s for event %s", config.label, event_type)
        error = f"{type(exc).__name__}: {exc}"
    return write_event(event_type, data, owner_id=owner_id, using=using, error=error,
                       strict=strict, changes=changes, sequence_key=config.sequence_key(instance),
                       returning=returning)


@overload
def write_event(event_type: str, data: Any, *, owner_id: Any = ..., using: str | None = ...,
                error: str = ..., strict: bool = ..., changes: Any = ...,
                sequence_key: str | None = ..., returning: Literal[True] = ...) -> Event: ...
@overload
def write_event(event_type: str, data: Any, *, owner_id: Any = ..., using: str | None = ...,
                error: str = ..., strict: bool = ..., changes: Any = ...,
                sequence_key: str | None = ..., returning: bool) -> Event | None: ...
def write_event(
    event_type: str,
    data: Any,
    *,
    owner_id: Any = None,
    using: str | None = None,
    error: str = "",
    strict: bool = True,
    changes: Any = None,
    sequence_key: str | None = None,
    returning: bool = True,
) -> Event | None:
    """Insert one outbox row in the current transaction and ask the active dispatcher to
    dispatch it on commit (:func:`webhooks.dispatch.schedule_dispatch` in production).

    With ``strict`` a payload that cannot be serialized raises :class:`PayloadError` (code
    calling ``send_event`` learns at once); without it the error is stored on the event, which
    is kept, so nothing is lost silently. With a ``sequence_key`` the event gets the next
    number of that key's counter (``"sequence"`` in the body). ``returning=False`` skips
    building the :class:`Event` instance (model capture does not need it) and returns ``None``.
    """
    using = using or DEFAULT_DB_ALIAS
    event_id = ids.uuid7()
    created_at = timezone.now()
    parts: tuple[str, str] | None = None
    if not error:
        try:
            parts = payload_parts(event_id, event_type, created_at, data, changes,
                                  sequenced=sequence_key is not None)
        except PayloadError as exc:
            if strict:
                raise
            logger.error("Event %s (%s) has no payload: %s", ids.to_public("evt", event_id),
                         event_type, exc)
            error = str(exc)
    error = error[:10_000]
    if sequence_key is not None and len(sequence_key) > MAX_SEQUENCE_KEY:
        sequence_key = _bounded_key(sequence_key)
    connection = connections[using]
    if connection.in_atomic_block:
        sequence, payload = insert_event(connection, event_id, event_type, owner_id,
                                         created_at, parts, error, sequence_key)
        dispatch.active_dispatcher().schedule(using)
    else:
        # Autocommit (a save outside any transaction): one transaction for the counter, the
        # event and, where the database keeps them, the dispatch token and the queued task,
        # instead of a commit for each.
        with transaction.atomic(using=using):
            sequence, payload = insert_event(connection, event_id, event_type, owner_id,
                                             created_at, parts, error, sequence_key)
            dispatch.active_dispatcher().schedule(using)
    if not returning:
        return None
    return Event.from_db(using, EVENT_COLUMNS, [
        event_id, event_type, owner_id, created_at, payload, error, None, sequence])


def object_sequence_key(instance: models.Model) -> str:
    """The sequence counter key of a saved model instance: ``app_label.model:pk`` of its
    concrete model (the key its model events count with)."""
    label = instance._meta.concrete_model._meta.label_lower  # type: ignore[union-attr]
    return f"{label}:{instance.pk}"


def _bounded_key(key: str) -> str:
    """A key that fits the counter table: a long one keeps its start and gains a digest, so two
    long keys never share a counter."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[:MAX_SEQUENCE_KEY - 65]}#{digest}"


# --- the statements ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Statements:
    """The SQL that writes events on one kind of database, built once per vendor."""

    insert: str
    #: One statement that draws the next number of a counter and returns it, or "".
    next_sequence: str
    #: PostgreSQL: one statement that draws the number and inserts the event with it.
    insert_sequenced: str
    #: PostgreSQL: the same through the ``webhooks_insert_event`` function (migration 0014),
    #: whose statements the server plans once per session.
    insert_function: str


_STATEMENTS: dict[str, _Statements] = {}
#: Columns (and attribute names) of an event row, in the order of its concrete fields, the
#: order ``Event.from_db`` takes them in.
EVENT_COLUMNS = ("id", "type", "owner_id", "created_at", "payload", "error", "dispatched_at",
                 "sequence")


def _statements(connection: BaseDatabaseWrapper) -> _Statements:
    found = _STATEMENTS.get(connection.vendor)
    if found is not None:
        return found
    q = connection.ops.quote_name
    fields = Event._meta.concrete_fields
    if (tuple(f.column for f in fields) != EVENT_COLUMNS
            or tuple(f.attname for f in fields) != EVENT_COLUMNS):
        raise AssertionError("Event's columns changed: update webhooks.outbox.EVENT_COLUMNS")
    event, counter = q(Event._meta.db_table), q(ObjectSequence._meta.db_table)
    key, value = q("key"), q("value")
    columns = ", ".join(q(c) for c in EVENT_COLUMNS)
    upsert = (f"INSERT INTO {counter} ({key}, {value}) VALUES (%s, 1) "  # noqa: S608
              f"ON CONFLICT ({key}) DO UPDATE SET {value} = {counter}.{value} + 1 "
              f"RETURNING {value}")
    statements = _Statements(
        insert=f"INSERT INTO {event} ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",  # noqa: S608 - quoted names
        next_sequence=(upsert if connection.vendor in ("postgresql", "sqlite")
                       and connection.features.can_return_columns_from_insert else ""),
        insert_sequenced=(
            # The counter's row lock is held until commit: a concurrent transaction that
            # changes the same object waits here, then draws the next number.
            f"WITH s AS ({upsert}) INSERT INTO {event} ({columns}) "  # noqa: S608 - quoted names
            f"SELECT %s, %s, %s, %s, %s || CAST(s.{value} AS text) || %s, %s, %s, s.{value} "
            f"FROM s RETURNING {q('sequence')}"
        ) if connection.vendor == "postgresql" else "",
        insert_function=("SELECT webhooks_insert_event(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                         if connection.vendor == "postgresql" else ""),
    )
    _STATEMENTS[connection.vendor] = statements
    return statements


def insert_event(connection: BaseDatabaseWrapper, event_id: uuid.UUID, event_type: str,
                 owner_id: Any, created_at: datetime, parts: tuple[str, str] | None,
                 error: str, sequence_key: str | None, dispatched_at: datetime | None = None,
                 ) -> tuple[int | None, str]:
    """Insert an event row with plain SQL (no model save, no signals); return its sequence
    number (``None`` without ``sequence_key``) and its payload.

    ``parts`` is :func:`~webhooks.events.payloads.payload_parts`' output, ``None`` when the payload
    could not be built (``error`` says why). On PostgreSQL an event with a sequence costs one
    statement: the counter's upsert is a data-modifying CTE of the event's ``INSERT``.
    Elsewhere the counter is drawn first, in the same transaction.
    """
    sql = _statements(connection)
    db_id = event_id if connection.features.has_native_uuid_field else event_id.hex
    adapt = connection.ops.adapt_datetimefield_value
    db_created = adapt(created_at)
    db_dispatched = None if dispatched_at is None else adapt(dispatched_at)
    sequence: int | None = None
    if sequence_key is None or parts is None or not sql.insert_sequenced:
        if sequence_key is not None and not connection.in_atomic_block:
            with transaction.atomic(using=connection.alias):  # the counter and the event
                return insert_event(connection, event_id, event_type, owner_id, created_at,
                                    parts, error, sequence_key, dispatched_at)
        if sequence_key is not None:
            sequence = next_sequence(connection, sequence_key)
        if parts is None:
            payload = ""
        elif sequence is None:
            payload = parts[0] + parts[1]
        else:
            payload = f'{parts[0]},"sequence":{sequence}{parts[1]}'
        run(connection, sql.insert, [
            db_id, event_type, owner_id, db_created, payload, error, db_dispatched, sequence])
    else:
        head, tail = parts
        statement = sql.insert_function if _has_function(connection) else sql.insert_sequenced
        cursor = run(connection, statement, [
            sequence_key, db_id, event_type, owner_id, db_created, head + ',"sequence":', tail,
            error, db_dispatched])
        sequence = int(cursor.fetchall()[0][0])
        payload = f'{head},"sequence":{sequence}{tail}'
    dispatch.active_dispatcher().event_written(connection.alias, event_id)
    return sequence, payload


#: ``{database alias: whether webhooks_insert_event exists there}``, looked up once per
#: process (migration 0014 creates it; a database set up without migrations has none).
_FUNCTION_EXISTS: dict[str, bool] = {}


def _has_function(connection: BaseDatabaseWrapper) -> bool:
    found = _FUNCTION_EXISTS.get(connection.alias)
    if found is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regproc('webhooks_insert_event') IS NOT NULL")
            found = _FUNCTION_EXISTS[connection.alias] = bool(cursor.fetchone()[0])
    return found


def forget_function(using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """``post_migrate`` receiver: look for ``webhooks_insert_event`` again on the database just
    migrated (or flushed), now rather than in the next save (migration 0014 applied or
    unapplied, a test database created)."""
    _FUNCTION_EXISTS.pop(using, None)
    connection = connections[using]
    if connection.vendor == "postgresql":
        _has_function(connection)


def next_sequence(connection: BaseDatabaseWrapper, key: str) -> int:
    """Draw the next number of ``key``'s counter (1 for a new key), in the current
    transaction: the counter row stays locked until it ends, so numbers follow commit order.

    One ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` on PostgreSQL and SQLite 3.35+;
    elsewhere an ``UPDATE``, an ``INSERT`` for a new key (in a savepoint, retried as an
    update when another transaction inserted it first) and a ``SELECT``.
    """
    sql = _statements(connection).next_sequence
    if sql:
        cursor = run(connection, sql, [key])
        return int(cursor.fetchall()[0][0])  # all: SQLite finishes the statement only then
    with connection.cursor() as cursor:
        table = connection.ops.quote_name(ObjectSequence._meta.db_table)
        k, v = connection.ops.quote_name("key"), connection.ops.quote_name("value")
        update = f"UPDATE {table} SET {v} = {v} + 1 WHERE {k} = %s"  # noqa: S608 - quoted names
        cursor.execute(update, [key])
        if cursor.rowcount != 1:
            try:
                with transaction.atomic(using=connection.alias):
                    cursor.execute(f"INSERT INTO {table} ({k}, {v}) VALUES (%s, 1)",  # noqa: S608
                                   [key])
                return 1
            except IntegrityError:  # inserted meanwhile by a concurrent transaction
                cursor.execute(update, [key])
        cursor.execute(f"SELECT {v} FROM {table} WHERE {k} = %s", [key])  # noqa: S608
        return int(cursor.fetchone()[0])
