"""Recording: what a claim's sending came to, written in one transaction per claim.

Attempt rows (:func:`insert_attempts`), the deliveries' new states, deliveries handed back
unattempted, each endpoint's health (last success, failures in a row), pauses (429s, 502s and
504s, the circuit breaker), 410s (REST Hooks removed, other endpoints disabled), automatic
disabling and the owners' notices
(:mod:`webhooks.notifications.notices`); then, once committed, a log record per attempt and
the ``webhooks.signals``.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import ngettext

from webhooks import ids
from webhooks.conf import webhooks_settings as conf
from webhooks.delivery.claims import CIRCUIT_OPEN, THROTTLED
from webhooks.delivery.sending import Outcome
from webhooks.models import Delivery, DeliveryAttempt, DisabledBy, Endpoint
from webhooks.notifications import notices
from webhooks.notifications.notices import Notice
from webhooks.signals import delivery_attempted, delivery_failed, delivery_succeeded, send

logger = logging.getLogger("webhooks")

Status = Delivery.Status


def record(token: uuid.UUID, outcomes: list[Outcome], *,
           handed_back: Sequence[tuple[Any, datetime]] = (), gone: Iterable[Any] = (),
           throttled: dict[Any, tuple[datetime, str]] | None = None) -> None:
    """Write what sending a claim (``token``) came to, in one transaction, then log and send
    the signals.

    ``handed_back``: ``(delivery pk, when it is due again)`` of deliveries not attempted;
    ``gone``: endpoints that answered 410 (REST Hooks deleted, the others disabled);
    ``throttled``: ``{endpoint pk: (paused until, pause reason)}`` for endpoints that
    throttled us (a 429, a 502 or 504). Only rows this claim still holds change.
    """
    using = router.db_for_write(Delivery)
    now = timezone.now()
    told: list[Notice] = []
    with transaction.atomic(using=using):
        attempts = [o.attempt for o in outcomes if o.attempt is not None]
        if attempts:
            insert_attempts(using, attempts)
        _save_deliveries(using, token, outcomes)
        again: dict[datetime, list[Any]] = defaultdict(list)
        for pk, when in handed_back:
            again[when].append(pk)
        for when, pks in again.items():
            Delivery.objects.using(using).filter(pk__in=pks, claim_token=token).update(
                next_attempt_at=when, claim_token=None)
        touched = sorted({o.delivery.endpoint_id for o in outcomes if o.attempt is not None}
                         | set(throttled or ()))
        if touched and connections[using].features.has_select_for_no_key_update:
            # Endpoint rows in primary-key order, as claims take them: no deadlock.
            list(Endpoint.objects.using(using).select_for_update(no_key=True)
                 .filter(pk__in=touched).order_by("pk").values_list("pk", flat=True))
        _update_health(using, outcomes, now)
        _update_pauses(using, outcomes, throttled or {}, now)
        told += _gone(using, gone, now)
        told += _auto_disable(using, outcomes, now)
        told += _notices(using, outcomes, now)
    _send_signals(outcomes, told)


def _update_pauses(using: str, outcomes: list[Outcome],
                   throttled: dict[Any, tuple[datetime, str]], now: datetime) -> None:
    """Pause endpoints that throttled us (a 429, a 502 or 504) or whose circuit opens; close
    circuits that recovered (a probe succeeded). A pause is only ever lengthened."""
    endpoints = Endpoint.objects.using(using)
    for endpoint_id, (until, why) in throttled.items():
        endpoints.filter(pk=endpoint_id).filter(
            Q(paused_until__isnull=True) | Q(paused_until__lt=until)
        ).update(paused_until=until, pause_reason=why)
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
        if reason in THROTTLED and paused_until is not None and paused_until > until:
            continue
        endpoints.filter(pk=endpoint_id).update(paused_until=until, pause_reason=CIRCUIT_OPEN)
        logger.warning("Endpoint %s failed %s+ times in a row: paused until %s",
                       ids.to_public(ids.ENDPOINT, endpoint_id), threshold, until.isoformat())


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


def _gone(using: str, endpoint_ids: Iterable[Any], now: datetime) -> list[Notice]:
    """Endpoints that answered 410 Gone. A REST Hook (``rest_hook``: subscribed through the
    Zapier routes) is deleted, its deliveries and attempts with it, as that protocol says: the
    subscription is over, nobody needs telling, and its place under
    ``MAX_ENDPOINTS_PER_OWNER`` is free. Any other endpoint is disabled, and its owner told."""
    endpoint_ids = list(endpoint_ids)
    if not endpoint_ids:
        return []
    hooks = Endpoint.objects.using(using).filter(pk__in=endpoint_ids, rest_hook=True)
    removed = set(hooks.values_list("pk", flat=True))
    if removed:
        Endpoint.objects.using(using).filter(pk__in=removed).delete()
        for pk in sorted(removed):
            logger.warning("Endpoint %s (a REST Hook) answered 410 Gone: unsubscribed and "
                           "deleted", ids.to_public(ids.ENDPOINT, pk))
    return _disable(using, [pk for pk in endpoint_ids if pk not in removed],
                    "The endpoint answered 410 Gone.", now)


def _auto_disable(using: str, outcomes: list[Outcome], now: datetime) -> list[Notice]:
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
    return _disable(using, list(doomed), reason, now)


def _disable(using: str, endpoint_ids: Iterable[Any], reason: str, now: datetime,
             ) -> list[Notice]:
    """Switch off the endpoints still active (each by one worker only: the owner's notice).
    An automatic disable: their owner may switch them on again once the receiver works."""
    told = notices.disable(using, endpoint_ids, {
        "is_active": False, "disabled_reason": reason[:255], "disabled_by": DisabledBy.SYSTEM,
        "disabled_at": now})
    for notice in told:
        logger.warning("Endpoint %s disabled: %s", notice.endpoint.public_id, reason)
    return told


def _notices(using: str, outcomes: list[Outcome], now: datetime) -> list[Notice]:
    """The failing and recovered notices this claim's attempts call for (see
    :mod:`webhooks.notifications.notices`). Per endpoint, its last attempt in the claim
    counts: a failure may make it failing, a success recovered."""
    last: dict[Any, Outcome] = {}
    for outcome in outcomes:
        if outcome.attempt is not None:
            last[outcome.delivery.endpoint_id] = outcome
    failed = {pk: _what_it_got(o) for pk, o in last.items() if not o.succeeded
              # the claim's copy of the row: already told, or switched off meanwhile
              and o.delivery.endpoint.notified_state != notices.FAILING
              and o.delivery.endpoint.is_active}
    return (notices.failing(using, failed, now)
            + notices.recovered(using, [o.delivery.endpoint for o in last.values()
                                        if o.succeeded], now))


def _what_it_got(outcome: Outcome) -> str:
    """A failed attempt's result in words, for its owner: the status code or error class."""
    attempt = outcome.attempt
    if attempt is None:
        return ""
    if attempt.status_code is not None:
        return f"The last attempt got HTTP {attempt.status_code}."
    return f"The last attempt failed: {attempt.error_class or 'error'}."


