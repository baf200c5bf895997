"""Retention: prune finished deliveries with their attempts, then bare old events, and blank
old stored responses, a short batch at a time.

Every batch selects at most ``PRUNE_BATCH_SIZE`` primary keys along an index, then deletes (or
blanks) exactly those rows in its own short transaction, so no statement touches more rows
than a batch and no table stays locked. A run can be given a time budget: it stops between two
batches when the budget is spent, and the next run carries on (there is no state to resume:
what is left is simply still old).

Order: children first. A delivery goes with its attempts (attempts deleted first, a batch at a
time, in the delivery batch's transaction); an event goes only once no delivery of it is
left. Pending deliveries and events not yet fanned out are never touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from webhooks.conf import webhooks_settings as conf
from webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus, Event

#: Statuses a delivery can be pruned in: finished ones. ``pending`` never is.
PRUNABLE_STATUSES: tuple[str, ...] = (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED)

#: The kinds of rows a prune counts, in the order it handles them.
KINDS: tuple[str, ...] = (
    *(f"{status}_deliveries" for status in PRUNABLE_STATUSES), "attempts", "events", "responses",
)


def _cutoff(now: datetime, days: float | None) -> datetime | None:
    return None if days is None else now - timedelta(days=days)


@dataclass(frozen=True)
class Policy:
    """What to prune: everything created before these moments (``None``: keep forever)."""

    #: Finished deliveries (and their attempts), per status.
    deliveries: Mapping[str, datetime | None]
    #: Events, once no delivery of theirs is left.
    events: datetime | None
    #: Stored response bodies and headers of attempts (blanked, the attempt stays).
    responses: datetime | None

    @classmethod
    def from_settings(cls, now: datetime | None = None) -> Policy:
        """``RETENTION``, ``EVENT_RETENTION`` and ``RESPONSE_RETENTION``, counted back from now."""
        now = now or timezone.now()
        retention = conf.RETENTION
        return cls(
            deliveries={s: _cutoff(now, retention.get(s)) for s in PRUNABLE_STATUSES},
            events=_cutoff(now, conf.EVENT_RETENTION),
            responses=_cutoff(now, conf.RESPONSE_RETENTION),
        )

    @classmethod
    def older_than(cls, cutoff: datetime, now: datetime | None = None) -> Policy:
        """Everything finished before ``cutoff``, whatever the settings say; responses are
        blanked from ``cutoff`` or from ``RESPONSE_RETENTION``, whichever is more recent."""
        setting = cls.from_settings(now).responses
        return cls(
            deliveries=dict.fromkeys(PRUNABLE_STATUSES, cutoff),
            events=cutoff,
            responses=cutoff if setting is None else max(cutoff, setting),
        )

    @property
    def is_empty(self) -> bool:
        """Nothing is ever pruned under this policy."""
        return (self.events is None and self.responses is None
                and all(c is None for c in self.deliveries.values()))


@dataclass
class PruneResult:
    """Rows pruned (or, from :func:`estimate`, that would be) per kind of :data:`KINDS`."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    #: Statements that deleted or blanked rows.
    batches: int = 0
    #: ``False`` when the time budget ran out before the work did.
    complete: bool = True

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        c = self.counts
        deliveries = ", ".join(f"{c[f'{s}_deliveries']} {s}" for s in PRUNABLE_STATUSES)
        return (f"{sum(c[f'{s}_deliveries'] for s in PRUNABLE_STATUSES)} deliveries "
                f"({deliveries}), {c['attempts']} attempts, {c['events']} events; "
                f"{c['responses']} responses blanked")


# Querysets: each names the index it is served by.

def prunable_deliveries(policy: Policy, status: str, using: str | None = None) -> QuerySet[Any]:
    """Finished deliveries in ``status`` past their retention, oldest first: the index
    ``(status, created_at)``. One retried by hand since the cutoff is kept."""
    cutoff = policy.deliveries.get(status)
    if cutoff is None:
        return Delivery.objects.using(using).none()
    return Delivery.objects.using(using).filter(
        Q(last_attempt_at__isnull=True) | Q(last_attempt_at__lt=cutoff),
        status=status, created_at__lt=cutoff,
    ).order_by("created_at")


