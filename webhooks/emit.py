"""Writing events into the outbox, and asking a worker to dispatch them once they commit."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, overload

from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    connections,
    models,
    router,
    transaction,
)
from django.utils import timezone

from webhooks import ids
from webhooks.events import get_catalog, payload_parts
from webhooks.exceptions import PayloadError, UnknownEventType
from webhooks.models import DispatchToken, Event, ObjectSequence

if TYPE_CHECKING:  # pragma: no cover
    from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("webhooks")


#: Called as ``hook(using, event_id)`` after each event row is inserted, in the inserting
#: transaction (:mod:`webhooks.testing` records captures through it). Event rows are written
#: with plain SQL, so Django's ``pre_save``/``post_save`` signals never fire for them.
event_written_hooks: list[Callable[[str, uuid.UUID], None]] = []

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
    if isinstance(sequence_key, models.Model):
        if sequence_key.pk is None:
            raise ValueError("sequence_key is an unsaved model instance: it has no primary key "
                             "to count its events by.")
        sequence_key = object_sequence_key(sequence_key)
    elif sequence_key is not None and (not isinstance(sequence_key, str) or not sequence_key):
        raise ValueError("sequence_key must be a non-empty string or a saved model instance, "
                         f"not {sequence_key!r}.")
    owner_id = getattr(owner, "pk", owner)
    return write_event(event_type, data, owner_id=owner_id, using=router.db_for_write(Event),
                       sequence_key=sequence_key)


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
    """Insert one outbox row in the current transaction and schedule its dispatch on commit.

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
    sequence, payload = insert_event(connections[using], event_id, event_type, owner_id,
                                     created_at, parts, error, sequence_key)
    schedule_dispatch(using)
    if not returning:
        return None
    return Event.from_db(using, _EVENT_COLUMNS, [
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
    #: ``DispatchToken.take``'s statement (PostgreSQL and SQLite), or "": that method then.
    take_token: str


_STATEMENTS: dict[str, _Statements] = {}
#: Columns (and attribute names) of an event row, in the order of its concrete fields, the
#: order ``Event.from_db`` takes them in.
_EVENT_COLUMNS = ("id", "type", "owner_id", "created_at", "payload", "error", "dispatched_at",
                  "sequence")


def _statements(connection: BaseDatabaseWrapper) -> _Statements:
    found = _STATEMENTS.get(connection.vendor)
    if found is not None:
        return found
    q = connection.ops.quote_name
    fields = Event._meta.concrete_fields
    if (tuple(f.column for f in fields) != _EVENT_COLUMNS
            or tuple(f.attname for f in fields) != _EVENT_COLUMNS):
        raise AssertionError("Event's columns changed: update webhooks.emit._EVENT_COLUMNS")
    event, counter = q(Event._meta.db_table), q(ObjectSequence._meta.db_table)
    key, value = q("key"), q("value")
    columns = ", ".join(q(c) for c in _EVENT_COLUMNS)
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
        take_token=DispatchToken.take_sql(connection),
    )
    _STATEMENTS[connection.vendor] = statements
    return statements


def insert_event(connection: BaseDatabaseWrapper, event_id: uuid.UUID, event_type: str,
                 owner_id: Any, created_at: datetime, parts: tuple[str, str] | None,
                 error: str, sequence_key: str | None, dispatched_at: datetime | None = None,
                 ) -> tuple[int | None, str]:
    """Insert an event row with plain SQL (no model save, no signals); return its sequence
    number (``None`` without ``sequence_key``) and its payload.

    ``parts`` is :func:`~webhooks.events.payload_parts`' output, ``None`` when the payload
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
        _cursor(connection).execute(sql.insert, [
            db_id, event_type, owner_id, db_created, payload, error, db_dispatched, sequence])
    else:
        head, tail = parts
        cursor = _cursor(connection)
        cursor.execute(sql.insert_sequenced, [
            sequence_key, db_id, event_type, owner_id, db_created, head + ',"sequence":', tail,
            error, db_dispatched])
        sequence = int(cursor.fetchall()[0][0])
        payload = f'{head},"sequence":{sequence}{tail}'
    for hook in event_written_hooks:
        hook(connection.alias, event_id)
    return sequence, payload


def _cursor(connection: BaseDatabaseWrapper) -> Any:
    """A cursor of ``connection`` kept for the outbox's statements: opening and closing one
    per event cost a third of what the event's ``INSERT`` costs the caller.

    A new one is made when Django has reconnected, when it starts or stops logging queries
    (``DEBUG``, ``CaptureQueriesContext``), or when a tool has replaced ``connection.cursor``
    (django-debug-toolbar), so the statements show up where the caller's do. None is kept
    while the connection is shared between threads (a live-server test): a cursor is not.
    Every statement run on it fetches all its rows, so none is left open.
    """
    logged = connection.queries_logged
    factory = connection.__dict__.get("cursor")  # set only by tools that wrap cursors
    kept = getattr(connection, "_webhooks_cursor", None)
    if (kept is not None and kept[0] is connection.connection and kept[1] == logged
            and kept[2] is factory):
        return kept[3]
    cursor = connection.cursor()
    if connection.allow_thread_sharing:
        connection._webhooks_cursor = None  # type: ignore[attr-defined]
    else:
        connection._webhooks_cursor = (  # type: ignore[attr-defined]
            connection.connection, logged, factory, cursor)
    return cursor


def next_sequence(connection: BaseDatabaseWrapper, key: str) -> int:
    """Draw the next number of ``key``'s counter (1 for a new key), in the current
    transaction: the counter row stays locked until it ends, so numbers follow commit order.

    One ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` on PostgreSQL and SQLite 3.35+;
    elsewhere an ``UPDATE``, an ``INSERT`` for a new key (in a savepoint, retried as an
    update when another transaction inserted it first) and a ``SELECT``.
    """
    sql = _statements(connection).next_sequence
    if sql:
        cursor = _cursor(connection)
        cursor.execute(sql, [key])
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


class _DispatchOnCommit:
    """The one on-commit hook of a transaction that wrote events: ask for a dispatch.

    ``took`` is ``None`` when the dispatch token is to be taken after the commit, else whether
    the transaction itself took it (SQLite, see :func:`schedule_dispatch`).
    """

    def __init__(self, using: str, took: bool | None = None) -> None:
        self.using = using
        self.took = took
        self.ran = False

    def __call__(self) -> None:
        self.ran = True
        if self.took is None:
            request_dispatch(self.using)
        elif self.took:
            enqueue_dispatch(self.using)


def schedule_dispatch(using: str) -> None:
    """Ask for a dispatch once the current transaction commits (at once in autocommit).

    One hook per transaction: Django rebuilds ``run_on_commit`` when a savepoint rolls back or
    the transaction ends, so a hook registered on an older list is not reused, nor one that
    already ran (``captureOnCommitCallbacks(execute=True)`` runs hooks and keeps the list).

    On SQLite the dispatch token is taken inside the transaction, with its events: SQLite has
    one writer at a time, so no task can release the token between this check and the commit
    (the task's ``DELETE`` waits for it), and the token commits with the events instead of
    costing a write transaction (and its sync to disk) of its own. Elsewhere that would make
    concurrent transactions wait for each other on the token row, so it is taken after the
    commit.
    """
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        request_dispatch(using)
        return
    state = getattr(connection, "_webhooks_dispatch", None)
    if state is None or state[0] is not connection.run_on_commit or state[1].ran:
        took = None
        if connection.vendor == "sqlite":
            try:
                took = take_token(connection)
            except DatabaseError:  # try again after the commit
                logger.warning("Could not take the dispatch token.", exc_info=True)
        hook = _DispatchOnCommit(using, took)
        transaction.on_commit(hook, using=using)
        connection._webhooks_dispatch = (connection.run_on_commit, hook)


def request_dispatch(using: str) -> None:
    """Enqueue a dispatch task unless one is already queued (the dispatch token says so).

    Never raises: the events are safe in the outbox and the periodic sweep dispatches them.
    """
    try:
        if not take_token(connections[using]):
            return  # a queued task will see this transaction's events
    except DatabaseError:
        logger.warning("Could not take the dispatch token; the sweep will pick the events up.",
                       exc_info=True)
        return
    enqueue_dispatch(using)


def take_token(connection: BaseDatabaseWrapper) -> bool:
    """:meth:`DispatchToken.take <webhooks.models.DispatchToken.take>` on the outbox's kept
    cursor, with its statement built once: a commit pays this on every transaction."""
    sql = _statements(connection).take_token
    if not sql:
        return DispatchToken.take(connection.alias)
    cursor = _cursor(connection)
    cursor.execute(sql, DispatchToken.take_params(connection))
    return bool(cursor.rowcount == 1)


def enqueue_dispatch(using: str) -> None:
    """Enqueue a dispatch task for the token just taken; give the token back if the broker
    fails, so that the next commit tries the broker again."""
    if not enqueue("dispatch"):
        try:
            DispatchToken.release(using)
        except DatabaseError:  # the sweep drops a token that outlived its task
            logger.warning("Could not release the dispatch token.", exc_info=True)


def enqueue(task: str, *args: Any) -> bool:
    """Hand work to django-q2; ``False`` when the broker failed. A broker failure is logged,
    never raised: the work is safe in the database and the periodic sweep picks it up."""
    from webhooks import tasks

    try:
        tasks.enqueue(task, *args)
    except Exception:
        logger.warning(
            "Could not enqueue webhooks task %r; the sweep will pick the work up.", task,
            exc_info=True,
        )
        return False
    return True

