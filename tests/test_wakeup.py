"""Retries on time: the waker (webhooks/wakeup.py) and how a drain's next due time reaches it
(webhooks/tasks.py), down to a real cluster that sends a retry within a second of its time."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

import webhooks
from tests.cluster import Cluster, wait_until
from tests.factories import make_due, publish
from tests.helpers import make_endpoint, override_webhooks
from tests.receiver import Receiver, Reply
from webhooks import tasks, wakeup
from webhooks.models import Delivery
from webhooks.wakeup import Waker

pytestmark = pytest.mark.django_db


class Fires:
    """A waker's ``fire``: records when it was called."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.event = threading.Event()

    def __call__(self) -> None:
        self.times.append(time.time())
        self.event.set()

    def wait(self, count: int, timeout: float = 5) -> list[float]:
        deadline = time.monotonic() + timeout
        while len(self.times) < count:
            assert time.monotonic() < deadline, f"fired {len(self.times)} times, not {count}"
            time.sleep(0.005)
        return self.times


# --- the timer --------------------------------------------------------------------------------


def test_the_earliest_time_wins_and_fires_once() -> None:
    fires = Fires()
    waker = Waker(fires)
    now = time.time()
    waker.arm(now + 1.0)
    waker.arm(now + 0.2)
    waker.arm(now + 0.6)
    assert waker.due == now + 0.2 and waker.running
    (fired,) = fires.wait(1)
    assert now + 0.2 <= fired < now + 0.6
    time.sleep(max(0.0, now + 1.2 - time.time()))
    assert len(fires.times) == 1  # the later times were forgotten, not fired one by one
    assert waker.due is None and waker.running  # the thread sleeps until armed again
    waker.arm(time.time() + 0.05)
    fires.wait(2)


def test_a_time_already_past_fires_at_once_but_never_twice_in_a_row_within_the_gap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wakeup, "MIN_GAP", 1.0)
    fires = Fires()
    waker = Waker(fires)
    waker.arm(time.time() - 5)
    (first,) = fires.wait(1)
    # The drain it started found the same delivery still due (another worker had it for a
    # moment): no busy loop, the next fire keeps its distance.
    waker.arm(time.time() - 5)
    assert waker.due == pytest.approx(first + 1.0, abs=0.05)
    second = fires.wait(2)[1]
    assert second - first >= 1.0
    # A time still ahead is fired on time, however recent the last fire.
    waker.arm(time.time() + 0.05)
    third = fires.wait(3)[2]
    assert third - second < 0.8


def test_a_fire_that_raises_is_logged_and_the_waker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fires = Fires()
    calls = []

    def fire() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("broker down")
        fires()

    waker = Waker(fire)
    waker.arm(time.time())
    wait_until(lambda: calls, timeout=5, interval=0.01)
    waker.arm(time.time() + 0.05)
    fires.wait(1, timeout=5)
    assert "could not wake the workers" in caplog.text


def _armed_in_a_child(waker: Waker, fires: Fires, conn: Any) -> None:
    # The parent's timer thread did not survive the fork, nor its pending time.
    state = (waker.running, waker.due)
    waker.arm(time.time() + 0.05)
    fired = fires.event.wait(5)
    conn.send((state, waker.running, fired))
    conn.close()


def test_a_forked_process_starts_its_own_timer() -> None:
    fires = Fires()
    waker = Waker(fires)
    waker.arm(time.time() + 30)
    assert waker.running
    context = multiprocessing.get_context("fork")
    parent_end, child_end = context.Pipe()
    child = context.Process(target=_armed_in_a_child, args=(waker, fires, child_end))
    child.start()
    assert parent_end.poll(10)
    state, running, fired = parent_end.recv()
    child.join(5)
    assert state == (False, None)
    assert running and fired
    assert waker.running and waker.due is not None  # the parent's own timer is untouched
    assert fires.times == []