def _human(delta: timedelta) -> str:
    """``delta`` in words: ``1 hour``, ``5 days``, ``90 seconds``."""
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0:
        return ngettext("%d day", "%d days", seconds // 86400) % (seconds // 86400)
    if seconds % 3600 == 0:
        return ngettext("%d hour", "%d hours", seconds // 3600) % (seconds // 3600)
    return ngettext("%d second", "%d seconds", seconds) % seconds


def _log(outcome: Outcome) -> None:
    """One structured record per attempt on the ``webhooks`` logger (fields in ``extra``)."""
    level = logging.INFO if outcome.succeeded else logging.WARNING
    if not logger.isEnabledFor(level):  # most sites log successes at WARNING: build nothing
        return
    delivery, attempt = outcome.delivery, outcome.attempt
    state = ("succeeded" if outcome.succeeded else "failed" if outcome.terminal
             else "retrying")
    fields = {
        "webhook_event_id": delivery.event.public_id,
        "webhook_event_type": delivery.event.type,
        "webhook_delivery_id": delivery.public_id,
        "webhook_endpoint_id": ids.to_public(ids.ENDPOINT, delivery.endpoint_id),
        "webhook_attempt": attempt.number if attempt else None,
        "webhook_status": state,
        "webhook_status_code": attempt.status_code if attempt else None,
        "webhook_error_class": attempt.error_class if attempt else "",
        "webhook_duration_ms": round(attempt.duration * 1000, 1) if attempt else None,
    }
    got = " ".join(str(v) for v in (fields["webhook_status_code"],
                                     fields["webhook_error_class"]) if v)
    logger.log(level, "webhook %(webhook_event_id)s to endpoint %(webhook_endpoint_id)s "
               "attempt %(webhook_attempt)s: %(webhook_status)s (%(got)s) in "
               "%(webhook_duration_ms)s ms", {**fields, "got": got}, extra=fields)


def _send_signals(outcomes: list[Outcome], told: list[Notice]) -> None:
    for outcome in outcomes:
        _log(outcome)
        if outcome.attempt is not None:
            send(delivery_attempted, Delivery, delivery=outcome.delivery,
                 attempt=outcome.attempt, succeeded=outcome.succeeded, final=outcome.terminal)
        if outcome.succeeded:
            send(delivery_succeeded, Delivery, delivery=outcome.delivery,
                 attempt=outcome.attempt)
        elif outcome.terminal:
            send(delivery_failed, Delivery, delivery=outcome.delivery, attempt=outcome.attempt)
    notices.send_all(told)

