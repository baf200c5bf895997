"""Sending: wire format, retries, terminal states, claims and signals, against a real receiver."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone
from standardwebhooks import Webhook

import webhooks
from tests.factories import make_due, make_endpoint, make_user, publish
from tests.helpers import override_webhooks
from tests.receiver import Receiver, Reply
from tests.testapp.models import Order
from webhooks.conf import webhooks_settings
from webhooks.delivery.claims import claim
from webhooks.delivery.fanout import FAN_OUT_CHUNK, fan_out
from webhooks.delivery.loop import deliver, drain
from webhooks.delivery.sending import parse_retry_after, retry_delay
from webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event
from webhooks.services import retry_deliveries, send_test_event
from webhooks.signals import delivery_failed, delivery_succeeded, endpoint_disabled

pytestmark = pytest.mark.django_db


def test_wire_format(receiver: Receiver) -> None:
    endpoint = make_endpoint(receiver.url(), "invoice.paid",
                             headers={"Authorization": "Bearer t0k3n", "X-Tenant": "7"})
    event = publish(data={"invoice": 1})
    drain()
    (request,) = receiver.received()
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"django-webhooks/{webhooks.__version__}"
    assert request.headers["webhook-id"] == event.public_id
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 5
    assert request.headers["authorization"] == "Bearer t0k3n"
    assert request.headers["x-tenant"] == "7"
    body = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert body == {"id": event.public_id, "type": "invoice.paid",
                    "timestamp": json.loads(event.payload)["timestamp"],
                    "data": {"invoice": 1}}
    (attempt,) = DeliveryAttempt.objects.all()
    assert attempt.status_code == 200
    assert attempt.response_body == "ok"
    assert attempt.duration > 0
    assert attempt.request_headers["Authorization"] == "••••••"  # custom values masked
    assert attempt.request_headers["webhook-id"] == event.public_id
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("succeeded", 1,
                                                                                None)
    endpoint.refresh_from_db()
    assert endpoint.last_success_at is not None and endpoint.consecutive_failures == 0


def test_custom_headers_never_override_ours(receiver: Receiver) -> None:
    endpoint = make_endpoint(receiver.url(), headers={
        "webhook-signature": "v1,forged", "Content-Type": "text/plain",
        "WEBHOOK-ID": "evt_fake", "User-Agent": "evil",
    })
    publish()
    drain()
    (request,) = receiver.received()
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"].startswith("evt_") and "fake" not in \
        request.headers["webhook-id"]
    assert "forged" not in request.headers["webhook-signature"]
    Webhook(endpoint.secret).verify(request.body, request.headers)


def test_retries_keep_the_webhook_id_and_follow_the_schedule(receiver: Receiver) -> None:
    receiver.script("/hook", Reply(500, b"boom"), Reply(503), Reply(200))
    make_endpoint(receiver.url())
    event = publish()
    failures: list[Any] = []
    delivery_failed.connect(lambda **kw: failures.append(kw), weak=False,
                            dispatch_uid="t-failed")
    try:
        before = timezone.now()
        drain()
        delivery = Delivery.objects.get()
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            "pending", 1, 500)
        assert delivery.last_error == "http_status: HTTP 500"
        # RETRY_SCHEDULE is [1, 1] with no jitter in the test settings.
        assert before + timedelta(seconds=1) <= delivery.next_attempt_at
        assert delivery.next_attempt_at <= timezone.now() + timedelta(seconds=1)
        assert delivery.claim_token is None
        drain()
        assert len(receiver.received()) == 1  # not due yet
        make_due(delivery)
        drain()
        make_due(delivery)
        drain()
    finally:
        delivery_failed.disconnect(dispatch_uid="t-failed")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 3)
    ids = {r.headers["webhook-id"] for r in receiver.received()}
    assert ids == {event.public_id}
    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.received()]
    assert stamps == sorted(stamps)
    assert list(delivery.attempt_log.order_by("number").values_list("status_code", flat=True)) \
        == [500, 503, 200]
    assert failures == []
    endpoint = Endpoint.objects.get()
    assert endpoint.consecutive_failures == 0 and endpoint.failing_since is None


def test_an_exhausted_schedule_fails_the_delivery_and_signals(receiver: Receiver) -> None:
    receiver.script("/hook", *[Reply(500)] * 3)
    make_endpoint(receiver.url())
    publish()
    failures: list[Any] = []
    delivery_failed.connect(lambda **kw: failures.append(kw), weak=False,
                            dispatch_uid="t-failed")
    try:
        for _ in range(3):
            make_due(*Delivery.objects.all())
            drain()
    finally:
        delivery_failed.disconnect(dispatch_uid="t-failed")
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)
    assert len(failures) == 1
    assert failures[0]["delivery"].pk == delivery.pk
    assert failures[0]["attempt"].number == 3
    endpoint = Endpoint.objects.get()
    assert endpoint.consecutive_failures == 3
    assert endpoint.failing_since is not None and endpoint.is_active
    # Still retryable by hand.
    receiver.script("/hook", Reply(204))
    assert retry_deliveries(Delivery.objects.all()) == 1
    drain()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 4)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_failures_and_not_followed(receiver: Receiver, status: int) -> None:
    receiver.script("/hook", Reply(status, headers={"Location": receiver.url("/other")}))
    make_endpoint(receiver.url())
    publish()
    drain()
    assert [r.path for r in receiver.received()] == ["/hook"]
    attempt = DeliveryAttempt.objects.get()
    assert (attempt.status_code, attempt.error_class) == (status, "redirect")
    assert Delivery.objects.get().status == "pending"


def test_410_gone_disables_the_endpoint_at_once(receiver: Receiver) -> None:
    receiver.script("/hook", Reply(410))
    endpoint = make_endpoint(receiver.url())
    publish()
    publish()
    disabled: list[Any] = []
    endpoint_disabled.connect(lambda **kw: disabled.append(kw), weak=False,
                              dispatch_uid="t-disabled")
    try:
        drain()
    finally:
        endpoint_disabled.disconnect(dispatch_uid="t-disabled")
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert "410" in endpoint.disabled_reason
    assert len(receiver.received()) == 1  # the second delivery is not sent
    assert sorted(Delivery.objects.values_list("status", flat=True)) == ["failed", "failed"]
    assert [kw["endpoint"].pk for kw in disabled] == [endpoint.pk]
    # A disabled endpoint gets no new deliveries.
    publish()
    assert Delivery.objects.count() == 2


def test_retry_after_is_honoured_within_bounds(receiver: Receiver) -> None:
    receiver.script("/hook", Reply(429, headers={"Retry-After": "100000"}))
    make_endpoint(receiver.url())
    publish()
    with override_webhooks(RETRY_SCHEDULE=[60], RETRY_JITTER=0):
        start = timezone.now()
        drain()
    delay = (Delivery.objects.get().next_attempt_at - start).total_seconds()
    assert 119 <= delay <= 121  # capped at twice the scheduled delay


@override_webhooks(RETRY_SCHEDULE=[60, 60], RETRY_JITTER=0)
@pytest.mark.parametrize("status,header,expected", [
    (429, "90", 90),
    (503, "90", 90),
    (429, "5", 60),          # never sooner than the schedule
    (429, "999999", 120),    # never later than twice the schedule
    (429, "soon", 60),       # garbage is ignored
    (429, "-5", 60),
    (500, "90", 60),         # only 429 and 503 are honoured
    (429, "Wed, 21 Oct 2015 07:28:00 GMT", 60),  # a date in the past
])
def test_retry_delay_bounds(status: int, header: str, expected: float) -> None:
    assert retry_delay(1, status, header) == pytest.approx(expected, abs=1)


@override_webhooks(RETRY_SCHEDULE=[10, 20], RETRY_JITTER=0.1)
def test_jitter_only_stretches_delays() -> None:
    delays = [retry_delay(2, 500, None) for _ in range(200)]
    assert all(20 <= d <= 22 for d in delays)
    assert len(set(delays)) > 1
    assert retry_delay(3, 500, None) is None


@override_settings(WEBHOOKS={})
def test_the_default_schedule_retries_for_days_and_starts_quick() -> None:
    """Standard Webhooks recommends retrying over several days, Stripe retries for 3: the
    default schedule spans at least 3 days, its first retries still come within minutes, and
    a delivery's whole schedule ends before its failures alone could disable the endpoint
    (``DISABLE_AFTER``) and well inside ``REPLAY_WINDOW``."""
    schedule = list(webhooks_settings.RETRY_SCHEDULE)
    assert schedule[:3] == [5, 300, 1800]
    delays = []
    while (delay := retry_delay(len(delays) + 1, 500, None)) is not None:
        delays.append(delay)
    assert len(delays) == len(schedule)
    assert sum(schedule) >= 3 * 24 * 3600  # jitter only ever adds to it
    longest = sum(schedule) * (1 + webhooks_settings.RETRY_JITTER)
    assert sum(delays) <= longest < webhooks_settings.DISABLE_AFTER
    assert longest < webhooks_settings.REPLAY_WINDOW / 2


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Tue, 14 Nov 2023 22:15:00 GMT", now=now) == 100
    assert parse_retry_after("") is None
    assert parse_retry_after("1e3") is None
    assert parse_retry_after("Tue, 14 Nov 2023 22:15:20", now=now) is None


def test_connection_refused_is_a_retried_failure() -> None:
    with Receiver() as dead:
        url = dead.url()
    make_endpoint(url)
    publish()
    drain()
    attempt = DeliveryAttempt.objects.get()
    assert attempt.status_code is None
    assert attempt.error_class == "connection_refused"
    assert Delivery.objects.get().status == "pending"


@override_webhooks(TIMEOUT=1, READ_TIMEOUT=0.5, CONNECT_TIMEOUT=0.5, CLAIM_TTL=10)
def test_a_silent_receiver_times_out(receiver: Receiver) -> None:
    receiver.script("/hook", Reply(200, delay=2))
    make_endpoint(receiver.url())
    publish()
    started = time.monotonic()
    drain()
    assert time.monotonic() - started < 2
    attempt = DeliveryAttempt.objects.get()
    assert attempt.error_class == "read_timeout"
    assert attempt.status_code is None


@override_webhooks(MAX_RESPONSE_BYTES=1000, STORED_RESPONSE_BYTES=100)
def test_response_bodies_are_capped(receiver: Receiver) -> None:
    receiver.script("/hook", Reply(200, body=b"x" * 50_000))
    make_endpoint(receiver.url())
    publish()
    drain()
    attempt = DeliveryAttempt.objects.get()
    assert attempt.response_body == "x" * 100
    assert Delivery.objects.get().status == "succeeded"


def test_owner_routing_end_to_end(receiver: Receiver) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    make_endpoint(receiver.url("/alice"), "order.created", owner=alice)
    make_endpoint(receiver.url("/bob"), "order.created", owner=bob)
    make_endpoint(receiver.url("/site"), "order.created")
    make_endpoint(receiver.url("/site-all"), "*")
    make_endpoint(receiver.url("/other-type"), "order.deleted")
    make_endpoint(receiver.url("/inactive"), "*", is_active=False)
    order = Order.objects.create(customer=alice)
    fan_out()
    drain()
    paths = sorted(r.path for r in receiver.received())
    assert paths == ["/alice", "/site", "/site-all"]
    assert all(json.loads(r.body)["data"]["id"] == order.pk for r in receiver.received())


def test_fan_out_is_idempotent() -> None:
    make_endpoint("https://example.com/a")
    make_endpoint("https://example.com/b")
    event = webhooks.send_event("invoice.paid", {})
    assert fan_out([str(event.id)]) == 1
    Event.objects.update(dispatched_at=None)  # as if a second worker raced the first
    assert fan_out([str(event.id)]) == 1
    assert Delivery.objects.count() == 2
    assert fan_out([str(event.id)]) == 0


def test_rotation_signs_with_both_secrets_during_the_grace_period(receiver: Receiver) -> None:
    endpoint = make_endpoint(receiver.url())
    old = endpoint.secret
    new = endpoint.rotate_secret(timedelta(hours=1))
    assert new != old and endpoint.secret == new
    publish()
    drain()
    (request,) = receiver.received()
    assert len(request.headers["webhook-signature"].split()) == 2
    for secret in (old, new):
        Webhook(secret).verify(request.body, request.headers)
    Endpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1))
    publish()
    drain()
    second = receiver.received()[1]
    assert len(second.headers["webhook-signature"].split()) == 1
    Webhook(new).verify(second.body, second.headers)


@override_webhooks(DISABLE_AFTER=3600, DISABLE_AFTER_FAILURES=3,
                             RETRY_SCHEDULE=[1] * 10)
def test_an_endpoint_that_keeps_failing_is_disabled(receiver: Receiver) -> None:
    receiver.script("/hook", *[Reply(500)] * 10)
    endpoint = make_endpoint(receiver.url())
    publish()
    disabled: list[Any] = []
    endpoint_disabled.connect(lambda **kw: disabled.append(kw), weak=False,
                              dispatch_uid="t-disabled")
    try:
        for _ in range(3):
            make_due(*Delivery.objects.all())
            drain()
        endpoint.refresh_from_db()
        assert endpoint.is_active  # three failures, but only for a moment
        Endpoint.objects.update(failing_since=timezone.now() - timedelta(hours=2))
        make_due(*Delivery.objects.all())
        drain()
    finally:
        endpoint_disabled.disconnect(dispatch_uid="t-disabled")
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert "failed for 1 hour " in endpoint.disabled_reason
    assert len(disabled) == 1 and disabled[0]["reason"] == endpoint.disabled_reason
    # Its pending delivery is not sent any more; it fails without a request.
    make_due(*Delivery.objects.all())
    drain()
    assert len(receiver.received()) == 4
    assert Delivery.objects.get().status == "failed"


def test_signals_on_success_and_a_raising_receiver_is_contained(receiver: Receiver) -> None:
    make_endpoint(receiver.url())
    publish()
    seen: list[Any] = []

    def explode(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    delivery_succeeded.connect(explode, weak=False, dispatch_uid="t-explode")
    delivery_succeeded.connect(lambda **kw: seen.append(kw), weak=False, dispatch_uid="t-ok")
    try:
        drain()
    finally:
        delivery_succeeded.disconnect(dispatch_uid="t-explode")
        delivery_succeeded.disconnect(dispatch_uid="t-ok")
    assert len(seen) == 1
    assert seen[0]["attempt"].status_code == 200
    assert Delivery.objects.get().status == "succeeded"


def test_claims_never_overlap_and_expire() -> None:
    make_endpoint("https://example.com/hook")
    for _ in range(5):
        publish()
    first = claim(3)
    second = claim(3)
    third = claim(3)
    assert len(first.deliveries) == 3 and len(second.deliveries) == 2
    assert third.deliveries == []
    assert not {d.pk for d in first.deliveries} & {d.pk for d in second.deliveries}
    # The lease ends: a worker that died is replaced.
    Delivery.objects.filter(claim_token=first.token).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1))
    fourth = claim(10)
    assert {d.pk for d in fourth.deliveries} == {d.pk for d in first.deliveries}


def test_a_worker_whose_claim_was_taken_over_does_not_overwrite_the_new_owner(
    receiver: Receiver,
) -> None:
    make_endpoint(receiver.url())
    publish()
    stale = claim()
    Delivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    fresh = claim()
    deliver(fresh)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    receiver.script("/hook", Reply(500))
    deliver(stale)  # the stale worker wakes up and sends (at least once)...
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)  # ...but changes nothing
    assert DeliveryAttempt.objects.count() == 2  # both requests are on record


def test_a_batch_releases_what_no_longer_fits_in_its_lease(receiver: Receiver) -> None:
    make_endpoint(receiver.url())
    publish()
    publish()
    batch = claim()
    batch.deadline = time.monotonic() + 1  # less than TIMEOUT left
    deliver(batch)
    assert receiver.received() == []
    assert all(d.claim_token is None and d.status == "pending" and d.attempts == 0
               for d in Delivery.objects.all())
    assert Delivery.objects.due().count() == 2


def test_test_events_go_to_one_endpoint_only(receiver: Receiver) -> None:
    user = make_user()
    endpoint = make_endpoint(receiver.url("/one"), "order.created", owner=user)
    make_endpoint(receiver.url("/two"), "*")
    delivery = send_test_event(endpoint)
    drain()
    (request,) = receiver.received()
    assert request.path == "/one"
    body = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert body["type"] == "webhook.test"
    assert body["data"]["endpoint_id"] == endpoint.public_id
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert delivery.event.owner_id == user.pk


def test_sweep_recovers_events_whose_task_was_lost(receiver: Receiver,
                                                   enqueued: list[Any]) -> None:
    from webhooks import tasks

    make_endpoint(receiver.url())
    event = webhooks.send_event("invoice.paid", {"lost": True})
    tasks.sweep()
    assert receiver.received() == []  # too young: its own task may still be on the way
    Event.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    tasks.sweep()
    (request,) = receiver.received()
    assert request.headers["webhook-id"] == event.public_id


def test_drain_hands_over_when_its_time_is_up(receiver: Receiver, enqueued: list[Any]) -> None:
    from webhooks import tasks

    make_endpoint(receiver.url())
    for _ in range(3):
        publish()
    with override_webhooks(BATCH_SIZE=1, TASK_TIME_LIMIT=0.0001):
        tasks.drain()
    assert len(receiver.received()) == 1
    assert enqueued == [("drain", ())]


@pytest.mark.django_db(transaction=True)
def test_the_whole_pipeline_in_sync_mode(receiver: Receiver) -> None:
    """A real commit runs the on-commit hook, which runs the task inline (Q_CLUSTER sync)."""
    user = make_user()
    endpoint = make_endpoint(receiver.url(), "order.created", "order.updated", owner=user)
    order = Order.objects.create(customer=user, total="5.00")
    order.status = "paid"
    order.save()
    requests = receiver.wait_for(2)
    bodies = [Webhook(endpoint.secret).verify(r.body, r.headers) for r in requests]
    assert [b["type"] for b in bodies] == ["order.created", "order.updated"]
    assert bodies[1]["data"]["status"] == "paid"
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_a_near_retry_schedules_a_wakeup_and_a_far_one_is_left_to_the_sweep(
    receiver: Receiver,
) -> None:
    from django_q.models import Schedule

    from webhooks import tasks

    receiver.script("/hook", Reply(500), Reply(500))
    make_endpoint(receiver.url())
    publish()
    tasks.drain()
    (wakeup,) = Schedule.objects.filter(name="webhooks.wakeup")
    delivery = Delivery.objects.get()
    assert wakeup.next_run == delivery.next_attempt_at
    assert (wakeup.func, wakeup.schedule_type) == ("webhooks.tasks.drain", Schedule.ONCE)
    # An earlier retry moves the one wake-up earlier; a later one leaves it.
    earlier = wakeup.next_run - timedelta(seconds=1)
    tasks.schedule_wakeup(earlier)
    tasks.schedule_wakeup(earlier + timedelta(seconds=30))
    assert list(Schedule.objects.filter(name="webhooks.wakeup").values_list(
        "next_run", flat=True)) == [earlier]
    Schedule.objects.filter(name="webhooks.wakeup").delete()
    with override_webhooks(RETRY_SCHEDULE=[3600, 3600]):
        make_due(delivery)
        tasks.drain()
    assert not Schedule.objects.filter(name="webhooks.wakeup").exists()


def test_a_transaction_with_more_events_than_one_fan_out_round_is_dispatched_whole(
    enqueued: list[Any],
) -> None:
    from django.db import transaction

    from webhooks import tasks

    make_endpoint("https://example.com/hook", "ping.sent")
    with transaction.atomic():
        events = [webhooks.send_event("ping.sent", {"n": i})
                  for i in range(FAN_OUT_CHUNK + 500)]
    with override_webhooks(TASK_TIME_LIMIT=0.0001):
        tasks.dispatch()
    assert not Event.objects.undispatched().exists()
    assert Delivery.objects.count() == len(events)


@pytest.mark.django_db(transaction=True)
def test_enqueueing_on_the_orm_broker_keeps_the_callers_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """django-q2's ORM broker closes "old" connections when called outside a transaction,
    which would be the web request's own connection after every commit."""
    from django.db import connection
    from django_q.conf import Conf
    from django_q.models import OrmQ

    if not Conf.ORM:
        pytest.skip("the ORM broker is not in use")
    monkeypatch.setattr(Conf, "SYNC", False)
    from webhooks.models import DispatchToken

    Order.objects.create(total="1")  # commits and enqueues
    before = connection.connection
    assert before is not None
    DispatchToken.objects.all().delete()  # as if a worker had started the task
    Order.objects.create(total="2")
    assert connection.connection is before
    assert OrmQ.objects.count() == 2


