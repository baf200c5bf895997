"""Sending: a claim's deliveries posted over ``webhooks.http``, one share per endpoint.

:func:`start_sending` splits a claim by endpoint and sends each share, in order, on a thread of
the process's sending pool (``SEND_CONCURRENCY``), so a slow or failing endpoint never holds up
the others. A share ends early (the rest handed back unattempted) when its endpoint cannot be
reached, throttles us (429, or 502 and 504, which Standard Webhooks reads as "slow down"), or
fails ``CIRCUIT_BREAKER_THRESHOLD`` times in a row. What a share produces (:class:`Sent`:
outcomes, hand-backs, 410s, throttling pauses) is built off the main thread and written by
``recording``; nothing here touches the database but one read of the batch's subscriptions
(payload restrictions) and, for a batch with CloudEvents endpoints, the current site (cached by
Django), both on the main thread. The bodies come from :mod:`webhooks.delivery.bodies`.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from webhooks import http, ids, signing, ssrf
from webhooks.conf import webhooks_settings as conf
from webhooks.delivery.bodies import Bodies, content_type
from webhooks.delivery.claims import LEASE_MARGIN, OVERLOADED, RATE_LIMITED, Claim
from webhooks.events.payloads import subscriber_fields
from webhooks.models import WILDCARD, Delivery, DeliveryAttempt, Endpoint, Event, Subscription
from webhooks.validators import is_sendable_header

logger = logging.getLogger("webhooks")

Status = Delivery.Status

#: ``{endpoint id: {event type or "*": the payload fields its subscription allows}}``.
Restrictions = dict[Any, dict[str, tuple[str, ...]]]

#: Failures that say the endpoint cannot be reached at all right now: the rest of its batch
#: is handed back instead of waiting out the same failure once per delivery.
UNREACHABLE = frozenset({"connect_timeout", "read_timeout", "timeout", "connection_refused",
                         "connection_reset", "connection_error", "dns_error", "tls_error"})
#: The least lateness a rate-limited delivery is forgiven, in seconds (see
#: :func:`late_slot_tolerance`): at 10/s and more, half a slot would be finer than a busy
#: machine's thread scheduling.
LATE_SLOT_MIN = 0.05
#: Answers that mean "slow down" without saying for how long (Standard Webhooks reads 502 Bad
#: Gateway and 504 Gateway Timeout as throttling, like a 429 without ``Retry-After``).
OVERLOAD_STATUSES = frozenset({502, 504})


@dataclass
class Outcome:
    """What one delivery's turn in a share came to: its attempt (``None``: not attempted, its
    endpoint is disabled), and whether it succeeded or is over (``terminal``: no retry)."""

    delivery: Delivery
    attempt: DeliveryAttempt | None
    succeeded: bool
    terminal: bool


@dataclass
class Sent:
    """What sending one endpoint's share of a batch produced (built off the main thread)."""

    outcomes: list[Outcome] = field(default_factory=list)
    #: ``(delivery pk, when it is due again)`` for deliveries handed back unattempted.
    handed_back: list[tuple[Any, datetime]] = field(default_factory=list)
    #: The endpoint answered 410 Gone.
    gone: bool = False
    #: Paused until then by a 429 (its ``Retry-After``, bounded) or a 502/504 (growing,
    #: bounded); ``pause_reason`` says which.
    throttled_until: datetime | None = None
    pause_reason: str = ""

    def throttle(self, seconds: float, reason: str) -> None:
        """The receiver throttled us: pause its endpoint for ``seconds``."""
        self.throttled_until = timezone.now() + timedelta(seconds=seconds)
        self.pause_reason = reason


@dataclass(eq=False)
class Share:
    """One endpoint's deliveries of a claim, being sent on a thread (or already sent)."""

    claim: Claim
    endpoint_id: Any
    future: Future[Sent]


def start_sending(claim_: Claim) -> list[Share]:
    """Start sending a claim: one share per endpoint, each on a sending thread."""
    restrictions = _payload_restrictions(claim_.deliveries)
    options = _Options.current({d.endpoint.body_format for d in claim_.deliveries})
    groups: dict[Any, list[Delivery]] = defaultdict(list)
    for delivery in claim_.deliveries:
        groups[delivery.endpoint_id].append(delivery)
    pool = _sender_pool(conf.SEND_CONCURRENCY)
    return [Share(claim_, endpoint_id,
                  pool.submit(_send_endpoint, share, claim_, restrictions, options))
            for endpoint_id, share in groups.items()]


