"""Flow control: rate limits and concurrency caps shared by every worker, 429 slow-downs, the
circuit breaker, and no head-of-line blocking between endpoints. Real loopback receivers."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from tests.cluster import Cluster, wait_until
from tests.factories import make_due, make_endpoint, publish
from tests.helpers import override_webhooks
from tests.receiver import Receiver, Reply
from webhooks import tasks
from webhooks.delivery.claims import claim
from webhooks.delivery.loop import drain
from webhooks.models import Delivery, DeliveryAttempt, Endpoint

pytestmark = pytest.mark.django_db


def pending_of(endpoint: Endpoint) -> list[Delivery]:
    return list(Delivery.objects.filter(endpoint=endpoint, status="pending"))


# --- rate limit ------------------------------------------------------------------------------


def test_a_rate_limit_hands_each_claim_only_the_next_second_of_slots(receiver: Receiver,
                                                                      ) -> None:
    endpoint = make_endpoint(receiver.url(), rate_limit=4)
    publish(count=10)
    before = timezone.now()
    first = claim()
    assert len(first.deliveries) == 4
    slots = sorted(first.not_before.values())
    assert [round(b - a, 3) for a, b in itertools.pairwise(slots)] == [0.25] * 3
    # The endpoint's clock moved a second on: a second worker claiming now gets nothing...
    endpoint.refresh_from_db()
    assert endpoint.rate_slot_at is not None
    assert 0.9 <= (endpoint.rate_slot_at - before).total_seconds() <= 1.5
    second = claim()
    assert second.deliveries == []
    # ...and the six left over were moved to around their turn, not left at the head.
    later = [d.next_attempt_at for d in pending_of(endpoint) if d.claim_token is None]
    assert len(later) == 6 and all(t is not None and t > before for t in later)
    assert first.held_until is not None


def test_a_delivery_whose_slot_has_passed_goes_back_for_a_new_one(receiver: Receiver) -> None:
    """A worker held up past its slots (a busy machine) does not send them late: sent then,
    they would crowd the slots other workers took since. They are handed back, unattempted,
    due at once."""
    from webhooks.delivery.loop import deliver

    make_endpoint(receiver.url(), rate_limit=4)
    publish(count=4)
    batch = claim()
    assert len(batch.deliveries) == 4
    batch.not_before = {pk: at - 2.0 for pk, at in batch.not_before.items()}
    batch.not_before[batch.deliveries[0].pk] = time.time()  # the first sent is on time
    outcomes = deliver(batch)
    assert [o.succeeded for o in outcomes] == [True]
    assert len(receiver.received()) == 1
    pending = Delivery.objects.filter(status="pending")
    assert pending.count() == 3
    assert all(d.claim_token is None and d.attempts == 0 for d in pending)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_rate_limit_holds_across_two_worker_processes(async_broker: None,
                                                        receiver: Receiver) -> None:
    make_endpoint(receiver.url(), rate_limit=10)
    publish(count=30)
    # Two clusters of two workers each, one delivery per claim: four claimers racing.
    with Cluster(WEBHOOKS_TEST_BATCH_SIZE="1"), Cluster(WEBHOOKS_TEST_BATCH_SIZE="1"):
        for _ in range(4):
            tasks.enqueue("drain")
        requests = receiver.wait_for(30, timeout=40)
    assert len(requests) == 30
    # What the limit governs is when the workers start their requests (the attempts' times,
    # taken as each request goes out): arrival times add the receiver thread's own
    # scheduling on a loaded machine, which no sender controls.
    times = sorted(a.created_at.timestamp() for a in DeliveryAttempt.objects.all())
    assert len(times) == 30
    # No one-second window holds more than the limit (one slot of slack for clock rounding).
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 11, busiest
    assert times[-1] - times[0] >= 2.0  # 30 deliveries at 10/s take about 3 s, not 0.1 s


# --- concurrency cap -------------------------------------------------------------------------


def test_a_concurrency_cap_counts_other_workers_claims(receiver: Receiver) -> None:
    capped = make_endpoint(receiver.url("/capped"), max_concurrency=1)
    free = make_endpoint(receiver.url("/free"))
    publish(count=3)
    # Another worker holds a live claim on one of the capped endpoint's deliveries.
    held = Delivery.objects.filter(endpoint=capped).first()
    assert held is not None
    Delivery.objects.filter(pk=held.pk).update(
        claim_token=uuid.uuid4(), next_attempt_at=timezone.now() + timedelta(seconds=30))
    batch = claim()
    assert {d.endpoint_id for d in batch.deliveries} == {free.pk}  # the others still flow
    waiting = [d for d in pending_of(capped) if d.pk != held.pk]
    assert len(waiting) == 2
    assert all(d.claim_token is None and d.next_attempt_at is not None
               and d.next_attempt_at > timezone.now() for d in waiting)
    assert batch.held_until is not None


def test_the_default_cap_applies_to_endpoints_without_their_own(receiver: Receiver) -> None:
    endpoint = make_endpoint(receiver.url())
    publish(count=2)
    first = Delivery.objects.first()
    assert first is not None
    Delivery.objects.filter(pk=first.pk).update(
        claim_token=uuid.uuid4(), next_attempt_at=timezone.now() + timedelta(seconds=30))
    with override_webhooks(MAX_CONCURRENCY=1):
        assert claim().deliveries == []
    with override_webhooks(MAX_CONCURRENCY=2):
        Delivery.objects.filter(endpoint=endpoint, claim_token__isnull=True).update(
            next_attempt_at=timezone.now())
        assert len(claim().deliveries) == 1


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_concurrency_cap_of_one_holds_across_workers(async_broker: None,
                                                       receiver: Receiver) -> None:
    receiver.script("/hook", *[Reply(200, delay=0.3) for _ in range(6)])
    make_endpoint(receiver.url(), max_concurrency=1)
    publish(count=6)
    with Cluster(WEBHOOKS_TEST_BATCH_SIZE="1", WEBHOOKS_TEST_WORKERS="3"):
        for _ in range(3):
            tasks.enqueue("drain")
        requests = receiver.wait_for(6, timeout=40)
        wait_until(lambda: not Delivery.objects.filter(status="pending").exists(), timeout=20)
    starts = sorted(r.at for r in requests)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.28, gaps  # each request began after the previous one's 0.3 s


# --- 429 -------------------------------------------------------------------------------------


def test_a_429_pauses_the_endpoint_for_its_retry_after(receiver: Receiver) -> None:
    receiver.script("/hook", Reply(429, headers={"Retry-After": "3"}))
    endpoint = make_endpoint(receiver.url())
    publish(count=5)
    before = timezone.now()
    drain()
    assert len(receiver.received()) == 1  # the other four were not sent into the 429
    (attempt,) = DeliveryAttempt.objects.all()
    assert attempt.error_class == "rate_limited"
    endpoint.refresh_from_db()
    assert endpoint.pause_reason == "rate_limited"
    assert endpoint.paused_until is not None
    assert 2.5 <= (endpoint.paused_until - before).total_seconds() <= 4
    untouched = [d for d in pending_of(endpoint) if d.attempts == 0]
    assert len(untouched) == 4
    assert all(d.next_attempt_at == endpoint.paused_until for d in untouched)
    # Due again by the clock but still paused: a claim moves them instead of sending.
    Delivery.objects.update(next_attempt_at=timezone.now())
    assert claim().deliveries == []
    # Once the pause is over, everything goes.
    Endpoint.objects.filter(pk=endpoint.pk).update(paused_until=timezone.now())
    Delivery.objects.update(next_attempt_at=timezone.now())
    drain()
    assert Delivery.objects.filter(status="succeeded").count() == 5


def test_an_absurd_retry_after_pauses_at_most_max_throttle_pause(receiver: Receiver) -> None:
    receiver.script("/hook", Reply(429, headers={"Retry-After": "999999999"}))
    endpoint = make_endpoint(receiver.url())
    publish()
    with override_webhooks(MAX_THROTTLE_PAUSE=60):
        drain()
    endpoint.refresh_from_db()
    assert endpoint.paused_until is not None
    assert (endpoint.paused_until - timezone.now()).total_seconds() <= 60


# --- 502 and 504: throttling without a Retry-After ------------------------------------------


def paused_for(endpoint: Endpoint, since: datetime | None = None) -> float:
    """Seconds from ``since`` (default: now) to the end of the endpoint's pause."""
    endpoint.refresh_from_db()
    assert endpoint.paused_until is not None
    return (endpoint.paused_until - (since or timezone.now())).total_seconds()


