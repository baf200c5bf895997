"""Writing events into the outbox, and asking a worker to dispatch them once they commit."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import DEFAULT_DB_ALIAS, router, transaction
from django.utils import timezone

from webhooks.events import TEST_EVENT_TYPE, build_payload, get_catalog
from webhooks.exceptions import PayloadError, UnknownEventType
from webhooks.models import Delivery, Endpoint, Event

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
            event.payload = build_payload(event.id, event_type, event.created_at, data)
        except PayloadError as exc:
            if strict:
                raise
            logger.error("Event %s (%s) has no payload: %s", event.public_id, event_type, exc)
            error = str(exc)
    event.error = error[:10_000]
    event.save(using=using, force_insert=True)
    schedule_dispatch(event.id, using)
    return event


class _DispatchOnCommit:
    """One on-commit hook per transaction that dispatches every event the transaction wrote.

    A transaction that writes 100 events enqueues one task, not 100.
    """

    def __init__(self) -> None:
        self.event_ids: list[str] = []

    def __call__(self) -> None:
        enqueue("dispatch", self.event_ids)


def schedule_dispatch(event_id: uuid.UUID, using: str) -> None:
    """Dispatch ``event_id`` once the current transaction commits (at once in autocommit).

    Hooks are shared per transaction: Django rebuilds ``run_on_commit`` when a savepoint rolls
    back or the transaction ends, so a hook registered on an older list is not reused. Events of
    a rolled-back savepoint may be named in a hook; dispatch skips ids that do not exist.
    """
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        enqueue("dispatch", [str(event_id)])
        return
    hooks = connection.run_on_commit
    state = getattr(connection, "_webhooks_dispatch", None)
    if state is None or state[0] is not hooks:
        pending = _DispatchOnCommit()
        transaction.on_commit(pending, using=using)
        connection._webhooks_dispatch = (connection.run_on_commit, pending)
    else:
        pending = state[1]
    pending.event_ids.append(str(event_id))


def enqueue(task: str, *args: Any) -> None:
    """Hand work to django-q2. A broker failure is logged, never raised: the event is safe in
    the outbox and the periodic sweep dispatches it."""
    from webhooks import tasks

    try:
        tasks.enqueue(task, *args)
    except Exception:
        logger.warning(
            "Could not enqueue webhooks task %r; the sweep will pick the work up.", task,
            exc_info=True,
        )


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
