"""A database cursor kept per connection for the statements every event-writing transaction
runs (the outbox's ``INSERT``, the dispatch token's): a leaf that both
:mod:`webhooks.outbox` and :mod:`webhooks.dispatch` use, so neither imports the other's way
back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from django.db.backends.base.base import BaseDatabaseWrapper


def kept_cursor(connection: BaseDatabaseWrapper) -> Any:
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


#: ``{(vendor, statement): the statement in the driver's own parameter style}``.
_NATIVE_SQL: dict[tuple[str, str], str] = {}


def run(connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any]) -> Any:
    """Execute ``sql`` (``%s`` placeholders); return the cursor it ran on (``fetchall``,
    ``rowcount``).

    When nothing watches the connection's statements (no query logging, no
    ``execute_wrapper``, no tool that replaced ``connection.cursor``) the statement goes straight
    to the driver, skipping Django's per-statement wrapping: on SQLite in its own parameter
    style (``?``); on PostgreSQL (psycopg 3), where the site enabled prepared statements
    (``OPTIONS = {"prepare_threshold": …}``), on a server-binding cursor of our own as a
    prepared statement, so the server plans the outbox's ``INSERT`` once per connection rather
    than once per event. Driver errors still come out as
    Django's ``DatabaseError`` subclasses, and a transaction that must be rolled back still
    refuses it. Otherwise the statement runs through Django's cursor like any other, so that
    whoever watches sees it.
    """
    cursor = kept_cursor(connection)
    if (connection.queries_logged or connection.execute_wrappers
            or "cursor" in connection.__dict__ or connection.allow_thread_sharing):
        cursor.execute(sql, params)
        return cursor
    connection.validate_no_broken_transaction()
    vendor = connection.vendor
    if vendor == "sqlite":
        key = (vendor, sql)
        native = _NATIVE_SQL.get(key)
        if native is None:
            native = _NATIVE_SQL[key] = sql.replace("%s", "?")
        with connection.wrap_database_errors:
            # sqlite3.Cursor's own execute: Django's subclass would convert "%s" again.
            _sqlite_execute(cursor.cursor, native, params)
        return cursor
    if vendor == "postgresql" and _is_psycopg3(connection):
        prepared = _prepared_cursor(connection)
        if prepared is not None:
            with connection.wrap_database_errors:
                prepared.execute(sql, params, prepare=True)
            return prepared
    with connection.wrap_database_errors:
        cursor.cursor.execute(sql, params)
    return cursor


def _sqlite_execute(cursor: Any, sql: str, params: Sequence[Any]) -> None:
    import sqlite3

    sqlite3.Cursor.execute(cursor, sql, params)


def _is_psycopg3(connection: BaseDatabaseWrapper) -> bool:
    return getattr(getattr(connection, "Database", None), "__name__", "") == "psycopg"


def _prepared_cursor(connection: BaseDatabaseWrapper) -> Any | None:
    """A server-binding psycopg cursor kept per (raw) connection, for prepared statements; or
    ``None`` where the site has not enabled them: Django turns psycopg's ``prepare_threshold``
    off unless ``OPTIONS`` set it (a transaction-pooling PgBouncer before 1.21 cannot keep
    them), and ``DISABLE_SERVER_SIDE_CURSORS`` says such a pooler is in the way."""
    raw = connection.connection
    kept = getattr(connection, "_webhooks_prepared", None)
    if kept is not None and kept[0] is raw:
        return kept[1]
    cursor = None
    if (raw.prepare_threshold is not None
            and not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")):
        import psycopg

        cursor = psycopg.Cursor(raw)
    connection._webhooks_prepared = (raw, cursor)  # type: ignore[attr-defined]
    return cursor
