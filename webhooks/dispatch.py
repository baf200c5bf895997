"""Asking a worker to dispatch committed events: the dispatch token, and handing tasks to the
queue (:func:`enqueue`, the only caller of :func:`webhooks.tasks.enqueue`).

Everything that writes events or asks for work goes through the *active dispatcher*
(:class:`Dispatcher`): in production :data:`TASK_QUEUE`, which takes the dispatch token and
queues django-q2 tasks. A test double (:func:`webhooks.testing.capture_webhooks`) plugs in
another one with :func:`push_dispatcher`/:func:`pop_dispatcher` (or :func:`use_dispatcher`)
instead of patching functions of this module.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from django.db import DatabaseError, connections, transaction

from webhooks import tasks
from webhooks.cursors import run
from webhooks.models import DispatchToken

if TYPE_CHECKING:  # pragma: no cover
    from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("webhooks")


# --- the dispatcher ---------------------------------------------------------------------------


class Dispatcher(Protocol):
    """What happens after an event is written, and when work is handed to the workers.

    :mod:`webhooks.outbox` calls ``event_written`` after each event row it inserts (in the
    inserting transaction) and ``schedule`` once per :func:`~webhooks.outbox.write_event`;
    :func:`enqueue` (test events, retries, replays, the dispatch token) calls ``enqueue``.
    Implementations are called from any thread that writes events.
    """

    def event_written(self, using: str, event_id: uuid.UUID) -> None:
        """An event row was inserted on database ``using`` (not committed yet)."""

    def schedule(self, using: str) -> None:
        """Events were written on ``using``: have them dispatched once the transaction
        commits (at once in autocommit)."""

    def enqueue(self, task: str, *args: Any) -> bool:
        """Run ``webhooks.tasks.<task>(*args)`` on a worker; ``False`` when that failed (the
        work is safe in the database: the periodic sweep picks it up). Never raises."""


class TaskQueueDispatcher:
    """The production dispatcher: the dispatch token and django-q2 tasks."""

    def event_written(self, using: str, event_id: uuid.UUID) -> None:
        """Nothing to do: the event is dispatched with its transaction's others."""

    def schedule(self, using: str) -> None:
        """:func:`schedule_dispatch`."""
        schedule_dispatch(using)

    def enqueue(self, task: str, *args: Any) -> bool:
        """Queue the task with :func:`webhooks.tasks.enqueue`; a broker failure is logged,
        never raised."""
        try:
            tasks.enqueue(task, *args)
        except Exception:
            logger.warning(
                "Could not enqueue webhooks task %r; the sweep will pick the work up.", task,
                exc_info=True,
            )
            return False
        return True


#: The default dispatcher, active whenever no other one was pushed.
TASK_QUEUE = TaskQueueDispatcher()

_stack_lock = threading.Lock()
_stack: list[Dispatcher] = []
# The last dispatcher pushed (or TASK_QUEUE): read on every event without taking the lock.
_active: Dispatcher = TASK_QUEUE


def active_dispatcher() -> Dispatcher:
    """The dispatcher in use: the last one pushed and not popped yet, else :data:`TASK_QUEUE`."""
    return _active


def push_dispatcher(dispatcher: Dispatcher) -> None:
    """Make ``dispatcher`` the active one, for the whole process (every thread), until it is
    popped."""
    global _active
    with _stack_lock:
        _stack.append(dispatcher)
        _active = dispatcher


def pop_dispatcher(dispatcher: Dispatcher) -> None:
    """Undo the latest :func:`push_dispatcher` of ``dispatcher`` (pushes made later by others
    stay active); :class:`ValueError` if it is not pushed."""
    global _active
    with _stack_lock:
        for index in range(len(_stack) - 1, -1, -1):
            if _stack[index] is dispatcher:
                del _stack[index]
                break
        else:
            raise ValueError(f"{dispatcher!r} is not an active dispatcher")
        _active = _stack[-1] if _stack else TASK_QUEUE


