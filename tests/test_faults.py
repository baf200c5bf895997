"""Faults for real: a worker killed mid-batch, a broker that goes down, a task that is lost, a
database that restarts, two clusters racing for thousands of deliveries.

Every test uses real ``qcluster`` processes and a loopback receiver (``tests/flaky.py``, which
notes when each request arrived and ended), is bounded in time, and ends by checking that
nothing is left in flight: every (event, endpoint) pair arrived, every copy a receiver got
carries its event's id, no two copies of a delivery were on the wire at once, and no delivery
is pending or still holds a claim. docs/reliability.md says what each one proves.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ

import webhooks
from tests.cluster import Cluster, wait_until
from tests.flaky import (
    Action,
    FlakyReceiver,
    Plan,
    Request,
    delivered_pairs,
    mismatched_ids,
    overlaps,
)
from tests.helpers import make_endpoint
from tests.testapp.models import Order
from webhooks import tasks
from webhooks.models import Delivery, DeliveryAttempt, DispatchToken, Event

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


# --- what every test checks at the end -------------------------------------------------------


def expected_pairs(paths: list[str], events: list[Event] | None = None) -> set[tuple[str, str]]:
    """``(path, webhook-id)`` of every event to every path (every event so far by default)."""
    events = list(Event.objects.all()) if events is None else events
    return {(path, event.public_id) for path in paths for event in events}


def all_delivered(receiver: FlakyReceiver, pairs: set[tuple[str, str]]) -> bool:
    """The receiver answered every pair with a 2xx, and the database recorded every delivery
    as succeeded (the 2xx may have reached a worker that died before recording it)."""
    return (pairs <= delivered_pairs(receiver.requests())
            and Delivery.objects.count() == len(pairs)
            and not Delivery.objects.exclude(status="succeeded").exists()
            and not Delivery.objects.exclude(claim_token=None).exists())


def assert_nothing_in_flight(receiver: FlakyReceiver, pairs: set[tuple[str, str]]) -> None:
    """After recovery: everything arrived, duplicates are true copies, nothing is stuck."""
    requests = receiver.requests()
    assert pairs <= delivered_pairs(requests)  # at least once, per (event, endpoint)
    assert {(r.path, r.webhook_id) for r in requests} <= pairs  # nothing else was sent
    assert mismatched_ids(requests) == []  # every copy carries its event's id
    assert overlaps(requests) == []  # two copies of a delivery are never on the wire at once
    assert not [r for r in requests if r.open]
    assert Delivery.objects.count() == len(pairs)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}
    assert not Delivery.objects.exclude(claim_token=None).exists()  # no claim left behind
    assert not Delivery.objects.exclude(next_attempt_at=None).exists()  # no pending lease
    assert not Event.objects.undispatched().exists()
    for delivery in Delivery.objects.all():  # every attempt a worker lived to record is there
        assert delivery.attempts == DeliveryAttempt.objects.filter(delivery=delivery).count()


def copies(requests: list[Request]) -> int:
    """Requests beyond the first per (path, webhook-id)."""
    return len(requests) - len({(r.path, r.webhook_id) for r in requests})


# --- a worker killed mid-batch ---------------------------------------------------------------


def test_a_worker_killed_mid_batch_loses_nothing(async_broker: None) -> None:
    answered: list[str] = []

    def third_one_hangs(request: Request, seen: bool) -> Action:
        if not seen:
            answered.append(request.webhook_id)
        return Action("hang", 60) if len(answered) == 3 and not seen else Action("ok")

    with FlakyReceiver(decide=third_one_hangs) as receiver:
        make_endpoint(receiver.url())
        with transaction.atomic():  # five deliveries, claimed together in one batch
            for i in range(5):
                Order.objects.create(total=f"{i}.00")
        first = Cluster().start()
        try:
            receiver.wait_until(lambda rs: any(r.outcome == "hang" for r in rs), 30,
                                "the third request")
            first.kill()  # SIGKILL the cluster and its workers while the request is in flight
        finally:
            first.stop()
        hung = next(r for r in receiver.requests() if r.outcome in ("hang", "lost"))
        receiver.wait_until(lambda rs: not hung.open, 10, "the dead worker's socket to close")
        events = {e.public_id: e for e in Event.objects.all()}
        delivery = Delivery.objects.get(event=events[hung.webhook_id])
        # No answer came, so nothing can have been recorded: the claim still holds it...
        assert delivery.status == "pending" and delivery.claim_token is not None
        lease_end = delivery.next_attempt_at
        assert lease_end is not None and lease_end > timezone.now()
        with Cluster() as second:
            # ...until the lease ends. Then any drain sends it again: here the task of the next
            # commit (the site keeps working), no manual step.
            wait_until(lambda: timezone.now() > lease_end, timeout=30)
            Order.objects.create(total="9.00")
            pairs = expected_pairs(["/hook"])
            wait_until(lambda: all_delivered(receiver, pairs), timeout=30)
            assert second.alive
        assert_nothing_in_flight(receiver, pairs)
        requests = receiver.requests()
        resent = [r for r in requests if r.webhook_id == hung.webhook_id]
        assert [r.outcome for r in resent] == ["lost", "ok"]
        assert resent[1].started > hung.done  # sent again only after the first copy ended
        assert Delivery.objects.get(pk=delivery.pk).attempts == 1  # the lost one is not counted


# --- a task lost from the ORM broker ---------------------------------------------------------


def test_a_task_lost_from_the_broker_is_recovered_by_the_scheduled_sweep(
    async_broker: None,
) -> None:
    if not Conf.ORM:
        pytest.skip("the ORM broker is not in use")
    with FlakyReceiver() as receiver:
        make_endpoint(receiver.url())
        for _ in range(3):
            Order.objects.create(total="1.00")
        assert OrmQ.objects.count() == 1  # one dispatch for the three commits
        OrmQ.objects.all().delete()  # the task is lost
        Order.objects.create(total="2.00")  # the token says a task is pending: nothing queued
        assert OrmQ.objects.count() == 0
        # Time passes (simulated: the sweep leaves anything younger than 30 s alone).
        old = timezone.now() - timedelta(minutes=5)
        Event.objects.update(created_at=old)
        DispatchToken.objects.update(created_at=old)
        pairs = expected_pairs(["/hook"])
        # No task is queued by hand: the cluster's scheduler runs the sweep schedule that
        # migrate created (its first pass comes about 30 s after the cluster starts).
        with Cluster() as cluster:
            wait_until(lambda: all_delivered(receiver, pairs), timeout=75)
            assert cluster.alive
        assert_nothing_in_flight(receiver, pairs)
        assert not DispatchToken.objects.exists()
        Order.objects.create(total="3.00")  # commits enqueue again
        assert OrmQ.objects.count() == 1


# --- the Redis broker goes down --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A Redis of our own (never the machine's shared one), and both sides pointed at it."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
               "--appendonly", "no"]
    state: dict[str, Any] = {"port": port, "url": f"redis://127.0.0.1:{port}/0"}

    def start() -> None:
        state["process"] = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
        wait_until(lambda: _answers(port), timeout=10)

    def stop() -> None:
        state["process"].send_signal(signal.SIGKILL)
        state["process"].wait(10)

    state.update(start=start, stop=stop)
    start()
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", state["url"])
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(tasks, "_brokers", {})
    try:
        yield state
    finally:
        if state["process"].poll() is None:
            stop()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def test_saves_succeed_while_the_broker_is_down_and_the_same_cluster_delivers_after(
    private_redis: dict[str, Any],
) -> None:
    with FlakyReceiver(Plan(delay=(0.0, 0.02))) as receiver:
        make_endpoint(receiver.url())
        with Cluster(REDIS_URL=private_redis["url"]) as cluster:
            Order.objects.create(total="1.00")
            receiver.wait_until(lambda rs: len(rs) == 1, 30, "the first delivery")
            private_redis["stop"]()  # the broker goes away (SIGKILL: its queue is lost)
            started = time.monotonic()
            for i in range(5):
                Order.objects.create(total=f"{i}.50")  # the user's saves still succeed
            assert time.monotonic() - started < 30
            assert Event.objects.undispatched().count() == 5
            assert not DispatchToken.objects.exists()  # no token stuck behind a failed enqueue
            time.sleep(2)  # the cluster's pusher fails meanwhile; the cluster stays up
            private_redis["start"]()  # the broker comes back, empty
            Order.objects.create(total="9.00")  # the next commit's task dispatches the backlog
            pairs = expected_pairs(["/hook"])
            assert len(pairs) == 7
            wait_until(lambda: all_delivered(receiver, pairs), timeout=60)
            assert cluster.alive  # the same cluster, never restarted
        assert_nothing_in_flight(receiver, pairs)


# --- the database restarts (PostgreSQL) ------------------------------------------------------


class DatabaseOutage:
    """A restart of the test database only: the server is shared with other test runs.

    ``begin()`` makes the database refuse new connections and terminates every connection to
    it but this process's own (the one this test keeps writing events with); ``end()`` lets
    connections in again.
    """

    def __init__(self) -> None:
        import psycopg

        settings = connection.settings_dict
        self.name = str(settings["NAME"])
        self.params = {"host": settings["HOST"] or "127.0.0.1",
                       "port": int(settings["PORT"] or 5432),
                       "user": settings["USER"] or None,
                       "password": settings["PASSWORD"] or None, "connect_timeout": 5}
        self.admin = psycopg.connect(dbname="postgres", autocommit=True, **self.params)
        self.down = False

    def _allow(self, allowed: bool) -> None:
        from psycopg import sql

        self.admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
            sql.Identifier(self.name), sql.SQL("true" if allowed else "false")))

    def begin(self) -> int:
        """Go down; returns how many connections were cut."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            own = cursor.fetchone()[0]
        self._allow(False)
        self.down = True
        cut = self.admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> %s", [self.name, own]).fetchall()
        return len(cut)

    def refuses_connections(self) -> bool:
        import psycopg

        try:
            psycopg.connect(dbname=self.name, **self.params).close()
        except psycopg.OperationalError:
            return True
        return False

    def end(self) -> None:
        if self.down:
            self._allow(True)
            self.down = False

    def close(self) -> None:
        self.end()
        self.admin.close()


