"""Writing events into the outbox, and asking a worker to dispatch them once they commit."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, router, transaction
from django.utils import timezone

from webhooks.conf import webhooks_settings
from webhooks.events import TEST_EVENT_TYPE, build_payload, get_catalog
from webhooks.exceptions import PayloadError, UnknownEventType
from webhooks.models import WILDCARD, Delivery, DispatchToken, Endpoint, Event

logger = logging.getLogger("webhooks")


def emit_custom_event(event_type: str, data: Any, *, owner: Any = None) -> Event:
    """Implementation of :func:`webhooks.send_event`."""
    if event_type not in get_catalog():
        raise UnknownEventType(
            f"{event_type!r} is not in the event catalog: declare it in WEBHOOKS['EVENTS'] "
            "or WEBHOOKS['MODELS']."
        )
    owner_id = getattr(owner, "pk", owner)
    return write_event(event_type, data, owner_id=owner_id,
                       using=router.db_for_write(Event))


def write_event(
    event_type: str,
    data: Any,
    *,
    owner_id: Any = None,
    using: str | None = None,
    error: str = "",
    strict: bool = True,
    changes: Any = None,
) -> Event:
    """Insert one outbox row in the current transaction and schedule its dispatch on commit.

    With ``strict`` a payload that cannot be serialized raises :class:`PayloadError` (code
    calling ``send_event`` learns at once); without it the error is stored on the event, which
    is kept, so nothing is lost silently.
    """
    using = using or DEFAULT_DB_ALIAS
    event = Event(type=event_type, owner_id=owner_id, created_at=timezone.now())
    if not error:
        try:
            event.payload = build_payload(event.id, event_type, event.created_at, data,
                                          changes)
        except PayloadError as exc:
            if strict:
                raise
            logger.error("Event %s (%s) has no payload: %s", event.public_id, event_type, exc)
            error = str(exc)
    event.error = error[:10_000]
    event.save(using=using, force_insert=True)
    schedule_dispatch(using)
    return event


class _DispatchOnCommit:
    """The one on-commit hook of a transaction that wrote events: ask for a dispatch."""

    def __init__(self, using: str) -> None:
        self.using = using
        self.ran = False

    def __call__(self) -> None:
        self.ran = True
        request_dispatch(self.using)


def schedule_dispatch(using: str) -> None:
    """Ask for a dispatch once the current transaction commits (at once in autocommit).

    One hook per transaction: Django rebuilds ``run_on_commit`` when a savepoint rolls back or
    the transaction ends, so a hook registered on an older list is not reused, nor one that
    already ran (``captureOnCommitCallbacks(execute=True)`` runs hooks and keeps the list).
    """
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        request_dispatch(using)
        return
    state = getattr(connection, "_webhooks_dispatch", None)
    if state is None or state[0] is not connection.run_on_commit or state[1].ran:
        hook = _DispatchOnCommit(using)
        transaction.on_commit(hook, using=using)
        connection._webhooks_dispatch = (connection.run_on_commit, hook)


def request_dispatch(using: str) -> None:
    """Enqueue a dispatch task unless one is already queued (the dispatch token says so).

    Never raises: the events are safe in the outbox and the periodic sweep dispatches them.
    """
    try:
        if not DispatchToken.take(using):
            return  # a queued task will see this transaction's events
    except DatabaseError:
        logger.warning("Could not take the dispatch token; the sweep will pick the events up.",
                       exc_info=True)
        return
    if not enqueue("dispatch"):
        DispatchToken.release(using)  # let the next commit try the broker again


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


def send_test_event(endpoint: Endpoint) -> Delivery:
    """Send a ``webhook.test`` event to ``endpoint`` only (no fan-out), whatever it subscribes."""
    now = timezone.now()
    using = router.db_for_write(Delivery)
    with transaction.atomic(using=using):
        event = Event(type=TEST_EVENT_TYPE, owner_id=endpoint.owner_id, created_at=now,
                      dispatched_at=now)
        event.payload = build_payload(
            event.id, TEST_EVENT_TYPE, now,
            {"endpoint_id": str(endpoint.pk), "message": "This is a test webhook."},
        )
        event.save(using=using, force_insert=True)
        delivery = Delivery.objects.using(using).create(
            event=event, endpoint=endpoint, next_attempt_at=now
        )
        transaction.on_commit(lambda: enqueue("drain"), using=using)
    return delivery


def retry_deliveries(deliveries: Any) -> int:
    """Make deliveries (a queryset) due now for one more attempt. Returns the count.

    Finished deliveries get one more attempt; pending ones waiting for a retry are brought
    forward; ones a worker holds right now are left alone.
    """
    using = deliveries.db
    with transaction.atomic(using=using):
        count = deliveries.exclude(
            status=Delivery.Status.PENDING, claim_token__isnull=False
        ).update(
            status=Delivery.Status.PENDING, next_attempt_at=timezone.now(), claim_token=None
        )
        if count:
            transaction.on_commit(lambda: enqueue("drain"), using=using)
    return int(count)


def replay(endpoint: Endpoint, since: datetime) -> tuple[int, int]:
    """Send ``endpoint`` again what it did not get since ``since``. Returns (retried, added).

    Its failed deliveries created since then become due now, and, when the endpoint is
    active, events it would have received but has no delivery for (it was disabled, or
    subscribed later) get one. ``since`` may go back ``REPLAY_WINDOW`` seconds at most;
    :class:`ValueError` otherwise.
    """
    now = timezone.now()
    if since < now - timedelta(seconds=webhooks_settings.REPLAY_WINDOW):
        raise ValueError(
            f"a replay can go back {webhooks_settings.REPLAY_WINDOW // 3600:g} hours at most")
    using = router.db_for_write(Delivery)
    with transaction.atomic(using=using):
        retried = Delivery.objects.using(using).filter(
            endpoint=endpoint, status=Delivery.Status.FAILED, created_at__gte=since,
        ).update(status=Delivery.Status.PENDING, next_attempt_at=now, claim_token=None)
        added = 0
        if endpoint.is_active:
            types = set(endpoint.subscriptions.values_list("event_type", flat=True))
            missed = (Event.objects.using(using)
                      .filter(created_at__gte=since, dispatched_at__isnull=False, error="")
                      .exclude(type=TEST_EVENT_TYPE)
                      .exclude(deliveries__endpoint=endpoint))
            if WILDCARD not in types:
                missed = missed.filter(type__in=types)
            if endpoint.owner_id is not None:
                missed = missed.filter(owner_id=endpoint.owner_id)
            new = [Delivery(event_id=pk, endpoint=endpoint, next_attempt_at=now, created_at=now)
                   for pk in missed.values_list("pk", flat=True).iterator()]
            Delivery.objects.using(using).bulk_create(new, ignore_conflicts=True,
                                                      batch_size=1000)
            added = len(new)
        if retried or added:
            transaction.on_commit(lambda: enqueue("drain"), using=using)
    return int(retried), added