def end_the_pause(endpoint: Endpoint, **fields: Any) -> None:
    """End the endpoint's pause (setting ``fields`` too) and make every pending delivery due."""
    Endpoint.objects.filter(pk=endpoint.pk).update(paused_until=timezone.now(), **fields)
    Delivery.objects.filter(status="pending").update(next_attempt_at=timezone.now())


@pytest.mark.parametrize("status", [502, 504])
def test_a_502_or_504_slows_the_endpoint_down(receiver: Receiver, status: int) -> None:
    """Standard Webhooks: 502 and 504 mean "slow down", like a 429 without a Retry-After.
    The endpoint is paused (a short pause, longer the longer it goes on, bounded); the
    delivery that got it is a failed attempt, retried on its schedule."""
    receiver.script("/hook", *[Reply(status)] * 3)
    endpoint = make_endpoint(receiver.url())
    publish(count=5)
    with override_webhooks(RETRY_SCHEDULE=[2, 60, 60], MAX_THROTTLE_PAUSE=300,
                           CIRCUIT_BREAKER_THRESHOLD=None):
        before = timezone.now()
        drain()
        assert len(receiver.received()) == 1  # the other four were not sent into it
        (attempt,) = DeliveryAttempt.objects.all()
        assert (attempt.status_code, attempt.error_class) == (status, "http_status")
        # A short pause to begin with: the first retry delay.
        assert 1.5 <= paused_for(endpoint, before) <= 3
        assert endpoint.pause_reason == "overloaded"
        # The delivery that got it failed an attempt and is retried on its schedule; the
        # others were handed back, unsent, until the pause ends.
        tried = Delivery.objects.get(attempts=1)
        assert (tried.status, tried.last_status_code) == ("pending", status)
        assert tried.next_attempt_at is not None
        assert 1.5 <= (tried.next_attempt_at - before).total_seconds() <= 3
        assert {d.next_attempt_at for d in pending_of(endpoint) if d.attempts == 0} == {
            endpoint.paused_until}
        # Due again by the clock but still paused: a claim moves them instead of sending.
        make_due()
        assert claim().deliveries == []
        assert len(receiver.received()) == 1

        # While they go on, the pause grows with how long the endpoint has been failing...
        end_the_pause(endpoint, failing_since=timezone.now() - timedelta(seconds=40))
        drain()
        assert len(receiver.received()) == 2
        assert 38 <= paused_for(endpoint) <= 41
        # ...up to MAX_THROTTLE_PAUSE.
        end_the_pause(endpoint, failing_since=timezone.now() - timedelta(days=10))
        drain()
        assert len(receiver.received()) == 3
        assert 298 <= paused_for(endpoint) <= 300
        # The oldest delivery went first each time, a failed attempt each time; the rest wait.
        assert sorted(Delivery.objects.values_list("attempts", flat=True)) == [0, 0, 0, 0, 3]
        assert set(Delivery.objects.values_list("status", flat=True)) == {"pending"}

        # Once it answers again (the script is used up: 200), everything flows.
        end_the_pause(endpoint)
        drain()
    assert Delivery.objects.filter(status="succeeded").count() == 5
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None and endpoint.consecutive_failures == 0