def emit_events(seconds: float, every: float = 0.1) -> list[Event]:
    """One event per transaction, every ``every`` seconds, for ``seconds``."""
    events = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        events.append(webhooks.send_event("ping.sent", {"n": len(events)}))
        time.sleep(every)
    return events


def test_workers_recover_from_a_database_restart_without_help(
    postgres: None, async_broker: None
) -> None:
    paths = ["/a", "/b"]
    outage = DatabaseOutage()
    try:
        # Every answer takes a moment, so some deliveries are on the wire when it goes down.
        with FlakyReceiver(Plan(delay=(0.05, 0.2), seed=1)) as receiver:
            for path in paths:
                make_endpoint(receiver.url(path), "ping.sent")
            # One cluster reconnecting for every task (CONN_MAX_AGE = 0, Django's default),
            # one keeping its connections (docs/production.md's advice: CONN_MAX_AGE with
            # CONN_HEALTH_CHECKS).
            with Cluster() as plain, Cluster(WEBHOOKS_TEST_CONN_MAX_AGE="60",
                                             WEBHOOKS_TEST_CONN_HEALTH_CHECKS="1") as kept:
                before = emit_events(3)
                receiver.wait_until(lambda rs: len(rs) >= 10, 30, "deliveries before")
                cut = outage.begin()
                assert cut >= 1  # the persistent cluster's connections, at least
                during = emit_events(5)  # saves go on (on this process's own connection)
                assert outage.refuses_connections()
                outage.end()
                after = emit_events(2)
                pairs = expected_pairs(paths)
                assert len(pairs) == 2 * len(before + during + after)
                # The dispatch task queued during the outage failed: the sweep schedule
                # (every minute) finds its events and the expired claims; nothing is done by
                # hand.
                recovered = time.monotonic()
                wait_until(lambda: all_delivered(receiver, pairs), timeout=180)
                recovered = time.monotonic() - recovered
                assert plain.alive and kept.alive
            assert_nothing_in_flight(receiver, pairs)
            print(f"\ndatabase restart: {len(pairs)} pairs, {cut} connections cut, "
                  f"{len(receiver.requests())} requests ({copies(receiver.requests())} copies), "
                  f"everything delivered {recovered:.1f}s after the database came back")
    finally:
        outage.close()