def stale_responses(policy: Policy, using: str | None = None) -> QuerySet[Any]:
    """Attempts past ``RESPONSE_RETENTION`` that still hold a response body or headers, oldest
    first: the index on ``created_at`` (blanked rows are read and skipped)."""
    if policy.responses is None:
        return DeliveryAttempt.objects.using(using).none()
    return DeliveryAttempt.objects.using(using).filter(
        created_at__lt=policy.responses,
    ).exclude(response_body="", response_headers={}).order_by("created_at")


# Counting (dry runs).

def _prunable_q(policy: Policy) -> Q | None:
    """Deliveries of any status that this policy prunes, as one condition."""
    q: Q | None = None
    for status, cutoff in policy.deliveries.items():
        if cutoff is None:
            continue
        part = Q(status=status, created_at__lt=cutoff) & (
            Q(last_attempt_at__isnull=True) | Q(last_attempt_at__lt=cutoff))
        q = part if q is None else q | part
    return q


def estimate(policy: Policy | None = None, using: str | None = None) -> PruneResult:
    """Count what :func:`prune` would do now, changing nothing (full scans: for dry runs)."""
    policy = policy or Policy.from_settings()
    using = using or router.db_for_write(Delivery)
    result = PruneResult()
    for status in PRUNABLE_STATUSES:
        result.counts[f"{status}_deliveries"] = prunable_deliveries(policy, status, using).count()
    prunable = _prunable_q(policy)
    doomed = (Delivery.objects.using(using).filter(prunable).values("pk")
              if prunable is not None else None)
    if doomed is not None:
        result.counts["attempts"] = DeliveryAttempt.objects.using(using).filter(
            delivery_id__in=doomed).count()
    if policy.events is not None:
        survivors = Delivery.objects.filter(event_id=OuterRef("pk"))
        if prunable is not None:
            survivors = survivors.exclude(prunable)
        result.counts["events"] = Event.objects.using(using).filter(
            ~Exists(survivors), created_at__lt=policy.events, dispatched_at__isnull=False,
        ).count()
    responses = stale_responses(policy, using)
    if doomed is not None:
        responses = responses.exclude(delivery_id__in=doomed)
    result.counts["responses"] = responses.count()
    return result


# Pruning.

@dataclass(frozen=True)
class Batch:
    """One batch done: rows pruned per kind, and the statements that did it."""

    counts: Mapping[str, int]
    statements: int


def _delete(queryset: QuerySet[Any], using: str) -> int:
    """``DELETE … WHERE <queryset's filter>`` as one statement: no collector, no signals (none
    of our models has receivers; children are deleted explicitly, first)."""
    return int(queryset._raw_delete(using))


def _delivery_batches(policy: Policy, status: str, using: str, size: int) -> Iterator[Batch]:
    """Delete prunable deliveries in ``status``: per batch, their attempts (at most ``size``
    per statement), then the deliveries, in one short transaction."""
    pending = prunable_deliveries(policy, status, using)
    connection = connections[using]
    lock = connection.features.has_select_for_update_skip_locked
    since: datetime | None = None
    while True:
        page = pending if since is None else pending.filter(created_at__gte=since)
        if lock:  # a hand retry of one of these waits for the batch (or is skipped by it)
            page = page.select_for_update(skip_locked=True)
        with transaction.atomic(using=using):
            rows = list(page.values_list("pk", "created_at")[:size])
            if not rows:
                return
            ids = [pk for pk, _ in rows]
            attempts = statements = 0
            while True:
                chunk = list(DeliveryAttempt.objects.using(using).filter(
                    delivery_id__in=ids).order_by().values_list("pk", flat=True)[:size])
                if chunk:
                    attempts += _delete(DeliveryAttempt.objects.filter(pk__in=chunk), using)
                    statements += 1
                if len(chunk) < size:
                    break
            # The status is asserted again: without row locks (SQLite serialises writers),
            # nothing can have changed, but say so in the statement itself.
            deliveries = _delete(Delivery.objects.filter(pk__in=ids, status=status), using)
        yield Batch({f"{status}_deliveries": deliveries, "attempts": attempts}, statements + 1)
        if len(rows) < size:
            return
        since = rows[-1][1]  # the rows before it that did not match are not read again