def test_replay_resends_failures_and_what_a_disabled_endpoint_missed(
    receiver: Receiver, enqueued: list[Any],
) -> None:
    from webhooks.services import replay

    alice, bob = make_user("alice"), make_user("bob")
    endpoint = make_endpoint(receiver.url(), "order.created", owner=alice)
    receiver.script("/hook", Reply(410))
    Order.objects.create(customer=alice)
    fan_out()
    drain()  # 410: disabled, delivery failed
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    Order.objects.create(customer=alice)  # missed while disabled
    Order.objects.create(customer=bob)    # never Alice's
    webhooks.send_event("invoice.paid", {}, owner=alice)  # not subscribed
    fan_out()
    since = timezone.now() - timedelta(hours=1)
    assert replay(endpoint, since) == (1, 0)  # disabled: failures only, nothing added
    Delivery.objects.filter(endpoint=endpoint).update(status="failed")
    Endpoint.objects.filter(pk=endpoint.pk).update(is_active=True)
    endpoint.refresh_from_db()
    assert replay(endpoint, since) == (1, 1)
    drain()
    bodies = [json.loads(r.body) for r in receiver.received()[1:]]
    assert sorted(b["type"] for b in bodies) == ["order.created", "order.created"]
    assert {b["data"]["customer"] for b in bodies} == {alice.pk}
    with pytest.raises(ValueError, match="at most"):
        replay(endpoint, timezone.now() - timedelta(days=15))


