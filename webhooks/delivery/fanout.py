"""Fan-out: one delivery per (event, matching endpoint) for each event not yet dispatched.

The first step after an event is committed. Matching is :func:`match_endpoints` (pure), fed by
:func:`subscriptions_for` (one query); ``webhooks.testing`` uses the same two to say where a
captured event would go.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from django.db import connections, router, transaction
from django.db.models import Q
from django.utils import timezone

from webhooks.models import WILDCARD, Delivery, Event, Subscription

#: Events fanned out per query round.
FAN_OUT_CHUNK = 1000

Status = Delivery.Status


class FanOut(NamedTuple):
    """What one fan-out round did: events dispatched, deliveries made (``pending`` ones)."""

    events: int
    deliveries: int


def fan_out(event_ids: Iterable[str] | None = None, *, created_before: datetime | None = None,
            limit: int = FAN_OUT_CHUNK) -> int:
    """Create one delivery per (event, matching endpoint) for undispatched events.

    Idempotent: the unique (event, endpoint) constraint absorbs a second run. Matching: the
    endpoint is active, subscribes to the type or to ``"*"``, and is site-wide or belongs to
    the event's owner. Returns how many events were dispatched.
    """
    return fan_out_round(event_ids, created_before=created_before, limit=limit).events


def fan_out_round(event_ids: Iterable[str] | None = None, *,
                  created_before: datetime | None = None, limit: int = FAN_OUT_CHUNK) -> FanOut:
    """:func:`fan_out`, saying also how many deliveries to send it made.

    Where the database can (PostgreSQL), the events are read ``FOR UPDATE SKIP LOCKED`` in the
    transaction that writes their deliveries: two dispatch tasks running at once take
    different events instead of both fanning out (and marking) the same ones. SQLite has one
    writer at a time; a second run's rows are absorbed by the unique constraint.
    """
    using = router.db_for_write(Delivery)
    events_qs = Event.objects.using(using).undispatched().only("id", "type", "owner_id", "error")
    if event_ids is not None:
        events_qs = events_qs.filter(pk__in=list(event_ids))
    if created_before is not None:
        events_qs = events_qs.filter(created_at__lt=created_before)
    events_qs = events_qs.order_by("created_at")
    features = connections[using].features
    if not features.has_select_for_update_skip_locked:
        return _fan_out(using, list(events_qs[:limit]))
    with transaction.atomic(using=using):
        locked = events_qs.select_for_update(
            skip_locked=True, of=("self",) if features.has_select_for_update_of else ())
        return _fan_out(using, list(locked[:limit]))


def _fan_out(using: str, events: list[Event]) -> FanOut:
    """Deliveries for ``events`` (read by the caller), and the events marked dispatched."""
    if not events:
        return FanOut(0, 0)
    matches = match_endpoints(events, subscriptions_for(events))
    now = timezone.now()
    deliveries = []
    for event in events:
        for endpoint_id in matches[event.id]:
            if event.error:
                deliveries.append(Delivery(
                    event_id=event.id, endpoint_id=endpoint_id, status=Status.FAILED,
                    created_at=now, last_error=f"payload_error: {event.error}"[:255],
                ))
            else:
                deliveries.append(Delivery(
                    event_id=event.id, endpoint_id=endpoint_id, next_attempt_at=now,
                    created_at=now,
                ))
    with transaction.atomic(using=using):
        Delivery.objects.using(using).bulk_create(deliveries, ignore_conflicts=True,
                                                  batch_size=1000)
        # Only events still undispatched: one that another run marked meanwhile is not
        # written again.
        Event.objects.using(using).filter(pk__in=[e.id for e in events],
                                          dispatched_at__isnull=True).update(dispatched_at=now)
    return FanOut(len(events), sum(1 for d in deliveries if d.status == Status.PENDING))


def subscriptions_for(events: Sequence[Event]) -> list[tuple[Any, str, Any]]:
    """``(endpoint_id, event_type, endpoint_owner_id)`` of every subscription of an active
    endpoint that may match one of ``events``: one query (types, ``"*"``, owners or site-wide).
    """
    types = {e.type for e in events}
    owners = {e.owner_id for e in events if e.owner_id is not None}
    subscriptions = Subscription.objects.filter(
        endpoint__is_active=True, event_type__in=types | {WILDCARD}
    ).filter(Q(endpoint__owner__isnull=True) | Q(endpoint__owner__in=owners))
    return list(subscriptions.values_list("endpoint_id", "event_type", "endpoint__owner_id"))


def match_endpoints(events: Iterable[Event],
                    subscriptions: Iterable[tuple[Any, str, Any]]) -> dict[Any, list[Any]]:
    """Which endpoints each event goes to: ``{event.id: [endpoint_id, ...]}`` (sorted, and
    an empty list for an event nobody receives). Pure: no query.

    ``subscriptions`` are ``(endpoint_id, event_type, endpoint_owner_id)`` of active endpoints
    (as :func:`subscriptions_for` returns them). An endpoint receives an event when it
    subscribes to its type or to ``"*"`` and is site-wide (no owner) or the event's owner's.
    """
    targets: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
    for endpoint_id, event_type, owner_id in subscriptions:
        targets[event_type].append((endpoint_id, owner_id))
    return {
        event.id: sorted({
            endpoint_id
            for endpoint_id, owner_id in targets[event.type] + targets[WILDCARD]
            if owner_id is None or owner_id == event.owner_id
        })
        for event in events
    }