def _event_batches(policy: Policy, using: str, size: int) -> Iterator[Batch]:
    """Delete events past their retention that have no delivery left.

    Each batch reads the next ``size`` old events along the index ``(created_at, id)`` (a plain
    range scan, whatever the planner's statistics say right after a mass delete) and deletes
    those among them with no delivery (the ``(event, endpoint)`` key answers that). Events that
    still hold a delivery are read once per run.
    """
    if policy.events is None:
        return
    old = Event.objects.using(using).filter(
        created_at__lt=policy.events, dispatched_at__isnull=False,
    ).order_by("created_at", "pk")
    after: tuple[datetime, Any] | None = None
    while True:
        page = old
        if after is not None:
            moment, pk = after
            page = old.filter(Q(created_at__gt=moment) | Q(pk__gt=pk), created_at__gte=moment)
        rows = list(page.values_list("pk", "created_at")[:size])
        if not rows:
            return
        try:
            with transaction.atomic(using=using):
                events = _delete(Event.objects.filter(
                    ~Exists(Delivery.objects.filter(event_id=OuterRef("pk"))),
                    pk__in=[pk for pk, _ in rows],
                ), using)
        except IntegrityError:
            # A replay gave one of them a delivery meanwhile (its row went in between the
            # check and the delete): keep this batch; the next run looks again.
            events = 0
        yield Batch({"events": events}, 1)
        if len(rows) < size:
            return
        after = (rows[-1][1], rows[-1][0])


def _response_batches(policy: Policy, using: str, size: int) -> Iterator[Batch]:
    """Blank the stored responses of attempts past ``RESPONSE_RETENTION``."""
    stale = stale_responses(policy, using)
    since: datetime | None = None
    while True:
        page = stale if since is None else stale.filter(created_at__gte=since)
        rows = list(page.values_list("pk", "created_at")[:size])
        if not rows:
            return
        blanked = DeliveryAttempt.objects.using(using).filter(
            pk__in=[pk for pk, _ in rows]).update(response_body="", response_headers={})
        yield Batch({"responses": blanked}, 1)
        if len(rows) < size:
            return
        since = rows[-1][1]


def prune(
    policy: Policy | None = None,
    *,
    batch_size: int | None = None,
    time_limit: float | None = None,
    using: str | None = None,
    progress: Callable[[Batch], Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> PruneResult:
    """Prune what ``policy`` (default: the settings) says, ``batch_size`` rows at a time
    (default ``PRUNE_BATCH_SIZE``).

    With ``time_limit`` (seconds), no batch starts once it is spent and the result says
    ``complete=False``: the next run carries on. ``progress`` is called after every batch.
    """
    policy = policy or Policy.from_settings()
    using = using or router.db_for_write(Delivery)
    size = batch_size or conf.PRUNE_BATCH_SIZE
    deadline = None if time_limit is None else clock() + time_limit
    batches: Iterator[Batch] = chain(
        *(_delivery_batches(policy, status, using, size) for status in PRUNABLE_STATUSES),
        _event_batches(policy, using, size),
        _response_batches(policy, using, size),
    )
    result = PruneResult()
    while True:
        if deadline is not None and clock() >= deadline:
            result.complete = False
            break
        batch = next(batches, None)
        if batch is None:
            break
        for kind, count in batch.counts.items():
            result.counts[kind] += count
        result.batches += batch.statements
        if progress is not None:
            progress(batch)
    return result
