"""A database cursor kept per connection for the statements every event-writing transaction
runs (the outbox's ``INSERT``, the dispatch token's): a leaf that both
:mod:`webhooks.outbox` and :mod:`webhooks.dispatch` use, so neither imports the other's way
back."""

from __future__ import annotations

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
