"""Fan-out, claims, sending, recording and retries: everything between an event and a receiver.

Every function here is driven by a task (``webhooks.tasks``) or by a management command; none
runs inside a user's request. The database is the source of truth: a delivery is claimed by
moving its ``next_attempt_at`` to the end of a lease, so a worker that dies loses nothing.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from webhooks import http, signing, ssrf
from webhooks.conf import webhooks_settings as conf
from webhooks.events import restrict_payload
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


# --- claims ----------------------------------------------------------------------------------


@dataclass
class Claim:
    """Deliveries one worker holds until ``deadline`` (a ``time.monotonic()`` value)."""

    token: uuid.UUID
    deliveries: list[Delivery]
    deadline: float


def claim(batch_size: int | None = None) -> Claim:
    """Take up to ``batch_size`` due deliveries for this worker, oldest first.

    PostgreSQL (and any database with ``SKIP LOCKED``) locks the chosen rows so concurrent
    workers pass over them; elsewhere (SQLite) one ``UPDATE`` whose ``WHERE`` repeats the due
    condition is a compare-and-set, and a second worker's update finds the rows already moved.
    """
    batch_size = batch_size or conf.BATCH_SIZE
    using = router.db_for_write(Delivery)
    connection = connections[using]
    token = uuid.uuid4()
    now = timezone.now()
    started = time.monotonic()
    lease_until = now + timedelta(seconds=conf.CLAIM_TTL)
    due = Delivery.objects.using(using).due(now).order_by("next_attempt_at")
    take = Delivery.objects.using(using).filter(status=Status.PENDING, next_attempt_at__lte=now)
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic(using=using):
            chosen = list(due.select_for_update(skip_locked=True)
                          .values_list("pk", flat=True)[:batch_size])
            count = take.filter(pk__in=chosen).update(
                next_attempt_at=lease_until, claim_token=token) if chosen else 0
    elif due.exists():  # a read first: an empty claim must not take SQLite's write lock
        count = take.filter(pk__in=due.values("pk")[:batch_size]).update(
            next_attempt_at=lease_until, claim_token=token)
    else:
        count = 0
    if not count:
        return Claim(token, [], started)
    deliveries = list(
        Delivery.objects.using(using)
        .filter(status=Status.PENDING, next_attempt_at=lease_until, claim_token=token)
        .select_related("event", "endpoint")
        .order_by("next_attempt_at", "created_at")
    )
    return Claim(token, deliveries, started + conf.CLAIM_TTL)


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


def deliver(claim_: Claim) -> list[Outcome]:
    """Send every delivery of a claim, then record all outcomes in one transaction."""
    outcomes: list[Outcome] = []
    released: list[Any] = []
    bodies: dict[tuple[Any, tuple[str, ...]], bytes] = {}
    restrictions = _payload_restrictions(claim_.deliveries)
    gone: set[Any] = set()  # endpoints disabled during this batch
    timeout, connect_timeout = conf.TIMEOUT, conf.CONNECT_TIMEOUT
    max_bytes, stored_bytes = conf.MAX_RESPONSE_BYTES, conf.STORED_RESPONSE_BYTES
    client_options: dict[str, Any] = {
        "read_timeout": conf.READ_TIMEOUT,
        "allowed_networks": ssrf.parse_networks(conf.ALLOWED_NETWORKS),
        "require_https": conf.REQUIRE_HTTPS,
        "ca_bundle": conf.CA_BUNDLE,
    }
    for delivery in claim_.deliveries:
        if claim_.deadline - time.monotonic() < timeout + LEASE_MARGIN:
            released.append(delivery.pk)  # no time left in the lease for a full attempt
            continue
        endpoint, event = delivery.endpoint, delivery.event
        if not endpoint.is_active or endpoint.pk in gone:
            delivery.last_error = "endpoint_disabled: the endpoint is disabled"
            outcomes.append(_finish(delivery, None, succeeded=False, terminal=True))
            continue
        allowed = restrictions.get((delivery.endpoint_id, event.type))
        if allowed is None:
            allowed = restrictions.get((delivery.endpoint_id, WILDCARD), ())
        body = bodies.get((event.pk, allowed))
        if body is None:
            payload = restrict_payload(event.payload, allowed) if allowed else event.payload
            body = bodies[(event.pk, allowed)] = payload.encode()
        timestamp = int(time.time())
        headers = build_headers(endpoint, event, body, timestamp)
        started_at = timezone.now()
        result = http.post(endpoint.url, body, headers, timeout=timeout,
                           connect_timeout=connect_timeout, max_response_bytes=max_bytes,
                           **client_options)
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
            response_body=storable(result.body[:stored_bytes]),
            duration=round(result.duration, 6),
            error_class=result.error_class,
            error=storable(result.error),
        )
        if result.ok:
            outcomes.append(_finish(delivery, attempt, succeeded=True, terminal=True))
            continue
        if not attempt.error_class:
            attempt.error_class = "redirect" if 300 <= (result.status_code or 0) < 400 \
                else "http_status"
            attempt.error = f"HTTP {result.status_code}"
        delivery.last_error = f"{attempt.error_class}: {attempt.error}"[:255]
        if result.status_code == 410:
            gone.add(endpoint.pk)
            outcomes.append(_finish(delivery, attempt, succeeded=False, terminal=True))
            continue
        if not result.retryable:  # refused by policy (SSRF guard): retrying cannot help
            outcomes.append(_finish(delivery, attempt, succeeded=False, terminal=True))
            continue
        delay = retry_delay(delivery.attempts, result.status_code,
                            result.headers.get("Retry-After"))
        if delay is None:
            outcomes.append(_finish(delivery, attempt, succeeded=False, terminal=True))
        else:
            delivery.next_attempt_at = timezone.now() + timedelta(seconds=delay)
            outcomes.append(_finish(delivery, attempt, succeeded=False, terminal=False))
    _record(claim_, outcomes, released, gone)
    return outcomes


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


def _record(claim_: Claim, outcomes: list[Outcome], released: list[Any], gone: set[Any]) -> None:
    using = router.db_for_write(Delivery)
    now = timezone.now()
    disabled: list[tuple[Endpoint, str]] = []
    with transaction.atomic(using=using):
        attempts = [o.attempt for o in outcomes if o.attempt is not None]
        if attempts:
            DeliveryAttempt.objects.using(using).bulk_create(attempts, batch_size=500)
        _save_deliveries(using, claim_.token, outcomes)
        if released:
            Delivery.objects.using(using).filter(
                pk__in=released, claim_token=claim_.token
            ).update(next_attempt_at=now, claim_token=None)
        _update_health(using, outcomes, now)
        for endpoint_id in gone:
            disabled += _disable(using, endpoint_id, "The endpoint answered 410 Gone.", now)
        disabled += _auto_disable(using, outcomes, now)
    _send_signals(outcomes, disabled)


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


def drain(time_limit: float | None = None) -> bool:
    """Claim and send batches until nothing is due or ``time_limit`` seconds have passed.

    Returns whether due deliveries remain (the caller hands over to a fresh task).
    """
    limit = conf.TASK_TIME_LIMIT if time_limit is None else time_limit
    started = time.monotonic()
    while True:
        batch = claim()
        if not batch.deliveries:
            return False
        deliver(batch)
        if time.monotonic() - started >= limit:
            return Delivery.objects.due().exists()