def test_the_process_waker_asks_for_a_drain_and_gives_its_connections_back(
    enqueued: list[Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.db import connections

    closed = []
    monkeypatch.setattr(connections, "close_all", lambda: closed.append(1))
    wakeup.request_drain()
    assert enqueued == [("drain", ())]
    assert closed == [1]


# --- from the drain to the waker --------------------------------------------------------------


@pytest.fixture
def armed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """What the monitor's receiver arms the waker with (instead of the real waker)."""
    calls: list[float] = []
    monkeypatch.setattr(tasks, "_arm", calls.append)
    yield calls


def run_as_task(func: Any, *, sync: bool = False) -> dict[str, Any]:
    """What a worker and then the monitor do around a task, without a cluster: the package
    goes through ``pre_execute``, the task, then ``post_execute``."""
    from django_q.signals import post_execute, pre_execute

    package: dict[str, Any] = {"func": "webhooks.tasks.drain", "name": "test"}
    if sync:
        package["sync"] = True
    pre_execute.send(sender="django_q", func=func, task=package)
    func()
    post_execute.send(sender="django_q", task=package)
    return package


def test_a_drain_passes_the_next_retry_on_to_the_monitors_waker(
    receiver: Receiver, armed: list[float], async_broker: None,
) -> None:
    receiver.script("/hook", Reply(500))
    make_endpoint(receiver.url())
    publish()
    package = run_as_task(tasks.drain)
    delivery = Delivery.objects.get()
    assert delivery.attempts == 1
    assert armed == [delivery.next_attempt_at.timestamp()]
    assert package[tasks.WAKE_KEY] == armed[0]


def test_in_sync_mode_nothing_is_armed_and_no_thread_starts(
    receiver: Receiver, armed: list[float],
) -> None:
    receiver.script("/hook", Reply(500))
    make_endpoint(receiver.url())
    publish()
    run_as_task(tasks.drain, sync=True)
    assert Delivery.objects.get().attempts == 1
    assert armed == []


def test_a_real_sync_mode_task_starts_no_waker_thread(receiver: Receiver) -> None:
    """Q_CLUSTER sync (the unit tests' settings): the task runs inline, with the monitor."""
    from webhooks import dispatch

    receiver.script("/hook", Reply(500))
    make_endpoint(receiver.url())
    publish()
    assert dispatch.enqueue("drain")
    assert Delivery.objects.get().attempts == 1
    assert not wakeup.waker.running and wakeup.waker.due is None


def test_a_retry_beyond_the_sweeps_reach_is_left_to_the_sweep(
    receiver: Receiver, armed: list[float], async_broker: None,
) -> None:
    receiver.script("/hook", Reply(500))
    make_endpoint(receiver.url())
    publish()
    with override_webhooks(RETRY_SCHEDULE=[150, 150], SWEEP_INTERVAL=1):
        run_as_task(tasks.drain)
    assert armed == []  # 150 s: more than a sweep interval and the scheduler's slack
    delivery = Delivery.objects.get()
    with override_webhooks(RETRY_SCHEDULE=[100, 100], SWEEP_INTERVAL=1):
        make_due(delivery)
        receiver.script("/hook", Reply(500))
        run_as_task(tasks.sweep)  # the sweep passes on what is within its reach
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and armed == [delivery.next_attempt_at.timestamp()]


def test_no_time_is_passed_on_outside_a_task_or_when_work_is_handed_over(
    receiver: Receiver, enqueued: list[Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tasks, "_running_task", None)
    tasks.report_wakeup(timezone.now() + timedelta(seconds=5))  # nothing to carry it: no error
    package: dict[str, Any] = {}
    monkeypatch.setattr(tasks, "_running_task", package)
    make_endpoint(receiver.url())
    publish(count=3)
    with override_webhooks(BATCH_SIZE=1, TASK_TIME_LIMIT=0.0001):
        tasks.drain()
    assert enqueued == [("drain", ())] and package == {}  # the next task goes on instead
    soon = timezone.now() + timedelta(seconds=5)
    tasks.report_wakeup(soon + timedelta(seconds=1))
    tasks.report_wakeup(soon)
    assert package == {tasks.WAKE_KEY: soon.timestamp()}


# --- a real cluster ---------------------------------------------------------------------------

#: The retry delays and jitter of the cluster below.
DELAYS = (3, 2)
JITTER = 0.2
#: How late a retry may arrive after its recorded ``next_attempt_at`` (which includes the
#: jitter): the bound docs/delivery.md promises.
LATE = 1.0


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("recycle", [500, 1], ids=["default", "workers-recycled-every-task"])
def test_retries_arrive_on_time_on_an_idle_cluster(
    async_broker: None, receiver: Receiver, recycle: int,
) -> None:
    """Nothing else wakes this cluster: no scheduler (no sweep, no wake-up schedule), no new
    events. The waker alone sends each retry within ``LATE`` of its time, on django-q2's
    default ``poll`` (the ORM broker's pusher looks for tasks every 0.2 s). It lives in the
    cluster's monitor process, so workers that exit after every task (``recycle`` 1) do not
    take it with them."""
    receiver.script("/hook", Reply(500), Reply(500), Reply(200))
    make_endpoint(receiver.url())
    with Cluster(WEBHOOKS_TEST_RETRY_SCHEDULE=",".join(map(str, DELAYS)),
                 WEBHOOKS_TEST_RETRY_JITTER=str(JITTER), WEBHOOKS_TEST_POLL="0.2",
                 WEBHOOKS_TEST_SCHEDULER="0", WEBHOOKS_TEST_RECYCLE=str(recycle)):
        event = webhooks.send_event("invoice.paid", {"invoice": 16})
        due = []
        for attempts in (1, 2):
            retry = wait_until(lambda n=attempts: Delivery.objects.filter(
                event=event, attempts=n, status="pending", claim_token=None).first(),
                timeout=60, interval=0.02)
            due.append(retry.next_attempt_at.timestamp())
        requests = receiver.wait_for(3, timeout=30)
        wait_until(lambda: Delivery.objects.filter(event=event, status="succeeded").exists())
    for n, delay in enumerate(DELAYS):
        previous, retry = requests[n].at, requests[n + 1].at
        # The recorded time: the attempt's time plus the delay, stretched by the jitter.
        assert previous + delay <= due[n] + 0.05
        assert due[n] <= previous + delay * (1 + JITTER) + 0.5
        # ...and the retry goes out within LATE of it, never before.
        assert due[n] - 0.05 <= retry <= due[n] + LATE, (n, retry - due[n])
        print(f"retry {n + 1}: {retry - due[n]:.3f} s after its time")
