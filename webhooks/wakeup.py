"""The waker: one timer per process that asks for a ``drain`` when the next retry comes due.

A delivery task that ends with nothing due says when the next delivery comes due (a retry, or a
claim that ends). That time travels with the task's result to the cluster's *monitor* process
(:func:`webhooks.tasks.connect_wakeups`), which arms :data:`waker` there: a daemon thread that
sleeps until the earliest time it was told about, then enqueues one ``drain`` task through
:func:`webhooks.dispatch.enqueue` and sleeps again. No worker is held idle, nothing polls, and
the monitor lives as long as the cluster (workers are recycled or killed on a timeout, the
monitor is not), so one timer per cluster covers every worker's retries.

Its thread is started lazily, by the first :meth:`Waker.arm` in a process, and again after a
fork (a thread does not survive ``fork``: a changed process id means a fresh lock, no thread
and no pending time). django-q2's sync mode never gets here (:mod:`webhooks.tasks` does not
arm in sync mode): tests run their tasks inline and start no thread.

The django-q2 ``webhooks.wakeup`` schedule stays as the durable fallback, for a monitor that
died or a cluster that was stopped: the scheduler looks at it every 30 seconds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from django.db import connections

from webhooks import dispatch

logger = logging.getLogger("webhooks")

#: Longest single sleep of the timer thread, in seconds: it reads the wall clock (which due
#: times are measured on) again at least this often, so a clock that was set moves it too.
MAX_SLEEP = 60.0
#: Shortest time between two fires for a time that had already come when it was armed, in
#: seconds. A drain reports a time already past when a due delivery was out of its reach for a
#: moment (another worker's claim committing), or when the next retry came due while the
#: drain's result was on its way to the monitor (retries a few hundred milliseconds apart, as
#: the jitter spreads them); firing again at once, each time, could make the waker a busy loop,
#: and waiting long would make those retries late. At most four fires a second.
MIN_GAP = 0.25


class Waker:
    """One timer: :meth:`arm` it with a time; at the earliest time armed (and not fired yet) it
    calls ``fire`` once, on its own daemon thread.

    Thread-safe; fork-safe (see the module's docstring). ``fire`` must not raise (what it
    raises is logged).
    """

    def __init__(self, fire: Callable[[], object], *, name: str = "webhooks-waker") -> None:
        self._fire = fire
        self._name = name
        self._pid = 0
        self._cond = threading.Condition()
        self._due: float | None = None
        self._last_fire = float("-inf")
        self._thread: threading.Thread | None = None

    def arm(self, when: float) -> None:
        """Fire at ``when`` (a :func:`time.time` value) unless an earlier fire is pending; a
        later one is forgotten (the drain it starts reports the next time again)."""
        pid = os.getpid()
        if self._pid != pid:
            # First use in this process, or a forked child: the parent's thread is not here,
            # and its lock may have been held at the fork. Start afresh.
            self._pid = pid
            self._cond = threading.Condition()
            self._due = None
            self._last_fire = float("-inf")
            self._thread = None
        with self._cond:
            if when <= time.time():
                when = max(when, self._last_fire + MIN_GAP)
            if self._due is not None and self._due <= when:
                return
            self._due = when
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, args=(self._cond,),
                                                name=self._name, daemon=True)
                self._thread.start()
            else:
                self._cond.notify()

    @property
    def due(self) -> float | None:
        """When this process's timer fires next (``None``: not armed)."""
        return self._due if self._pid == os.getpid() else None

    @property
    def running(self) -> bool:
        """Whether this process has a timer thread."""
        return (self._pid == os.getpid() and self._thread is not None
                and self._thread.is_alive())

    def _run(self, cond: threading.Condition) -> None:
        while True:
            with cond:
                while True:
                    due = self._due
                    if due is None:
                        cond.wait()
                        continue
                    delay = due - time.time()
                    if delay <= 0:
                        break
                    cond.wait(min(delay, MAX_SLEEP))
                self._due = None
                self._last_fire = time.time()
            try:
                self._fire()
            except Exception:
                logger.warning("The retry waker could not wake the workers.", exc_info=True)


def request_drain() -> None:
    """What :data:`waker` fires: one ``drain`` task (:func:`webhooks.dispatch.enqueue` logs a
    broker failure; the ``webhooks.wakeup`` schedule and the sweep are still there). Then give
    back this thread's database connections: the ORM broker's insert opened one."""
    try:
        dispatch.enqueue("drain")
    finally:
        connections.close_all()


#: This process's waker (armed in a django-q2 cluster's monitor process).
waker = Waker(request_drain)