# --- head-of-line blocking and the circuit breaker -------------------------------------------


def test_a_slow_endpoint_never_delays_a_healthy_one(receiver: Receiver) -> None:
    receiver.script("/slow", *[Reply(200, delay=3) for _ in range(20)])
    slow = make_endpoint(receiver.url("/slow"))
    healthy = make_endpoint(receiver.url("/healthy"))
    publish(count=20)
    started = time.time()
    with override_webhooks(TIMEOUT=1, READ_TIMEOUT=1):
        drain(time_limit=0.1)
    took = time.time() - started
    healthy_times = [r.at - started for r in receiver.received("/healthy")]
    assert len(healthy_times) == 20
    assert max(healthy_times) < 0.9  # all of them before the slow one's first timeout ended
    # The slow endpoint cost one timeout, not twenty: the rest of its share was handed back.
    assert took < 5, took
    assert len(receiver.received("/slow")) == 1
    assert DeliveryAttempt.objects.filter(endpoint=slow).count() == 1
    assert Delivery.objects.filter(endpoint=slow, attempts=0, status="pending").count() == 19
    assert Delivery.objects.filter(endpoint=healthy, status="succeeded").count() == 20


def test_a_hanging_endpoint_does_not_hold_up_the_next_batches(receiver: Receiver) -> None:
    receiver.script("/slow", *[Reply(200, delay=3) for _ in range(40)])
    make_endpoint(receiver.url("/slow"))
    make_endpoint(receiver.url("/healthy"))
    publish(count=30)
    started = time.time()
    # Small batches: the healthy endpoint's 30 deliveries need several claims, while the
    # hanging one's shares straggle on their threads until their 1 s timeout.
    with override_webhooks(TIMEOUT=1, READ_TIMEOUT=1, BATCH_SIZE=6):
        drain(time_limit=2)
    healthy = [r.at - started for r in receiver.received("/healthy")]
    assert len(healthy) == 30
    assert max(healthy) < 0.9, sorted(healthy)  # never waited for a timeout to end
    assert Delivery.objects.filter(endpoint__url__endswith="/healthy",
                                   status="succeeded").count() == 30
    # Every share of the hanging endpoint was recorded before drain() returned.
    assert not Delivery.objects.filter(claim_token__isnull=False,
                                       next_attempt_at__gt=timezone.now()).exists()
    assert DeliveryAttempt.objects.filter(error_class__in=["read_timeout", "timeout"]).exists()


