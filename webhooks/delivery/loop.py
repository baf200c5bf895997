"""The delivery loop: claim, send, record, schedule, until nothing is due or time is up.

:func:`drain` is what a delivery task runs (``webhooks.tasks.drain``); :func:`deliver` sends
and records one claim (the ``webhooks_deliver`` command's loop); :func:`next_attempt_time`
says when to wake up next.
"""

from __future__ import annotations

import time
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED
from concurrent.futures import wait as futures_wait
from datetime import datetime, timedelta

from django.utils import timezone

from webhooks.conf import webhooks_settings as conf
from webhooks.delivery.claims import Claim, claim
from webhooks.delivery.recording import record
from webhooks.delivery.sending import Outcome, Share, start_sending
from webhooks.models import Delivery

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
    held: datetime | None = None  # the soonest time flow control moved a delivery to
    stragglers: list[Share] = []
    try:
        while True:
            stragglers = _record_finished(stragglers)
            if len(stragglers) >= conf.SEND_CONCURRENCY:  # every thread busy: wait for one
                _wait_for_one(stragglers)
                continue

            # 1. Claim what is due, leaving alone the endpoints still being sent to.
            batch = claim(exclude={s.endpoint_id for s in stragglers})
            if batch.held_until is not None:
                held = batch.held_until if held is None else min(held, batch.held_until)

            if batch.deliveries:
                # 2. Send: one share per endpoint, each on a sending thread.
                shares = start_sending(batch)
                futures_wait([s.future for s in shares], timeout=STRAGGLER_AFTER)
                # 3. Record the shares that are done; the others go on as stragglers.
                stragglers += _record_finished(shares)
                if time.monotonic() - started >= limit:
                    return Delivery.objects.due(
                        timezone.now() + timedelta(seconds=IDLE_WAIT)).exists()
                continue

            # 4. Schedule: nothing to claim now. Wait for what flow control holds back for
            # at most IDLE_WAIT; else for a straggler (its endpoint may have more); else end.
            wait = (held - timezone.now()).total_seconds() if held is not None else None
            if wait is None or wait > IDLE_WAIT:
                if stragglers:
                    _wait_for_one(stragglers)
                    continue
                return False
            if time.monotonic() - started + wait >= limit:
                return True
            held = None
            time.sleep(max(wait, 0.05))
    finally:
        # Never leave a share unrecorded: its claim would have to expire first.
        if stragglers:
            futures_wait([s.future for s in stragglers])
            _record_finished(stragglers)


def deliver(claim_: Claim) -> list[Outcome]:
    """Send every delivery of a claim, then record all outcomes in one transaction.

    Each endpoint's deliveries go out in order on one thread, and different endpoints on
    different threads (``SEND_CONCURRENCY``), so a slow or failing endpoint never holds up
    the others. An endpoint that cannot be reached, throttles (429, 502, 504), or fails
    ``CIRCUIT_BREAKER_THRESHOLD`` times in a row gets the rest of its share handed back
    unattempted.
    """
    if not claim_.deliveries:
        return []
    shares = start_sending(claim_)
    futures_wait([share.future for share in shares])
    return _record_shares(shares)


def next_attempt_time() -> datetime | None:
    """When the earliest pending delivery comes due (a retry, or a claim that ends)."""
    return (
        Delivery.objects.pending()
        .filter(next_attempt_at__isnull=False)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )


def _wait_for_one(shares: list[Share]) -> None:
    """Block until at least one of ``shares`` has finished sending."""
    futures_wait([s.future for s in shares], return_when=FIRST_COMPLETED)


def _record_finished(shares: list[Share]) -> list[Share]:
    """Record the shares that are done (grouped by claim); return those still sending."""
    done: dict[int, list[Share]] = defaultdict(list)
    running = []
    for share in shares:
        if share.future.done():
            done[id(share.claim)].append(share)
        else:
            running.append(share)
    for group in done.values():
        _record_shares(group)
    return running


def _record_shares(shares: list[Share]) -> list[Outcome]:
    """Record shares whose sending is over (all of one claim), in one transaction."""
    results = [(share.endpoint_id, share.future.result()) for share in shares]
    outcomes = [o for _, r in results for o in r.outcomes]
    record(shares[0].claim.token, outcomes,
           handed_back=[item for _, r in results for item in r.handed_back],
           gone={endpoint_id for endpoint_id, r in results if r.gone},
           throttled={endpoint_id: (r.throttled_until, r.pause_reason)
                      for endpoint_id, r in results if r.throttled_until is not None})
    return outcomes
