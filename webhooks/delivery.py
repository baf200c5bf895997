"""Fan-out, claims, sending, recording and retries: everything between an event and a receiver.

Every function here is driven by a task (``webhooks.tasks``) or by a management command; none
runs inside a user's request. The database is the source of truth: a delivery is claimed by
moving its ``next_attempt_at`` to the end of a lease, so a worker that dies loses nothing.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import logging
import math
import os
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Count, F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from webhooks import http, signing, ssrf
from webhooks.conf import webhooks_settings as conf
from webhooks.events.payloads import restrict_payload
from webhooks.models import WILDCARD, Delivery, DeliveryAttempt, Endpoint, Event, Subscription
from webhooks.signals import (
    delivery_attempted,
    delivery_failed,
    delivery_succeeded,
    endpoint_disabled,
)
from webhooks.validators import is_sendable_header

logger = logging.getLogger("webhooks")

#: Events fanned out per query round.
FAN_OUT_CHUNK = 1000
#: Seconds kept in hand when deciding whether one more attempt fits in the lease.
LEASE_MARGIN = 2.0

Status = Delivery.Status


# --- fan-out ---------------------------------------------------------------------------------


def fan_out(event_ids: Iterable[str] | None = None, *, created_before: datetime | None = None,
            limit: int = FAN_OUT_CHUNK) -> int:
    """Create one delivery per (event, matching endpoint) for undispatched events.

    Idempotent: the unique (event, endpoint) constraint absorbs a second run. Matching: the
    endpoint is active, subscribes to the type or to ``"*"``, and is site-wide or belongs to
    the event's owner. Returns how many events were dispatched.
    """
    events_qs = Event.objects.undispatched().only("id", "type", "owner_id", "error")
    if event_ids is not None:
        events_qs = events_qs.filter(pk__in=list(event_ids))
    if created_before is not None:
        events_qs = events_qs.filter(created_at__lt=created_before)
    events = list(events_qs.order_by("created_at")[:limit])
    if not events:
        return 0
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
    using = router.db_for_write(Delivery)
    with transaction.atomic(using=using):
        Delivery.objects.bulk_create(deliveries, ignore_conflicts=True, batch_size=1000)
        Event.objects.filter(pk__in=[e.id for e in events]).update(dispatched_at=now)
    return len(events)


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


# --- claims ---------------------------------------------------------------------------------

#: How far ahead a rate-limited endpoint's send slots are handed to one claim, in seconds.
RATE_WINDOW = 1.0
#: How long a delivery held back by a concurrency cap (or behind a circuit probe) waits
#: before it is looked at again, in seconds.
CAPACITY_WAIT = 1.0

CIRCUIT_OPEN = "circuit_open"
RATE_LIMITED = "rate_limited"


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


def _is_limited(c: _Candidate, now: datetime, default_cap: int | None) -> bool:
    """Does flow control apply to this candidate's endpoint right now?"""
    return bool(
        c.rate_limit or c.max_concurrency or default_cap
        or (c.paused_until is not None and c.paused_until > now)
        or c.pause_reason == CIRCUIT_OPEN
    )


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
    not_before: dict[Any, float] = {}
    held: list[datetime] = []
    with transaction.atomic(using=using) if locking else contextlib.nullcontext():
        if locking:
            due = due.select_for_update(
                skip_locked=True,
                of=("self",) if connection.features.has_select_for_update_of else ())
        candidates = [_Candidate(*row) for row in
                      due.values_list(*_CANDIDATE_FIELDS)[:batch_size]]
        if not candidates:
            return Claim(token, [], started)
        limited = [c for c in candidates if _is_limited(c, now, default_cap)]
        chosen = [c.pk for c in candidates if not _is_limited(c, now, default_cap)]
        # SQLite: flow control is planned and taken under the database's write lock.
        with transaction.atomic(using=using) if limited and not locking \
                else contextlib.nullcontext():
            if limited:
                chosen += _plan_limited(using, limited, now, default_cap, not_before,
                                        still_due, locking, held)
            count = still_due.filter(pk__in=chosen).update(
                next_attempt_at=lease_until, claim_token=token) if chosen else 0
    held_until = min(held) if held else None
    if not count:
        return Claim(token, [], started, held_until=held_until)
    deliveries = _load_claimed(using, token, lease_until)
    return Claim(token, deliveries, started + conf.CLAIM_TTL, not_before, held_until)