def test_the_circuit_opens_then_probes_one_at_a_time(receiver: Receiver) -> None:
    receiver.script("/hook", *[Reply(500) for _ in range(4)])
    endpoint = make_endpoint(receiver.url())
    publish(count=10)
    with override_webhooks(CIRCUIT_BREAKER_THRESHOLD=3, CIRCUIT_BREAKER_COOLDOWN=30):
        drain()
        assert len(receiver.received()) == 3  # three failures in a row, then it stopped
        endpoint.refresh_from_db()
        assert endpoint.pause_reason == "circuit_open"
        assert endpoint.paused_until is not None
        first_pause = (endpoint.paused_until - timezone.now()).total_seconds()
        assert 25 <= first_pause <= 31
        # While open, nothing goes, retries included.
        Delivery.objects.update(next_attempt_at=timezone.now())
        assert claim().deliveries == []
        # Cooldown over: exactly one probe. It fails: open again.
        Endpoint.objects.filter(pk=endpoint.pk).update(paused_until=timezone.now())
        Delivery.objects.update(next_attempt_at=timezone.now())
        drain()
        assert len(receiver.received()) == 4
        endpoint.refresh_from_db()
        assert endpoint.pause_reason == "circuit_open"
        assert endpoint.paused_until is not None and endpoint.paused_until > timezone.now()
        # The next probe succeeds (the script is used up: 200): the circuit closes and the
        # backlog flows.
        Endpoint.objects.filter(pk=endpoint.pk).update(paused_until=timezone.now())
        Delivery.objects.update(next_attempt_at=timezone.now())
        drain()
        probe_ok = claim()
        assert probe_ok.deliveries == []
        endpoint.refresh_from_db()
        assert (endpoint.pause_reason, endpoint.paused_until) == ("", None)
        Delivery.objects.filter(status="pending").update(next_attempt_at=timezone.now())
        drain()
    assert Delivery.objects.filter(status="succeeded").count() == 10


def test_a_disabled_circuit_breaker_sends_everything(receiver: Receiver) -> None:
    # 500 and 503 are plain failures: unlike 429, 502 and 504, they do not pause.
    receiver.script("/hook", *[Reply(500), Reply(503)] * 5)
    endpoint = make_endpoint(receiver.url())
    publish(count=10)
    with override_webhooks(CIRCUIT_BREAKER_THRESHOLD=None):
        drain()
    assert len(receiver.received()) == 10
    endpoint.refresh_from_db()
    assert endpoint.pause_reason == "" and endpoint.paused_until is None


# --- where staff and owners see and set it ---------------------------------------------------


def test_the_api_sets_a_concurrency_limit_and_shows_a_pause(receiver: Receiver) -> None:
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    user = get_user_model().objects.create_user("owner", password="pw")
    client = APIClient()
    client.force_authenticate(user)
    created = client.post("/api/webhooks/endpoints/", {
        "url": "https://example.com/hook", "events": ["*"], "max_concurrency": 2,
    }, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["max_concurrency"], body["paused_until"], body["pause_reason"]) == (2, None, "")
    bad = client.patch(f"/api/webhooks/endpoints/{body['id']}/", {"max_concurrency": 0},
                       format="json")
    assert bad.status_code == 400 and "max_concurrency" in bad.json()
    # Pause state is the engine's: a client cannot write it.
    Endpoint.objects.filter(pk=Endpoint.parse_id(body["id"])).update(
        paused_until=timezone.now() + timedelta(minutes=5), pause_reason="circuit_open")
    client.patch(f"/api/webhooks/endpoints/{body['id']}/",
                 {"pause_reason": "", "paused_until": None}, format="json")
    shown = client.get(f"/api/webhooks/endpoints/{body['id']}/").json()
    assert shown["pause_reason"] == "circuit_open" and shown["paused_until"] is not None