@contextlib.contextmanager
def use_dispatcher(dispatcher: Dispatcher) -> Iterator[Dispatcher]:
    """``with use_dispatcher(d):``: :func:`push_dispatcher` on entry, :func:`pop_dispatcher` on
    exit (even when the block raises)."""
    push_dispatcher(dispatcher)
    try:
        yield dispatcher
    finally:
        pop_dispatcher(dispatcher)


def enqueue(task: str, *args: Any) -> bool:
    """Hand ``webhooks.tasks.<task>(*args)`` to the workers through the active dispatcher;
    ``False`` when the broker failed. Never raises: the work is safe in the database and the
    periodic sweep picks it up."""
    return _active.enqueue(task, *args)


# --- the dispatch token -----------------------------------------------------------------------


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
                # With django-q2's ORM broker on this database the task row goes in with the
                # events and the token: the commit writes all three at once.
                if took and _enqueue_in_transaction(using):
                    took = False
            except DatabaseError:  # try again after the commit
                logger.warning("Could not take the dispatch token.", exc_info=True)
        hook = _DispatchOnCommit(using, took)
        transaction.on_commit(hook, using=using)
        connection._webhooks_dispatch = (connection.run_on_commit, hook)


def _enqueue_in_transaction(using: str) -> bool:
    """Queue the dispatch task inside the current transaction if the broker allows it
    (:func:`webhooks.tasks.enqueue_in_transaction`); ``False`` when it does not."""
    if _active is not TASK_QUEUE:  # a test double decides what enqueueing means
        return False
    return tasks.enqueue_in_transaction(using, "dispatch")


def request_dispatch(using: str) -> None:
    """Enqueue a dispatch task unless one is already queued (the dispatch token says so).

    With django-q2's Redis broker the token is kept in Redis
    (:func:`webhooks.tasks.take_queue_token`): one round trip, no database write after the
    commit. Otherwise it is the :class:`~webhooks.models.DispatchToken` row.

    Never raises: the events are safe in the outbox and the periodic sweep dispatches them.
    """
    try:
        took = tasks.take_queue_token() if _active is TASK_QUEUE else None
    except Exception:
        logger.warning("Could not take the dispatch token kept in the broker; the sweep will "
                       "pick the events up.", exc_info=True)
        return
    if took is not None:
        if took and not enqueue("dispatch"):
            release_queue_token()
        return
    try:
        if not take_token(connections[using]):
            return  # a queued task will see this transaction's events
    except DatabaseError:
        logger.warning("Could not take the dispatch token; the sweep will pick the events up.",
                       exc_info=True)
        return
    enqueue_dispatch(using)


def release_queue_token() -> None:
    """Give back the dispatch token kept in the broker, if any (a failed enqueue, or a test
    that starts afresh); never raises: an unreleased token expires by itself."""
    try:
        tasks.release_queue_token()
    except Exception:
        logger.warning("Could not release the dispatch token kept in the broker.",
                       exc_info=True)


#: ``DispatchToken.take``'s statement per database vendor ("" where that method is used).
_TAKE_SQL: dict[str, str] = {}


def take_token(connection: BaseDatabaseWrapper) -> bool:
    """:meth:`DispatchToken.take <webhooks.models.DispatchToken.take>` on the outbox's kept
    cursor, with its statement built once: a commit pays this on every transaction."""
    sql = _TAKE_SQL.get(connection.vendor)
    if sql is None:
        sql = _TAKE_SQL[connection.vendor] = DispatchToken.take_sql(connection)
    if not sql:
        return DispatchToken.take(connection.alias)
    cursor = run(connection, sql, DispatchToken.take_params(connection))
    return bool(cursor.rowcount == 1)


def enqueue_dispatch(using: str) -> None:
    """Enqueue a dispatch task for the token just taken; give the token back if the broker
    fails, so that the next commit tries the broker again."""
    if not enqueue("dispatch"):
        try:
            DispatchToken.release(using)
        except DatabaseError:  # the sweep drops a token that outlived its task
            logger.warning("Could not release the dispatch token.", exc_info=True)