def _load_claimed(using: str, token: uuid.UUID, lease_until: datetime) -> list[Delivery]:
    """The claimed deliveries, each with its event and endpoint attached.

    Three queries rather than one join: a batch holds few distinct events and endpoints, so
    each event's payload is read once (not once per endpoint) and each endpoint row (with
    its encrypted secrets) once per batch, not once per delivery.
    """
    deliveries = list(
        Delivery.objects.using(using)
        .filter(status=Status.PENDING, next_attempt_at=lease_until, claim_token=token)
        .order_by("next_attempt_at", "created_at")
    )
    if not deliveries:
        return deliveries
    events = Event.objects.using(using).only("id", "type", "owner_id", "created_at",
                                             "payload").in_bulk({d.event_id for d in deliveries})
    endpoints = Endpoint.objects.using(using).in_bulk({d.endpoint_id for d in deliveries})
    for delivery in deliveries:
        # What ``select_related`` would have done: fill the relations' caches (a foreign
        # key's cache name is its field name).
        delivery._state.fields_cache["event"] = events[delivery.event_id]
        delivery._state.fields_cache["endpoint"] = endpoints[delivery.endpoint_id]
    return deliveries


def _plan_limited(using: str, limited: list[_Candidate], now: datetime,
                  default_cap: int | None, not_before: dict[Any, float],
                  still_due: Any, locking: bool, held: list[datetime]) -> list[Any]:
    """Which of ``limited`` this claim may take; the others are moved to when they may go.

    Runs in a transaction holding the endpoints' rows (PostgreSQL: ``FOR NO KEY UPDATE`` in
    primary-key order, which foreign-key inserts do not wait for; SQLite: the write lock),
    so two workers never both spend the same budget.
    """
    endpoints = Endpoint.objects.using(using)
    endpoint_ids = sorted({c.endpoint_id for c in limited})
    if locking:
        no_key = connections[using].features.has_select_for_no_key_update
        state = {row[0]: row for row in endpoints.select_for_update(no_key=no_key).filter(
            pk__in=endpoint_ids).order_by("pk").values_list(
                "pk", "rate_limit", "max_concurrency", "paused_until", "pause_reason",
                "rate_slot_at")}
    else:
        endpoints.filter(pk__in=endpoint_ids).update(rate_slot_at=F("rate_slot_at"))
        state = {row[0]: row for row in endpoints.filter(pk__in=endpoint_ids).values_list(
            "pk", "rate_limit", "max_concurrency", "paused_until", "pause_reason",
            "rate_slot_at")}
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
    chosen: list[Any] = []
    moved: dict[datetime, list[Any]] = defaultdict(list)
    slots: dict[Any, datetime] = {}
    wait = now + timedelta(seconds=CAPACITY_WAIT)
    for endpoint_id, pks in per_endpoint.items():
        if endpoint_id not in state:  # deleted meanwhile: cascades take its deliveries
            continue
        _, rate, cap, paused_until, reason, slot_at = state[endpoint_id]
        if paused_until is not None and paused_until > now:
            moved[paused_until] += pks  # paused: a 429's Retry-After, or an open circuit
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
            chosen += pks
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
                chosen.append(pk)
                not_before[pk] = slot.timestamp()
                taken += 1
            else:  # grouped by whole seconds: one UPDATE per second, not per delivery
                ahead = math.ceil((slot - now).total_seconds())
                moved[now + timedelta(seconds=ahead)].append(pk)
            slot += interval
        slots[endpoint_id] = first + interval * taken
    for when, pks in moved.items():
        if pks and still_due.filter(pk__in=pks).update(next_attempt_at=when):
            held.append(when)
    for endpoint_id, slot_at in slots.items():
        endpoints.filter(pk=endpoint_id).update(rate_slot_at=slot_at)
    return chosen


# --- sending ---------------------------------------------------------------------------------


def _payload_restrictions(deliveries: list[Delivery]) -> dict[tuple[Any, str], tuple[str, ...]]:
    """``{(endpoint id, event type or "*"): fields}`` of the batch's subscriptions, in one
    query: a subscription may restrict the payload to some fields (empty: all of them)."""
    if not deliveries:
        return {}
    endpoints = {d.endpoint_id for d in deliveries}
    types = {d.event.type for d in deliveries} | {WILDCARD}
    rows = Subscription.objects.filter(endpoint_id__in=endpoints, event_type__in=types)
    return {(endpoint_id, event_type): tuple(fields or ())
            for endpoint_id, event_type, fields in rows.values_list(
                "endpoint_id", "event_type", "fields")}


