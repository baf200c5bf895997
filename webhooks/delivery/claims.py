"""Claims: which due deliveries one worker takes, within each endpoint's flow control.

A delivery is claimed by moving its ``next_attempt_at`` to the end of a lease (``CLAIM_TTL``)
and stamping it with the claim's token, so a worker that dies loses nothing: the lease ends and
the delivery is due again. Flow control (a pause, an open circuit, a concurrency cap, a rate
limit) is planned here, under the endpoints' row locks, as a :class:`FlowPlan`; what a claim may
not take yet is moved to when it may go.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Count, F
from django.utils import timezone

from webhooks.conf import webhooks_settings as conf
from webhooks.models import Delivery, Endpoint, Event

#: Seconds kept in hand when deciding whether one more attempt fits in the lease.
LEASE_MARGIN = 2.0
#: How far ahead a rate-limited endpoint's send slots are handed to one claim, in seconds.
RATE_WINDOW = 1.0
#: How long a delivery held back by a concurrency cap (or behind a circuit probe) waits
#: before it is looked at again, in seconds.
CAPACITY_WAIT = 1.0

# ``Endpoint.pause_reason`` values. Recording sets them (a 429, a 502 or 504, a circuit that
# opens); claims read them (an open circuit is half-open once its pause ends: one probe at a
# time).
CIRCUIT_OPEN = "circuit_open"
RATE_LIMITED = "rate_limited"
OVERLOADED = "overloaded"
#: The pauses a receiver asked for (a 429; a 502 or 504): a circuit that opens never shortens
#: them.
THROTTLED = frozenset({RATE_LIMITED, OVERLOADED})

Status = Delivery.Status


@dataclass
class Claim:
    """Deliveries one worker holds until ``deadline`` (a ``time.monotonic()`` value).

    ``not_before`` paces rate-limited endpoints: ``{delivery pk: time.time()}`` before which
    that delivery must not be sent (its slot in the endpoint's rate).
    """

    token: uuid.UUID
    deliveries: list[Delivery]
    deadline: float
    not_before: dict[Any, float] = field(default_factory=dict)
    #: The soonest time flow control moved a delivery to (``None``: it moved none).
    held_until: datetime | None = None


@dataclass
class _Candidate:
    pk: Any
    endpoint_id: Any
    rate_limit: int | None
    max_concurrency: int | None
    paused_until: datetime | None
    pause_reason: str


_CANDIDATE_FIELDS = ("pk", "endpoint_id", "endpoint__rate_limit", "endpoint__max_concurrency",
                     "endpoint__paused_until", "endpoint__pause_reason")
#: The delivery's own columns, read with the candidates: a claim that takes every row it
#: chose needs no second read of them.
_DELIVERY_FIELDS = tuple(f.attname for f in Delivery._meta.concrete_fields)


def _is_limited(c: _Candidate, now: datetime, default_cap: int | None) -> bool:
    """Does flow control apply to this candidate's endpoint right now?"""
    return bool(
        c.rate_limit or c.max_concurrency or default_cap
        or (c.paused_until is not None and c.paused_until > now)
        or c.pause_reason == CIRCUIT_OPEN
    )


@dataclass
class FlowPlan:
    """What flow control lets one claim take of the deliveries it applies to.

    Worked out while the endpoints' rows are held; the deliveries it holds back have already
    been moved to when they may go.
    """

    #: Primary keys of the deliveries the claim may take.
    chosen: list[Any] = field(default_factory=list)
    #: ``{delivery pk: time.time()}`` before which a rate-limited delivery must not be sent.
    not_before: dict[Any, float] = field(default_factory=dict)
    #: The times held-back deliveries were moved to (one per move that changed a row).
    held: list[datetime] = field(default_factory=list)

    @property
    def held_until(self) -> datetime | None:
        """The soonest time a held-back delivery is due again (``None``: none was moved)."""
        return min(self.held) if self.held else None


def claim(batch_size: int | None = None, *, exclude: Iterable[Any] = ()) -> Claim:
    """Take up to ``batch_size`` due deliveries for this worker, oldest first, within each
    endpoint's flow control (pause, circuit breaker, concurrency cap, rate limit).

    PostgreSQL (and any database with ``SKIP LOCKED``) locks the candidate rows so that
    concurrent workers pass over them; elsewhere (SQLite) every write repeats the due
    condition, a compare-and-set that a second worker's write finds already moved.

    Deliveries of endpoints without flow control cost no more than before: one read and one
    ``UPDATE``. For the others, the endpoint rows are locked (in primary-key order) while
    their budget is worked out, so the caps hold across every worker and process; what does
    not fit is moved to when it may go (``next_attempt_at``), so it never blocks the head of
    the queue. Moving a delivery this way is not an attempt. ``exclude``: endpoints whose
    deliveries not to take (this worker is still sending to them).
    """
    batch_size = batch_size or conf.BATCH_SIZE
    using = router.db_for_write(Delivery)
    connection = connections[using]
    token = uuid.uuid4()
    now = timezone.now()
    started = time.monotonic()
    lease_until = now + timedelta(seconds=conf.CLAIM_TTL)
    default_cap = conf.MAX_CONCURRENCY
    locking = connection.features.has_select_for_update_skip_locked
    due = Delivery.objects.using(using).due(now).order_by("next_attempt_at")
    exclude = list(exclude)
    if exclude:  # endpoints this worker is still sending to
        due = due.exclude(endpoint_id__in=exclude)
    # Rows still due: the compare-and-set condition of every write below.
    still_due = Delivery.objects.using(using).filter(status=Status.PENDING,
                                                    next_attempt_at__lte=now)
    with transaction.atomic(using=using) if locking else contextlib.nullcontext():
        if locking:
            due = due.select_for_update(
                skip_locked=True,
                of=("self",) if connection.features.has_select_for_update_of else ())
        rows = list(due.values_list(*_CANDIDATE_FIELDS, *_DELIVERY_FIELDS)[:batch_size])
        if not rows:
            return Claim(token, [], started)
        width = len(_CANDIDATE_FIELDS)
        candidates = [_Candidate(*row[:width]) for row in rows]
        limited = [c for c in candidates if _is_limited(c, now, default_cap)]
        free = [c.pk for c in candidates if not _is_limited(c, now, default_cap)]
        # SQLite: flow control is planned and taken under the database's write lock.
        with transaction.atomic(using=using) if limited and not locking \
                else contextlib.nullcontext():
            plan = (_plan_limited(using, limited, now, default_cap, still_due, locking)
                    if limited else FlowPlan())
            chosen = free + plan.chosen
            count = still_due.filter(pk__in=chosen).update(
                next_attempt_at=lease_until, claim_token=token) if chosen else 0
    if not count:
        return Claim(token, [], started, held_until=plan.held_until)
    if count == len(chosen):
        # Every row chosen was taken (locked, or still due for the compare-and-set): the rows
        # read with the candidates are the claim's, as the UPDATE left them.
        taken = set(chosen)
        deliveries = [_claimed_row(using, row[width:], lease_until, token)
                      for row in rows if row[0] in taken]
        deliveries.sort(key=lambda d: d.created_at)
    else:
        deliveries = _read_claimed(using, token, lease_until)
    _attach(using, deliveries)
    return Claim(token, deliveries, started + conf.CLAIM_TTL, plan.not_before, plan.held_until)


def _claimed_row(using: str, values: tuple[Any, ...], lease_until: datetime,
                 token: uuid.UUID) -> Delivery:
    delivery = Delivery.from_db(using, _DELIVERY_FIELDS, values)
    delivery.next_attempt_at, delivery.claim_token = lease_until, token
    return delivery


def _read_claimed(using: str, token: uuid.UUID, lease_until: datetime) -> list[Delivery]:
    """The deliveries this claim took, read again (some rows it chose went to another
    worker)."""
    return list(
        Delivery.objects.using(using)
        .filter(status=Status.PENDING, next_attempt_at=lease_until, claim_token=token)
        .order_by("next_attempt_at", "created_at")
    )


def _attach(using: str, deliveries: list[Delivery]) -> None:
    """Attach each claimed delivery's event and endpoint.

    Two queries rather than a join: a batch holds few distinct events and endpoints, so
    each event's payload is read once (not once per endpoint) and each endpoint row (with
    its encrypted secrets) once per batch, not once per delivery.
    """
    if not deliveries:
        return
    events = Event.objects.using(using).only("id", "type", "owner_id", "created_at",
                                             "payload").in_bulk({d.event_id for d in deliveries})
    endpoints = Endpoint.objects.using(using).in_bulk({d.endpoint_id for d in deliveries})
    for delivery in deliveries:
        # What ``select_related`` would have done: fill the relations' caches (a foreign
        # key's cache name is its field name).
        delivery._state.fields_cache["event"] = events[delivery.event_id]
        delivery._state.fields_cache["endpoint"] = endpoints[delivery.endpoint_id]


def _plan_limited(using: str, limited: list[_Candidate], now: datetime,
                  default_cap: int | None, still_due: Any, locking: bool) -> FlowPlan:
    """Which of ``limited`` this claim may take; the others are moved to when they may go.

    Runs in a transaction holding the endpoints' rows (PostgreSQL: ``FOR NO KEY UPDATE`` in
    primary-key order, which foreign-key inserts do not wait for; SQLite: the write lock),
    so two workers never both spend the same budget. ``still_due``: the due deliveries, the
    compare-and-set condition of every move.
    """
    endpoints = Endpoint.objects.using(using)
    endpoint_ids = sorted({c.endpoint_id for c in limited})
    state = _hold_endpoints(using, endpoint_ids, locking)
    busy = dict(
        Delivery.objects.using(using)
        .filter(endpoint_id__in=endpoint_ids, claim_token__isnull=False,
                next_attempt_at__gt=now)
        .values("endpoint_id").annotate(claims=Count("claim_token", distinct=True))
        .values_list("endpoint_id", "claims")
    )
    per_endpoint: dict[Any, list[Any]] = defaultdict(list)
    for c in limited:
        per_endpoint[c.endpoint_id].append(c.pk)
    plan = FlowPlan()
    moved: dict[datetime, list[Any]] = defaultdict(list)
    slots: dict[Any, datetime] = {}
    wait = now + timedelta(seconds=CAPACITY_WAIT)
    for endpoint_id, pks in per_endpoint.items():
        if endpoint_id not in state:  # deleted meanwhile: cascades take its deliveries
            continue
        _, rate, cap, paused_until, reason, slot_at = state[endpoint_id]
        if paused_until is not None and paused_until > now:
            moved[paused_until] += pks  # paused: a 429, a 502 or 504, an open circuit
            continue
        cap = cap or default_cap
        if reason == CIRCUIT_OPEN:
            cap = 1  # half-open: one probe at a time until one succeeds
            pks, rest = pks[:1], pks[1:]
            moved[now + timedelta(seconds=conf.TIMEOUT + LEASE_MARGIN)] += rest
        if cap is not None and busy.get(endpoint_id, 0) >= cap:
            moved[wait] += pks
            continue
        if not rate:
            plan.chosen += pks
            continue
        # Rate limit: the endpoint's send slots are 1/rate apart, and its row keeps the next
        # free one (a generic cell rate algorithm); a claim takes the slots of the next
        # RATE_WINDOW. The others come back around their turn, which is not reserved (a
        # worker that dies must not leave a hole in the rate).
        interval = timedelta(seconds=1 / rate)
        first = slot = max(slot_at or now, now)
        horizon = now + timedelta(seconds=RATE_WINDOW)
        taken = 0
        for pk in pks:
            if slot < horizon:
                plan.chosen.append(pk)
                plan.not_before[pk] = slot.timestamp()
                taken += 1
            else:  # grouped by whole seconds: one UPDATE per second, not per delivery
                ahead = math.ceil((slot - now).total_seconds())
                moved[now + timedelta(seconds=ahead)].append(pk)
            slot += interval
        slots[endpoint_id] = first + interval * taken
    for when, pks in moved.items():
        if pks and still_due.filter(pk__in=pks).update(next_attempt_at=when):
            plan.held.append(when)
    for endpoint_id, slot_at in slots.items():
        endpoints.filter(pk=endpoint_id).update(rate_slot_at=slot_at)
    return plan


def _hold_endpoints(using: str, endpoint_ids: list[Any], locking: bool,
                    ) -> dict[Any, tuple[Any, ...]]:
    """The endpoints' flow-control columns, ``{pk: (pk, rate_limit, max_concurrency,
    paused_until, pause_reason, rate_slot_at)}``, their rows held until the transaction ends
    (PostgreSQL: locked in primary-key order; SQLite: a no-op write takes the write lock)."""
    endpoints = Endpoint.objects.using(using)
    columns = ("pk", "rate_limit", "max_concurrency", "paused_until", "pause_reason",
               "rate_slot_at")
    if locking:
        no_key = connections[using].features.has_select_for_no_key_update
        return {row[0]: row for row in endpoints.select_for_update(no_key=no_key).filter(
            pk__in=endpoint_ids).order_by("pk").values_list(*columns)}
    endpoints.filter(pk__in=endpoint_ids).update(rate_slot_at=F("rate_slot_at"))
    return {row[0]: row for row in endpoints.filter(pk__in=endpoint_ids).values_list(*columns)}