def test_every_attempt_is_logged_with_its_fields_and_signalled(
    receiver: Receiver, caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from webhooks.signals import delivery_attempted

    receiver.script("/hook", Reply(500))
    endpoint = make_endpoint(receiver.url())
    event = publish()
    seen: list[Any] = []
    delivery_attempted.connect(lambda **kw: seen.append(kw), weak=False, dispatch_uid="t-att")
    caplog.set_level(logging.INFO, logger="webhooks")
    try:
        drain()
        make_due(*Delivery.objects.all())
        drain()
    finally:
        delivery_attempted.disconnect(dispatch_uid="t-att")
    records = [r for r in caplog.records if hasattr(r, "webhook_event_id")]
    assert [r.webhook_status for r in records] == ["retrying", "succeeded"]
    assert [r.levelname for r in records] == ["WARNING", "INFO"]
    first = records[0]
    assert first.webhook_event_id == event.public_id
    assert first.webhook_endpoint_id == endpoint.public_id
    assert (first.webhook_attempt, first.webhook_status_code) == (1, 500)
    assert first.webhook_duration_ms is not None
    assert event.public_id in first.getMessage()
    assert "attempt 1: retrying (500 http_status) in " in first.getMessage()
    assert "attempt 2: succeeded (200) in " in records[1].getMessage()  # no stray space
    assert [(kw["succeeded"], kw["final"]) for kw in seen] == [(False, False), (True, True)]


@pytest.mark.django_db(transaction=True)
def test_concurrent_fan_outs_take_different_events(postgres: None, enqueued: list[Any]) -> None:
    """Two dispatch tasks at once: the events one of them is fanning out (its rows locked) are
    skipped by the other, not fanned out and marked twice (issue 16: each event row was
    updated up to 4.5 times with 6 workers)."""
    import psycopg
    from django.db import connection

    make_endpoint("https://example.com/h", "order.created")
    Order.objects.create(total="1")
    Order.objects.create(total="2")
    busy = Event.objects.order_by("created_at")[0]
    settings = connection.settings_dict
    other = psycopg.connect(host=settings["HOST"] or "127.0.0.1",
                            port=int(settings["PORT"] or 5432), user=settings["USER"] or None,
                            dbname=settings["NAME"])
    try:
        other.execute("SELECT id FROM webhooks_event WHERE id = %s FOR UPDATE", [busy.id])
        assert fan_out() == 1  # the other one only
        assert Event.objects.get(pk=busy.pk).dispatched_at is None
        other.rollback()  # the other task is done with it (here: gave it back)
        assert fan_out() == 1
    finally:
        other.close()
    assert not Event.objects.undispatched().exists()
    assert Delivery.objects.count() == 2