def build_headers(endpoint: Endpoint, event: Event, body: bytes, timestamp: int,
                  ) -> dict[str, str]:
    """Our headers (signed for every valid secret) plus the endpoint's own, which never win."""
    headers: dict[str, str] = {}
    custom: dict[str, Any] = endpoint.headers if isinstance(endpoint.headers, dict) else {}
    for name, value in custom.items():
        # Validated when saved; anything that slipped past (a queryset update) is left out.
        if is_sendable_header(name, value):
            headers[name] = value
    msg_id = event.public_id
    headers.update({
        "Content-Type": "application/json",
        "User-Agent": http.USER_AGENT,
        "Accept-Encoding": "identity",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(
            endpoint.signing_secrets(), msg_id, timestamp, body
        ),
    })
    return headers


def _logged_headers(endpoint: Endpoint, headers: dict[str, str]) -> dict[str, str]:
    """Headers as stored on the attempt: custom header values (often tokens) are masked."""
    custom = {str(name).lower() for name in (endpoint.headers or {})}
    return {k: ("••••••" if k.lower() in custom else v) for k, v in headers.items()}


@dataclass
class Outcome:
    delivery: Delivery
    attempt: DeliveryAttempt | None
    succeeded: bool
    terminal: bool


def retry_delay(attempts_made: int, status_code: int | None, retry_after: str | None,
                *, rng: random.Random | None = None) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` attempts, or ``None`` when the
    schedule is exhausted.

    The scheduled delay is stretched by up to ``RETRY_JITTER``. A ``Retry-After`` on 429/503
    is honoured within bounds: never sooner than the schedule, never later than twice it.
    """
    schedule: Sequence[float] = conf.RETRY_SCHEDULE
    if attempts_made > len(schedule):
        return None
    scheduled = float(schedule[attempts_made - 1])
    delay = scheduled * (1 + (rng or random).uniform(0, conf.RETRY_JITTER))
    if status_code in (429, 503) and retry_after:
        asked = parse_retry_after(retry_after)
        if asked is not None:
            delay = min(max(delay, asked), 2 * scheduled)
    return delay


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value (delta-seconds or an HTTP date); ``None`` if bad."""
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), 10**9))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


#: Failures that say the endpoint cannot be reached at all right now: the rest of its batch
#: is handed back instead of waiting out the same failure once per delivery.
UNREACHABLE = frozenset({"connect_timeout", "read_timeout", "timeout", "connection_refused",
                         "connection_reset", "connection_error", "dns_error", "tls_error"})


@dataclass
class _Sent:
    """What sending one endpoint's share of a batch produced (built off the main thread)."""

    outcomes: list[Outcome] = field(default_factory=list)
    #: ``(delivery pk, when it is due again)`` for deliveries handed back unattempted.
    handed_back: list[tuple[Any, datetime]] = field(default_factory=list)
    #: The endpoint answered 410 Gone.
    gone: bool = False
    #: Paused until then by a 429 (its ``Retry-After``, bounded).
    throttled_until: datetime | None = None


@dataclass
class _Options:
    """Settings read once per batch, on the worker's main thread."""

    timeout: float
    connect_timeout: float
    max_bytes: int
    stored_bytes: int
    breaker: int | None
    max_pause: float
    client: dict[str, Any]

    @classmethod
    def current(cls) -> _Options:
        return cls(
            timeout=conf.TIMEOUT, connect_timeout=conf.CONNECT_TIMEOUT,
            max_bytes=conf.MAX_RESPONSE_BYTES, stored_bytes=conf.STORED_RESPONSE_BYTES,
            breaker=conf.CIRCUIT_BREAKER_THRESHOLD, max_pause=conf.MAX_THROTTLE_PAUSE,
            client={
                "read_timeout": conf.READ_TIMEOUT,
                "allowed_networks": ssrf.parse_networks(conf.ALLOWED_NETWORKS),
                "require_https": conf.REQUIRE_HTTPS,
                "ca_bundle": conf.CA_BUNDLE,
            },
        )


_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] | None = None
_pool_lock = threading.Lock()


def _sender_pool(size: int) -> ThreadPoolExecutor:
    """The process's sending threads (a forked worker makes its own)."""
    global _pool, _pool_key
    key = (os.getpid(), size)
    with _pool_lock:
        if _pool is None or _pool_key != key:
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="webhooks-send")
            _pool_key = key
        return _pool


@dataclass(eq=False)
class _Share:
    """One endpoint's deliveries of a claim, being sent on a thread (or already sent)."""

    claim: Claim
    endpoint_id: Any
    future: Future[_Sent]


def _start(claim_: Claim) -> list[_Share]:
    """Start sending a claim: one share per endpoint, each on a sending thread."""
    restrictions = _payload_restrictions(claim_.deliveries)
    options = _Options.current()
    groups: dict[Any, list[Delivery]] = defaultdict(list)
    for delivery in claim_.deliveries:
        groups[delivery.endpoint_id].append(delivery)
    pool = _sender_pool(conf.SEND_CONCURRENCY)
    return [_Share(claim_, endpoint_id,
                   pool.submit(_send_endpoint, share, claim_, restrictions, options))
            for endpoint_id, share in groups.items()]


def _finish_shares(shares: list[_Share]) -> list[Outcome]:
    """Record shares whose sending is over (all of one claim), in one transaction."""
    results = [(share.endpoint_id, share.future.result()) for share in shares]
    outcomes = [o for _, r in results for o in r.outcomes]
    _record(shares[0].claim, outcomes,
            handed_back=[item for _, r in results for item in r.handed_back],
            gone={endpoint_id for endpoint_id, r in results if r.gone},
            throttled={endpoint_id: r.throttled_until for endpoint_id, r in results
                       if r.throttled_until is not None})
    return outcomes


def _finish_done(shares: list[_Share]) -> list[_Share]:
    """Record the shares that are done (grouped by claim); return those still sending."""
    done: dict[int, list[_Share]] = defaultdict(list)
    running = []
    for share in shares:
        if share.future.done():
            done[id(share.claim)].append(share)
        else:
            running.append(share)
    for group in done.values():
        _finish_shares(group)
    return running


def deliver(claim_: Claim) -> list[Outcome]:
    """Send every delivery of a claim, then record all outcomes in one transaction.

    Each endpoint's deliveries go out in order on one thread, and different endpoints on
    different threads (``SEND_CONCURRENCY``), so a slow or failing endpoint never holds up
    the others. An endpoint that cannot be reached, answers 429, or fails
    ``CIRCUIT_BREAKER_THRESHOLD`` times in a row gets the rest of its share handed back
    unattempted.
    """
    if not claim_.deliveries:
        return []
    shares = _start(claim_)
    futures_wait([share.future for share in shares])
    return _finish_shares(shares)


def _send_endpoint(share: list[Delivery], claim_: Claim,
                   restrictions: dict[tuple[Any, str], tuple[str, ...]],
                   options: _Options) -> _Sent:
    """Send one endpoint's deliveries in order; never raises (what was not sent is handed
    back, due at once)."""
    sent = _Sent()
    done = 0
    try:
        failures_in_a_row = 0
        for delivery in share:
            if sent.gone or not delivery.endpoint.is_active:
                delivery.last_error = "endpoint_disabled: the endpoint is disabled"
                sent.outcomes.append(_finish(delivery, None, succeeded=False, terminal=True))
                done += 1
                continue
            wait = claim_.not_before.get(delivery.pk, 0.0) - time.time()
            if claim_.deadline - time.monotonic() - max(wait, 0.0) \
                    < options.timeout + LEASE_MARGIN:
                break  # no time left in the lease for a full attempt
            if wait > 0:
                time.sleep(wait)  # this endpoint's rate limit: wait for the delivery's slot
            outcome, result = _attempt(delivery, restrictions, options)
            sent.outcomes.append(outcome)
            done += 1
            if outcome.succeeded:
                failures_in_a_row = 0
                continue
            failures_in_a_row += 1
            if result.status_code == 410:
                sent.gone = True
            elif result.status_code == 429:
                sent.throttled_until = timezone.now() + timedelta(
                    seconds=_throttle_pause(result.headers.get("Retry-After"), options))
                break
            elif result.error_class in UNREACHABLE or (
                    options.breaker is not None and failures_in_a_row >= options.breaker):
                break
    except Exception:  # a bug must not lose the batch: what was not sent goes back
        logger.exception("Sending to endpoint %s failed", share[0].endpoint_id)
    again = sent.throttled_until or timezone.now()
    sent.handed_back = [(d.pk, again) for d in share[done:]]
    return sent


def _throttle_pause(retry_after: str | None, options: _Options) -> float:
    """Seconds a 429 pauses its endpoint: its ``Retry-After`` if sensible, else the first
    retry delay; at most ``MAX_THROTTLE_PAUSE``."""
    asked = parse_retry_after(retry_after) if retry_after else None
    schedule = conf.RETRY_SCHEDULE
    fallback = float(schedule[0]) if schedule else 5.0
    return min(max(asked if asked is not None else fallback, 1.0), options.max_pause)


def _attempt(delivery: Delivery, restrictions: dict[tuple[Any, str], tuple[str, ...]],
             options: _Options) -> tuple[Outcome, http.HttpResult]:
    """One HTTP attempt of one delivery, and what it means for the delivery."""
    endpoint, event = delivery.endpoint, delivery.event
    allowed = restrictions.get((delivery.endpoint_id, event.type))
    if allowed is None:
        allowed = restrictions.get((delivery.endpoint_id, WILDCARD), ())
    payload = restrict_payload(event.payload, allowed) if allowed else event.payload
    body = payload.encode()
    timestamp = int(time.time())
    headers = build_headers(endpoint, event, body, timestamp)
    started_at = timezone.now()
    result = http.post(endpoint.url, body, headers, timeout=options.timeout,
                       connect_timeout=options.connect_timeout,
                       max_response_bytes=options.max_bytes, **options.client)
    delivery.attempts += 1
    attempt = DeliveryAttempt(
        delivery=delivery,
        endpoint_id=delivery.endpoint_id,
        number=delivery.attempts,
        created_at=started_at,
        url=endpoint.url[:2048],
        request_headers=_logged_headers(endpoint, headers),
        status_code=result.status_code,
        response_headers={storable(k): storable(v) for k, v in result.headers.items()},
        response_body=storable(result.body[:options.stored_bytes]),
        duration=round(result.duration, 6),
        error_class=result.error_class,
        error=storable(result.error),
    )
    if result.ok:
        return _finish(delivery, attempt, succeeded=True, terminal=True), result
    if not attempt.error_class:
        attempt.error_class = status_error_class(result.status_code)
        attempt.error = f"HTTP {result.status_code}"
    delivery.last_error = f"{attempt.error_class}: {attempt.error}"[:255]
    if result.status_code == 410 or not result.retryable:
        # 410: the receiver is gone for good. Not retryable: refused by policy (SSRF guard).
        return _finish(delivery, attempt, succeeded=False, terminal=True), result
    delay = retry_delay(delivery.attempts, result.status_code,
                        result.headers.get("Retry-After"))
    if delay is None:
        return _finish(delivery, attempt, succeeded=False, terminal=True), result
    delivery.next_attempt_at = timezone.now() + timedelta(seconds=delay)
    return _finish(delivery, attempt, succeeded=False, terminal=False), result


def status_error_class(status_code: int | None) -> str:
    """The attempt's error class for a non-2xx answer."""
    if status_code == 410:
        return "gone"
    if status_code == 429:
        return "rate_limited"
    if status_code is not None and 300 <= status_code < 400:
        return "redirect"
    return "http_status"


def storable(value: str | bytes) -> str:
    """Text from a receiver, safe for any database: UTF-8 with errors replaced, and no NUL
    (which PostgreSQL text and JSON columns refuse)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value.replace("\x00", "\ufffd")


def _finish(delivery: Delivery, attempt: DeliveryAttempt | None, *, succeeded: bool,
            terminal: bool) -> Outcome:
    if attempt is not None:
        delivery.last_attempt_at = attempt.created_at
        delivery.last_status_code = attempt.status_code
    if succeeded:
        delivery.status = Status.SUCCEEDED
        delivery.last_error = ""
    elif terminal:
        delivery.status = Status.FAILED
    if terminal:
        delivery.next_attempt_at = None
    delivery.claim_token = None
    return Outcome(delivery, attempt, succeeded, terminal)


def _record(claim_: Claim, outcomes: list[Outcome], *,
            handed_back: Sequence[tuple[Any, datetime]] = (), gone: Iterable[Any] = (),
            throttled: dict[Any, datetime] | None = None) -> None:
    using = router.db_for_write(Delivery)
    now = timezone.now()
    disabled: list[tuple[Endpoint, str]] = []
    with transaction.atomic(using=using):
        attempts = [o.attempt for o in outcomes if o.attempt is not None]
        if attempts:
            insert_attempts(using, attempts)
        _save_deliveries(using, claim_.token, outcomes)
        again: dict[datetime, list[Any]] = defaultdict(list)
        for pk, when in handed_back:
            again[when].append(pk)
        for when, pks in again.items():
            Delivery.objects.using(using).filter(pk__in=pks, claim_token=claim_.token).update(
                next_attempt_at=when, claim_token=None)
        touched = sorted({o.delivery.endpoint_id for o in outcomes if o.attempt is not None}
                         | set(throttled or ()))
        if touched and connections[using].features.has_select_for_no_key_update:
            # Endpoint rows in primary-key order, as claims take them: no deadlock.
            list(Endpoint.objects.using(using).select_for_update(no_key=True)
                 .filter(pk__in=touched).order_by("pk").values_list("pk", flat=True))
        _update_health(using, outcomes, now)
        _update_pauses(using, outcomes, throttled or {}, now)
        for endpoint_id in gone:
            disabled += _disable(using, endpoint_id, "The endpoint answered 410 Gone.", now)
        disabled += _auto_disable(using, outcomes, now)
    _send_signals(outcomes, disabled)


def _update_pauses(using: str, outcomes: list[Outcome], throttled: dict[Any, datetime],
                   now: datetime) -> None:
    """Pause endpoints that answered 429 or whose circuit opens; close circuits that
    recovered (a probe succeeded)."""
    endpoints = Endpoint.objects.using(using)
    for endpoint_id, until in throttled.items():
        endpoints.filter(pk=endpoint_id).filter(
            Q(paused_until__isnull=True) | Q(paused_until__lt=until)
        ).update(paused_until=until, pause_reason=RATE_LIMITED)
    recovered = {o.delivery.endpoint_id for o in outcomes
                 if o.succeeded and o.delivery.endpoint.pause_reason == CIRCUIT_OPEN}
    if recovered:
        endpoints.filter(pk__in=recovered, pause_reason=CIRCUIT_OPEN).update(
            paused_until=None, pause_reason="")
    threshold = conf.CIRCUIT_BREAKER_THRESHOLD
    failing = {o.delivery.endpoint_id for o in outcomes if o.attempt and not o.succeeded}
    if threshold is None or not failing:
        return
    base, longest = conf.CIRCUIT_BREAKER_COOLDOWN, conf.CIRCUIT_BREAKER_MAX_COOLDOWN
    for endpoint_id, since, reason, paused_until in endpoints.filter(
            pk__in=failing, consecutive_failures__gte=threshold, is_active=True,
    ).values_list("pk", "failing_since", "pause_reason", "paused_until"):
        # The longer it has been failing, the longer the pause (about doubling each time).
        failing_for = (now - since).total_seconds() if since else 0.0
        until = now + timedelta(seconds=min(longest, max(base, failing_for)))
        if reason == RATE_LIMITED and paused_until is not None and paused_until > until:
            continue
        endpoints.filter(pk=endpoint_id).update(paused_until=until, pause_reason=CIRCUIT_OPEN)
        logger.warning("Endpoint %s failed %s+ times in a row: paused until %s",
                       endpoint_id, threshold, until.isoformat())


def insert_attempts(using: str, attempts: Sequence[DeliveryAttempt]) -> None:
    """Insert attempt rows with one ``executemany``: what ``bulk_create`` does, without its
    per-field machinery, which cost over 100 µs per attempt (a third of a worker's CPU on the
    main thread). Values are adapted as the fields would: UUIDs and date-times by the
    backend's adapters, JSON by the field itself."""
    connection = connections[using]
    fields = DeliveryAttempt._meta.concrete_fields
    native_uuid = connection.features.has_native_uuid_field
    adapt_datetime = connection.ops.adapt_datetimefield_value
    converters: list[Any] = []
    for f in fields:
        kind = f.get_internal_type()
        if kind in ("UUIDField", "ForeignKey"):
            converters.append(None if native_uuid else _uuid_hex)
        elif kind == "DateTimeField":
            converters.append(adapt_datetime)
        elif kind == "JSONField":
            converters.append(functools.partial(_json_prep, f, connection))
        else:
            converters.append(None)
    quote = connection.ops.quote_name
    sql = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608 - quoted names only
        quote(DeliveryAttempt._meta.db_table),
        ", ".join(quote(str(f.column)) for f in fields), ", ".join(["%s"] * len(fields)))
    attnames = [f.attname for f in fields]
    rows = []
    for attempt in attempts:
        rows.append([
            value if convert is None or value is None else convert(value)
            for value, convert in zip(
                [getattr(attempt, name) for name in attnames], converters, strict=True)
        ])
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
    for attempt in attempts:
        attempt._state.adding = False
        attempt._state.db = using


def _uuid_hex(value: Any) -> str:
    return value.hex if isinstance(value, uuid.UUID) else uuid.UUID(str(value)).hex


def _json_prep(field: Any, connection: Any, value: Any) -> Any:
    return field.get_db_prep_save(value, connection)


def _save_deliveries(using: str, token: uuid.UUID, outcomes: list[Outcome]) -> None:
    """Write the new delivery states; only rows still held by this claim change.

    Successes, the common case, share one ``UPDATE`` per status code; the others, whose next
    attempt times differ, go through ``bulk_update``.
    """
    held = Delivery.objects.using(using).filter(claim_token=token)
    successes: dict[int | None, list[Outcome]] = defaultdict(list)
    others = []
    for outcome in outcomes:
        if outcome.succeeded and outcome.attempt is not None:
            successes[outcome.attempt.status_code].append(outcome)
        else:
            others.append(outcome.delivery)
    for status_code, group in successes.items():
        held.filter(pk__in=[o.delivery.pk for o in group]).update(
            status=Status.SUCCEEDED, attempts=F("attempts") + 1, next_attempt_at=None,
            claim_token=None, last_attempt_at=max(o.attempt.created_at for o in group
                                                  if o.attempt is not None),
            last_status_code=status_code, last_error="",
        )
    if others:
        held.bulk_update(others, ["status", "attempts", "next_attempt_at", "claim_token",
                                  "last_attempt_at", "last_status_code", "last_error"],
                         batch_size=500)


def _update_health(using: str, outcomes: list[Outcome], now: datetime) -> None:
    """Per endpoint: last success, consecutive failures and since when it has been failing."""
    per_endpoint: dict[Any, list[bool]] = defaultdict(list)
    for outcome in outcomes:
        if outcome.attempt is not None:
            per_endpoint[outcome.delivery.endpoint_id].append(outcome.succeeded)
    groups: dict[tuple[bool, int], list[Any]] = defaultdict(list)
    for endpoint_id, results in per_endpoint.items():
        if True in results:
            last_ok = len(results) - 1 - results[::-1].index(True)
            groups[(True, len(results) - 1 - last_ok)].append(endpoint_id)
        else:
            groups[(False, len(results))].append(endpoint_id)
    endpoints = Endpoint.objects.using(using)
    for (had_success, failures), endpoint_ids in groups.items():
        if had_success:
            endpoints.filter(pk__in=endpoint_ids).update(
                last_success_at=now, consecutive_failures=failures,
                failing_since=now if failures else None,
                **({"last_failure_at": now} if failures else {}),
            )
        else:
            endpoints.filter(pk__in=endpoint_ids).update(
                consecutive_failures=F("consecutive_failures") + failures,
                failing_since=Coalesce("failing_since", Value(now)),
                last_failure_at=now,
            )


def _auto_disable(using: str, outcomes: list[Outcome], now: datetime,
                  ) -> list[tuple[Endpoint, str]]:
    failed = {o.delivery.endpoint_id for o in outcomes if o.attempt and not o.succeeded}
    if not failed:
        return []
    after = timedelta(seconds=conf.DISABLE_AFTER)
    doomed = Endpoint.objects.using(using).filter(
        pk__in=failed, is_active=True,
        consecutive_failures__gte=conf.DISABLE_AFTER_FAILURES,
        failing_since__lte=now - after,
    ).values_list("pk", flat=True)
    reason = (f"Every delivery failed for {_human(after)} "
              f"({conf.DISABLE_AFTER_FAILURES}+ attempts in a row).")
    result: list[tuple[Endpoint, str]] = []
    for endpoint_id in list(doomed):
        result += _disable(using, endpoint_id, reason, now)
    return result


def _disable(using: str, endpoint_id: Any, reason: str, now: datetime,
             ) -> list[tuple[Endpoint, str]]:
    changed = Endpoint.objects.using(using).filter(pk=endpoint_id, is_active=True).update(
        is_active=False, disabled_reason=reason[:255], disabled_at=now
    )
    if not changed:
        return []
    logger.warning("Endpoint %s disabled: %s", endpoint_id, reason)
    return [(Endpoint.objects.using(using).get(pk=endpoint_id), reason)]


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day(s)"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hour(s)"
    return f"{seconds} seconds"


def _log(outcome: Outcome) -> None:
    """One structured record per attempt on the ``webhooks`` logger (fields in ``extra``)."""
    delivery, attempt = outcome.delivery, outcome.attempt
    state = ("succeeded" if outcome.succeeded else "failed" if outcome.terminal
             else "retrying")
    fields = {
        "webhook_event_id": delivery.event.public_id,
        "webhook_event_type": delivery.event.type,
        "webhook_delivery_id": delivery.public_id,
        "webhook_endpoint_id": str(delivery.endpoint_id),
        "webhook_attempt": attempt.number if attempt else None,
        "webhook_status": state,
        "webhook_status_code": attempt.status_code if attempt else None,
        "webhook_error_class": attempt.error_class if attempt else "",
        "webhook_duration_ms": round(attempt.duration * 1000, 1) if attempt else None,
    }
    level = logging.INFO if outcome.succeeded else logging.WARNING
    if logger.isEnabledFor(level):
        logger.log(level, "webhook %(webhook_event_id)s to endpoint %(webhook_endpoint_id)s "
                   "attempt %(webhook_attempt)s: %(webhook_status)s (%(webhook_status_code)s "
                   "%(webhook_error_class)s) in %(webhook_duration_ms)s ms", fields,
                   extra=fields)


def _send_signals(outcomes: list[Outcome], disabled: list[tuple[Endpoint, str]]) -> None:
    for outcome in outcomes:
        _log(outcome)
        if outcome.attempt is not None:
            _log_receiver_errors(delivery_attempted.send_robust(
                sender=Delivery, delivery=outcome.delivery, attempt=outcome.attempt,
                succeeded=outcome.succeeded, final=outcome.terminal))
        if outcome.succeeded:
            responses = delivery_succeeded.send_robust(
                sender=Delivery, delivery=outcome.delivery, attempt=outcome.attempt)
        elif outcome.terminal:
            responses = delivery_failed.send_robust(
                sender=Delivery, delivery=outcome.delivery, attempt=outcome.attempt)
        else:
            continue
        _log_receiver_errors(responses)
    for endpoint, reason in disabled:
        _log_receiver_errors(
            endpoint_disabled.send_robust(sender=Endpoint, endpoint=endpoint, reason=reason))


def _log_receiver_errors(responses: list[tuple[Any, Any]]) -> None:
    for receiver, response in responses:
        if isinstance(response, Exception):
            logger.error("Signal receiver %r raised", receiver, exc_info=response)


def next_attempt_time() -> datetime | None:
    """When the earliest pending delivery comes due (a retry, or a claim that ends)."""
    return (
        Delivery.objects.pending()
        .filter(next_attempt_at__isnull=False)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )


# --- the loop --------------------------------------------------------------------------------


#: Longest a delivery task waits, idle, for something due very soon (a rate-limited
#: endpoint's next slot, a concurrency cap freeing up) instead of ending, in seconds.
IDLE_WAIT = 1.0


#: A share still sending this long after its claim started is left to finish on its thread
#: while the worker claims and sends more (for other endpoints), in seconds.
STRAGGLER_AFTER = 0.5


def drain(time_limit: float | None = None) -> bool:
    """Claim and send batches until nothing is due or ``time_limit`` seconds have passed.

    A batch's shares (one per endpoint) are recorded as they finish. A share still sending
    after ``STRAGGLER_AFTER`` seconds (a slow receiver, a timeout) is a straggler: it goes on
    on its thread, recorded when it ends, while this worker claims more for the other
    endpoints. So a slow endpoint does not hold up the next batch either. At most
    ``SEND_CONCURRENCY`` shares send at once.

    Deliveries that flow control held back for at most ``IDLE_WAIT`` seconds (a rate-limited
    endpoint's next slots, a concurrency cap) are waited for, so such an endpoint is paced by
    its slots, not by the wake-up schedule. Returns whether due deliveries remain (the caller
    hands over to a fresh task).
    """
    limit = conf.TASK_TIME_LIMIT if time_limit is None else time_limit
    started = time.monotonic()
    held: datetime | None = None
    stragglers: list[_Share] = []
    try:
        while True:
            stragglers = _finish_done(stragglers)
            if len(stragglers) >= conf.SEND_CONCURRENCY:  # every thread busy: wait for one
                futures_wait([s.future for s in stragglers], return_when=FIRST_COMPLETED)
                continue
            batch = claim(exclude={s.endpoint_id for s in stragglers})
            if batch.held_until is not None:
                held = batch.held_until if held is None else min(held, batch.held_until)
            if batch.deliveries:
                shares = _start(batch)
                futures_wait([s.future for s in shares], timeout=STRAGGLER_AFTER)
                stragglers += _finish_done(shares)
            else:
                wait = (held - timezone.now()).total_seconds() if held is not None else None
                if stragglers and (wait is None or wait > IDLE_WAIT):
                    # Nothing else to do: wait for a straggler (its endpoint may have more).
                    futures_wait([s.future for s in stragglers], return_when=FIRST_COMPLETED)
                    continue
                if wait is None or wait > IDLE_WAIT:
                    return False
                if time.monotonic() - started + wait >= limit:
                    return True
                held = None
                time.sleep(max(wait, 0.05))
                continue
            if time.monotonic() - started >= limit:
                return Delivery.objects.due(
                    timezone.now() + timedelta(seconds=IDLE_WAIT)).exists()
    finally:
        # Never leave a share unrecorded: its claim would have to expire first.
        if stragglers:
            futures_wait([s.future for s in stragglers])
            _finish_done(stragglers)