def test_an_admin_edit_never_overwrites_the_engines_state(admin_client: object) -> None:
    endpoint = make_endpoint("https://example.com/hook", rate_limit=5)
    page = admin_client.get(f"/admin/webhooks/endpoint/{endpoint.pk}/change/")  # type: ignore[attr-defined]
    assert page.status_code == 200
    # A worker pauses the endpoint after the page was loaded...
    until = timezone.now() + timedelta(minutes=5)
    Endpoint.objects.filter(pk=endpoint.pk).update(
        paused_until=until, pause_reason="circuit_open", consecutive_failures=7)
    response = admin_client.post(f"/admin/webhooks/endpoint/{endpoint.pk}/change/", {  # type: ignore[attr-defined]
        "url": "https://example.com/hook", "description": "edited", "owner": "",
        "is_active": "on", "events": ["*"], "payload_fields": "", "headers": "{}",
        "rate_limit": "5", "max_concurrency": "3",
    })
    assert response.status_code == 302, response.content[:2000]
    endpoint.refresh_from_db()
    assert (endpoint.description, endpoint.max_concurrency) == ("edited", 3)
    assert (endpoint.pause_reason, endpoint.consecutive_failures) == ("circuit_open", 7)
    assert endpoint.paused_until == until


# --- sharing a backlog between workers -------------------------------------------------------


@pytest.mark.parametrize(("events", "workers", "helpers"),
                         [(5, 4, 0), (15, 4, 1), (35, 4, 3), (500, 4, 3), (500, 1, 0)])
def test_a_dispatch_calls_helpers_for_a_backlog(monkeypatch: pytest.MonkeyPatch,
                                                enqueued: list[tuple[str, tuple[object, ...]]],
                                                receiver: Receiver, events: int,
                                                workers: int, helpers: int) -> None:
    from django_q.conf import Conf

    make_endpoint(receiver.url())
    publish(count=events)
    enqueued.clear()
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "WORKERS", workers)
    with override_webhooks(BATCH_SIZE=10):
        assert tasks.call_helpers() == helpers
    assert enqueued == [("drain", ())] * helpers


@pytest.mark.parametrize(("events", "helpers"), [(5, 0), (35, 3)])
def test_a_dispatch_counts_what_is_due_only_after_a_fan_out_of_more_than_a_batch(
        monkeypatch: pytest.MonkeyPatch, enqueued: list[tuple[str, tuple[object, ...]]],
        receiver: Receiver, events: int, helpers: int) -> None:
    from django_q.conf import Conf

    import webhooks

    make_endpoint(receiver.url())
    for n in range(events):
        webhooks.send_event("invoice.paid", {"n": n})
    counted: list[int] = []
    real = tasks.call_helpers

    def counting() -> int:
        counted.append(real())
        return counted[-1]

    monkeypatch.setattr(tasks, "call_helpers", counting)
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "WORKERS", 4)
    enqueued.clear()
    with override_webhooks(BATCH_SIZE=10):
        tasks.dispatch()
    assert counted == ([helpers] if helpers else [])
    assert enqueued.count(("drain", ())) == helpers
    assert Delivery.objects.filter(status="succeeded").count() == events


@pytest.mark.parametrize("deliveries", [1, 40])
def test_a_claim_runs_the_same_queries_whatever_its_size(
        django_assert_num_queries: Any, receiver: Receiver, deliveries: int) -> None:
    # A claim that takes every row it chose reads them once: the candidates (with their
    # endpoints' flow-control columns), then the events and the endpoints.
    make_endpoint(receiver.url())
    publish(count=deliveries)
    from django.db import connection

    locking = connection.features.has_select_for_update_skip_locked
    # SELECT, UPDATE, events, endpoints (+ the savepoint pair inside the test's transaction)
    with django_assert_num_queries(6 if locking else 4):
        batch = claim(100)
    assert len(batch.deliveries) == deliveries
    assert {d.claim_token for d in batch.deliveries} == {batch.token}
    assert [d.created_at for d in batch.deliveries] == sorted(d.created_at
                                                              for d in batch.deliveries)
    assert all(d.event.pk == d.event_id and d.endpoint.pk == d.endpoint_id
               for d in batch.deliveries)
