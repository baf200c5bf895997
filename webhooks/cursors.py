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
    """Execute ``sql`` (``%s`` placeholders) on the kept cursor; return the cursor.

    When nothing watches the connection's statements (no query logging, no
    ``execute_wrapper``, no tool that replaced ``connection.cursor``) the statement goes straight
    to the driver's cursor, already in its parameter style (``?`` for SQLite), skipping
    Django's per-statement wrapping; driver errors still come out as Django's
    ``DatabaseError`` subclasses, and a transaction that must be rolled back still refuses
    it. Otherwise it runs through Django's cursor like any other statement, so that
    whoever watches sees it.
    """
    cursor = kept_cursor(connection)
    if (connection.queries_logged or connection.execute_wrappers
            or "cursor" in connection.__dict__ or connection.allow_thread_sharing):
        cursor.execute(sql, params)
        return cursor
    key = (connection.vendor, sql)
    native = _NATIVE_SQL.get(key)
    if native is None:
        native = _NATIVE_SQL[key] = (sql.replace("%s", "?") if connection.vendor == "sqlite"
                                     else sql)
    connection.validate_no_broken_transaction()
    driver_cursor = cursor.cursor
    if connection.vendor == "sqlite":
        with connection.wrap_database_errors:
            # sqlite3.Cursor's own execute: Django's subclass would convert "%s" again.
            _sqlite_execute(driver_cursor, native, params)
    else:
        with connection.wrap_database_errors:
            driver_cursor.execute(native, params)
    return cursor


def _sqlite_execute(cursor: Any, sql: str, params: Sequence[Any]) -> None:
    import sqlite3

    sqlite3.Cursor.execute(cursor, sql, params)