# --- two clusters race for thousands of deliveries (PostgreSQL) ------------------------------


def test_two_clusters_never_send_two_copies_of_a_delivery_at_once(
    postgres: None, async_broker: None
) -> None:
    """1,000 events to 3 endpoints, 2 clusters of 4 workers, small batches, slow and failing
    answers: every pair arrives, and no two requests of one delivery ever overlap in time."""
    paths = ["/a", "/b", "/c"]
    plan = Plan(error=0.03, slow=0.02, slow_seconds=(0.1, 0.5), delay=(0.0, 0.004),
                first_only=True, seed=6)
    with FlakyReceiver(plan) as receiver:
        for path in paths:
            make_endpoint(receiver.url(path), "ping.sent")
        with transaction.atomic():  # a backlog first, so both clusters compete for it
            events = [webhooks.send_event("ping.sent", {"n": i}) for i in range(1000)]
        pairs = expected_pairs(paths, events)
        started = time.monotonic()
        with Cluster(workers=4, WEBHOOKS_TEST_BATCH_SIZE="20") as one, \
                Cluster(workers=4, WEBHOOKS_TEST_BATCH_SIZE="20") as two:
            wait_until(lambda: all_delivered(receiver, pairs), timeout=90, interval=0.5)
            assert one.alive and two.alive
        elapsed = time.monotonic() - started
        assert_nothing_in_flight(receiver, pairs)
        requests = receiver.requests()
        assert len(pairs) == 3000
        retried = {(r.path, r.webhook_id) for r in requests if not r.answered_ok}
        assert retried  # the failing answers were retried...
        assert retried <= delivered_pairs(requests)  # ...until they succeeded
        print(f"\ntwo clusters: {len(pairs)} pairs, {len(requests)} requests "
              f"({copies(requests)} copies), {elapsed:.1f}s")
