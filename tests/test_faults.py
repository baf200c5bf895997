"""Faults for real: a worker killed mid-request, a broker that is down, a task that is lost.

Each test uses real processes and a loopback receiver, and is bounded in time.
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
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.tasks import async_task

from tests.cluster import Cluster, wait_until
from tests.helpers import make_endpoint, make_user
from tests.receiver import Receiver, Reply
from tests.testapp.models import Order
from webhooks import tasks
from webhooks.models import Delivery, DispatchToken, Event

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def async_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Conf, "SYNC", False)


def test_a_worker_killed_mid_request_loses_nothing(async_broker: None,
                                                   receiver: Receiver) -> None:
    receiver.script("/hook", Reply(200, delay=30))  # the first request stalls
    make_endpoint(receiver.url())
    order = Order.objects.create(customer=make_user(), total="3.00")
    first = Cluster().start()
    try:
        receiver.wait_for(1, timeout=30)
        first.kill()  # SIGKILL the cluster and its workers while the request is in flight
    finally:
        first.stop()
    delivery = Delivery.objects.get()
    assert delivery.status == "pending" and delivery.attempts == 0  # nothing was recorded
    assert delivery.claim_token is not None  # still held by the dead worker's claim...
    lease_end = delivery.next_attempt_at
    assert lease_end is not None and lease_end > timezone.now()
    with Cluster():
        # ...until the lease ends; then any drain (the sweep, a wake-up, the next event's
        # task) sends it again. Here an explicit drain task is queued once it is due.
        wait_until(lambda: timezone.now() > lease_end, timeout=30)
        tasks.enqueue("drain")
        wait_until(lambda: Delivery.objects.filter(status="succeeded").exists(), timeout=30)
    requests = receiver.received()
    assert len(requests) == 2
    assert {r.headers["webhook-id"] for r in requests} == {Event.objects.get().public_id}
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.claim_token) == (1, None)
    assert f'"id":{order.pk}' in requests[1].body.decode()


def test_a_task_lost_from_the_broker_is_recovered_by_the_sweep(
    async_broker: None, receiver: Receiver
) -> None:
    if not Conf.ORM:
        pytest.skip("the ORM broker is not in use")
    make_endpoint(receiver.url())
    for _ in range(3):
        Order.objects.create(total="1.00")
    assert OrmQ.objects.count() == 1  # one dispatch for the three commits
    OrmQ.objects.all().delete()  # the task is lost
    Order.objects.create(total="2.00")  # the token says a task is pending: nothing queued
    assert OrmQ.objects.count() == 0
    # Time passes: the sweep sees a stale token and old undispatched events.
    old = timezone.now() - timedelta(minutes=5)
    Event.objects.update(created_at=old)
    DispatchToken.objects.update(created_at=old)
    with Cluster():
        async_task("webhooks.tasks.sweep", q_options={"save": False})  # what the schedule runs
        receiver.wait_for(4, timeout=30)
    assert not DispatchToken.objects.exists()
    assert Delivery.objects.filter(status="succeeded").count() == 4
    Order.objects.create(total="3.00")  # commits enqueue again
    assert OrmQ.objects.count() == 1


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


def test_saves_succeed_while_the_broker_is_down_and_everything_arrives_after(
    private_redis: dict[str, Any], receiver: Receiver
) -> None:
    make_endpoint(receiver.url())
    env = {"REDIS_URL": private_redis["url"]}
    with Cluster(**env):
        Order.objects.create(total="1.00")
        receiver.wait_for(1, timeout=30)
        private_redis["stop"]()  # the broker goes away
        started = time.monotonic()
        for i in range(5):
            Order.objects.create(total=f"{i}.50")  # the user's saves still succeed
        assert time.monotonic() - started < 30
        assert Event.objects.undispatched().count() == 5
        assert not DispatchToken.objects.exists()  # no token stuck behind a failed enqueue
        private_redis["start"]()  # the broker comes back (empty: queued tasks were lost)
    with Cluster(**env):
        Order.objects.create(total="9.00")  # the next commit's task dispatches the backlog
        receiver.wait_for(7, timeout=60)
    assert Delivery.objects.filter(status="succeeded").count() == 7
    assert len({r.headers["webhook-id"] for r in receiver.received()}) == 7
