"""What the admin, the API and the management commands do to deliveries: send a test event,
retry deliveries, replay an endpoint's missed events.

(Moving to :mod:`webhooks.services`; kept here until then.)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import connections, router, transaction
from django.utils import timezone

from webhooks import ids
from webhooks.conf import webhooks_settings
from webhooks.dispatch import enqueue
from webhooks.events.catalog import TEST_EVENT_TYPE
from webhooks.events.payloads import payload_parts
from webhooks.models import WILDCARD, Delivery, Endpoint, Event
from webhooks.outbox import EVENT_COLUMNS, insert_event


def send_test_event(endpoint: Endpoint) -> Delivery:
    """Send a ``webhook.test`` event to ``endpoint`` only (no fan-out), whatever it subscribes."""
    now = timezone.now()
    using = router.db_for_write(Delivery)
    with transaction.atomic(using=using):
        event_id = ids.uuid7()
        data = {"endpoint_id": str(endpoint.pk), "message": "This is a test webhook."}
        parts = payload_parts(event_id, TEST_EVENT_TYPE, now, data)
        _, payload = insert_event(connections[using], event_id, TEST_EVENT_TYPE,
                                  endpoint.owner_id, now, parts, "", None, dispatched_at=now)
        event = Event.from_db(using, EVENT_COLUMNS, [
            event_id, TEST_EVENT_TYPE, endpoint.owner_id, now, payload, "", now, None])
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