@dataclass
class _Options:
    """Settings read once per batch, on the worker's main thread."""

    timeout: float
    connect_timeout: float
    max_bytes: int
    stored_bytes: int
    breaker: int | None
    max_pause: float
    #: The first retry delay: how long a throttling answer that names no time pauses.
    first_delay: float
    client: dict[str, Any]
    #: The batch's bodies, each built once whatever the number of endpoints it goes to.
    bodies: Bodies
    #: Send the ``webhook-endpoint`` header (``ENDPOINT_HEADER``).
    endpoint_header: bool

    @classmethod
    def current(cls, formats: set[str]) -> _Options:
        """The settings now, for a batch whose endpoints use the body ``formats``."""
        return cls(
            timeout=conf.TIMEOUT, connect_timeout=conf.CONNECT_TIMEOUT,
            max_bytes=conf.MAX_RESPONSE_BYTES, stored_bytes=conf.STORED_RESPONSE_BYTES,
            breaker=conf.CIRCUIT_BREAKER_THRESHOLD, max_pause=conf.MAX_THROTTLE_PAUSE,
            first_delay=float(conf.RETRY_SCHEDULE[0]) if conf.RETRY_SCHEDULE else 5.0,
            client={
                "read_timeout": conf.READ_TIMEOUT,
                "max_header_bytes": conf.MAX_RESPONSE_HEADER_BYTES,
                "max_headers": conf.MAX_RESPONSE_HEADERS,
                "allowed_networks": ssrf.parse_networks(conf.ALLOWED_NETWORKS),
                "require_https": conf.REQUIRE_HTTPS,
                "ca_bundle": conf.CA_BUNDLE,
            },
            bodies=Bodies.for_formats(formats),
            endpoint_header=conf.ENDPOINT_HEADER,
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


def _send_endpoint(share: list[Delivery], claim_: Claim,
                   restrictions: Restrictions,
                   options: _Options) -> Sent:
    """Send one endpoint's deliveries in order; never raises (what was not sent is handed
    back, due at once)."""
    sent = Sent()
    done = 0
    try:
        failures_in_a_row = 0
        for delivery in share:
            if sent.gone or not delivery.endpoint.is_active:
                delivery.last_error = "endpoint_disabled: the endpoint is disabled"
                sent.outcomes.append(_finish(delivery, None, succeeded=False, terminal=True))
                done += 1
                continue
            slot = claim_.not_before.get(delivery.pk)
            wait = (slot or 0.0) - time.time()
            if claim_.deadline - time.monotonic() - max(wait, 0.0) \
                    < options.timeout + LEASE_MARGIN:
                break  # no time left in the lease for a full attempt
            if slot is not None and -wait > late_slot_tolerance(delivery.endpoint.rate_limit):
                # Its slot has passed (a busy machine, a slow answer before it): sent now, it
                # would crowd the slots other workers took since. It goes back for a new one.
                break
            if wait > 0:
                time.sleep(wait)  # this endpoint's rate limit: wait for the delivery's slot
            body = _body(delivery, restrictions, options)
            if body is None:
                sent.outcomes.append(_finish(delivery, None, succeeded=False, terminal=True))
                done += 1
                continue
            outcome, result = _attempt(delivery, body, options)
            sent.outcomes.append(outcome)
            done += 1
            if outcome.succeeded:
                failures_in_a_row = 0
                continue
            failures_in_a_row += 1
            if result.status_code == 410:
                sent.gone = True
            elif result.status_code == 429:
                sent.throttle(_throttle_pause(result.headers.get("Retry-After"), options),
                              RATE_LIMITED)
                break
            elif result.status_code in OVERLOAD_STATUSES:
                sent.throttle(_overload_pause(delivery.endpoint, options), OVERLOADED)
                break
            elif result.error_class in UNREACHABLE or (
                    options.breaker is not None and failures_in_a_row >= options.breaker):
                break
    except Exception:  # a bug must not lose the batch: what was not sent goes back
        logger.exception("Sending to endpoint %s failed",
                         ids.to_public(ids.ENDPOINT, share[0].endpoint_id))
    again = sent.throttled_until or timezone.now()
    sent.handed_back = [(d.pk, again) for d in share[done:]]
    return sent


def late_slot_tolerance(rate_limit: int | None) -> float:
    """How late a rate-limited delivery may still go out on its slot, in seconds: half a slot,
    and at least ``LATE_SLOT_MIN``. A later one is handed back for a new slot, so that no second
    holds more than ``rate_limit`` sends (give or take one) across every worker."""
    return max(0.5 / rate_limit, LATE_SLOT_MIN) if rate_limit else LATE_SLOT_MIN


def _throttle_pause(retry_after: str | None, options: _Options) -> float:
    """Seconds a 429 pauses its endpoint: its ``Retry-After`` if sensible, else the first
    retry delay; at most ``MAX_THROTTLE_PAUSE``."""
    asked = parse_retry_after(retry_after) if retry_after else None
    return _bounded_pause(asked if asked is not None else options.first_delay, options)


def _overload_pause(endpoint: Endpoint, options: _Options) -> float:
    """Seconds a 502 or 504 pauses its endpoint: the first retry delay at first, then as long
    as the endpoint has been failing without a success (``failing_since``, as the claim read
    it), so the pause about doubles while they go on; at most ``MAX_THROTTLE_PAUSE``."""
    since = endpoint.failing_since
    failing_for = (timezone.now() - since).total_seconds() if since is not None else 0.0
    return _bounded_pause(max(options.first_delay, failing_for), options)


def _bounded_pause(seconds: float, options: _Options) -> float:
    """A throttling pause kept from 1 second to ``MAX_THROTTLE_PAUSE``."""
    return min(max(seconds, 1.0), options.max_pause)


def _body(delivery: Delivery, restrictions: Restrictions, options: _Options) -> bytes | None:
    """What ``delivery`` sends: its event's body in its endpoint's format, narrowed to its
    subscription's fields. ``None`` (and ``last_error`` set) when the stored payload cannot
    be read: the delivery fails for good instead of being handed back forever."""
    event = delivery.event
    allowed = subscriber_fields(event.type, restrictions.get(delivery.endpoint_id, {}))
    try:
        return options.bodies.get(event, delivery.endpoint.body_format, allowed)
    except (ValueError, KeyError) as exc:
        delivery.last_error = f"payload_error: the stored payload cannot be sent: {exc!r}"[:255]
        return None


def _attempt(delivery: Delivery, body: bytes, options: _Options,
             ) -> tuple[Outcome, http.HttpResult]:
    """One HTTP attempt of one delivery (``body``), and what it means for the delivery."""
    endpoint, event = delivery.endpoint, delivery.event
    timestamp = int(time.time())
    headers = build_headers(endpoint, event, body, timestamp,
                            endpoint_header=options.endpoint_header)
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


def _finish(delivery: Delivery, attempt: DeliveryAttempt | None, *, succeeded: bool,
            terminal: bool) -> Outcome:
    """The delivery's state after its turn, set in memory (``recording`` writes it)."""
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


def _payload_restrictions(deliveries: list[Delivery]) -> Restrictions:
    """``{endpoint id: {event type or "*": fields}}`` of the batch's subscriptions, in one
    query: a subscription may restrict the payload to some fields (empty: all of them)."""
    if not deliveries:
        return {}
    endpoints = {d.endpoint_id for d in deliveries}
    types = {d.event.type for d in deliveries} | {WILDCARD}
    rows = Subscription.objects.filter(endpoint_id__in=endpoints, event_type__in=types)
    restrictions: Restrictions = defaultdict(dict)
    for endpoint_id, event_type, fields in rows.values_list("endpoint_id", "event_type",
                                                            "fields"):
        restrictions[endpoint_id][event_type] = tuple(fields or ())
    return restrictions


def build_headers(endpoint: Endpoint, event: Event, body: bytes, timestamp: int, *,
                  endpoint_header: bool = False) -> dict[str, str]:
    """Our headers (signed for every valid secret) plus the endpoint's own, which never win.

    ``Content-Type`` is the media type of the endpoint's body format; ``endpoint_header``
    adds ``webhook-endpoint``: the endpoint's id, so that a receiver with several
    subscriptions can tell them apart (a header, so the body stays the same for every
    endpoint of an event).
    """
    headers: dict[str, str] = {}
    custom: dict[str, Any] = endpoint.headers if isinstance(endpoint.headers, dict) else {}
    for name, value in custom.items():
        # Validated when saved; anything that slipped past (a queryset update) is left out.
        if is_sendable_header(name, value):
            headers[name] = value
    msg_id = event.public_id
    headers.update({
        "Content-Type": content_type(endpoint.body_format),
        "User-Agent": http.USER_AGENT,
        "Accept-Encoding": "identity",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(
            endpoint.signing_secrets(), msg_id, timestamp, body
        ),
    })
    if endpoint_header:
        headers["webhook-endpoint"] = str(endpoint.pk)
    return headers


def _logged_headers(endpoint: Endpoint, headers: dict[str, str]) -> dict[str, str]:
    """Headers as stored on the attempt: custom header values (often tokens) are masked."""
    custom = {str(name).lower() for name in (endpoint.headers or {})}
    return {k: ("••••••" if k.lower() in custom else v) for k, v in headers.items()}


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


