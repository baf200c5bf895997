"""A loopback webhook receiver that misbehaves on purpose and times every request.

``FlakyReceiver(plan)`` serves HTTP/1.1 (kept alive) on 127.0.0.1 from an asyncio loop in a
background thread. For every ``POST`` it notes when the request arrived and when it ended
(answer written, connection reset by us, or connection lost: the sender gave up or died), and
answers as the :class:`Plan` decides: ``200``, ``500``, a TCP reset, a slow ``200``, or a hang
longer than the sender's timeout. The fault tests and ``bench/soak.py`` use it to check
at-least-once delivery, that duplicates share a ``webhook-id``, and that two attempts of the
same delivery never overlap in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import socket
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_HEAD = 64 * 1024
REASONS = {200: "OK", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Request:
    """One ``POST`` as the receiver saw it. Times are ``time.monotonic()`` (shared by every
    process on Linux)."""

    path: str
    headers: dict[str, str]
    body: bytes
    started: float
    #: ``math.inf`` while the request is still open.
    done: float = math.inf
    #: "ok", "error" (500), "reset", "slow" (a late 200), "hang" or "lost" (the sender went
    #: away first: its timeout, or its process was killed).
    outcome: str = ""
    status: int | None = None

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def body_id(self) -> str | None:
        try:
            value = json.loads(self.body).get("id")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    @property
    def open(self) -> bool:
        return self.done == math.inf

    @property
    def answered_ok(self) -> bool:
        """The receiver wrote a 2xx answer (whether or not the sender lived to read it)."""
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Action:
    kind: str  # "ok", "error", "reset", "slow", "hang"
    delay: float = 0.0


@dataclass
class Plan:
    """What share of requests misbehave, and how. Shares are of all requests; the rest get a
    plain ``200`` after ``delay`` seconds (a range: a little jitter widens race windows).

    ``first_only`` limits faults to the first request of each (path, webhook-id): every retry
    then succeeds, so a test with a short retry schedule still converges.
    """

    error: float = 0.0
    reset: float = 0.0
    slow: float = 0.0
    hang: float = 0.0
    slow_seconds: tuple[float, float] = (0.2, 1.0)
    hang_seconds: float = 30.0
    delay: tuple[float, float] = (0.0, 0.0)
    first_only: bool = False
    seed: int | None = None
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def choose(self, seen_before: bool) -> Action:
        roll = self.rng.random()
        if not (self.first_only and seen_before):
            for kind, share in (("error", self.error), ("reset", self.reset),
                                ("slow", self.slow), ("hang", self.hang)):
                if roll < share:
                    if kind == "slow":
                        return Action(kind, self.rng.uniform(*self.slow_seconds))
                    if kind == "hang":
                        return Action(kind, self.hang_seconds)
                    return Action(kind, self.rng.uniform(*self.delay))
                roll -= share
        return Action("ok", self.rng.uniform(*self.delay))


class _Connection(asyncio.Protocol):
    """One client connection: requests are answered one after the other, in order."""

    def __init__(self, receiver: FlakyReceiver) -> None:
        self.receiver = receiver
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.queue: asyncio.Queue[Request | None] = asyncio.Queue()
        self.lost: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.worker: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.worker = asyncio.get_running_loop().create_task(self.serve())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(time.monotonic())
        self.queue.put_nowait(None)  # the worker ends once it has recorded what it holds

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD and self.transport is not None:
                    self.transport.abort()
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            total = end + 4 + int(headers.get("content-length") or 0)
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4:total])
            del self.buffer[:total]
            method, path = [*lines[0].split(" "), "", ""][:2]
            if method != "POST":
                self.queue.put_nowait(Request(path, headers, b"", time.monotonic(),
                                              outcome="not-post", status=405))
            else:
                request = Request(path, headers, body, time.monotonic())
                self.receiver.arrived(request)
                self.queue.put_nowait(request)

    async def serve(self) -> None:
        while True:
            request = await self.queue.get()
            if request is None:
                return
            if request.outcome == "not-post":
                self.write(405, b"POST only")
                continue
            action = self.receiver.decide(request)
            request.outcome = action.kind
            if action.delay:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self.lost), action.delay)
            if self.lost.done():
                request.outcome = "lost"
                self.receiver.finished(request, self.lost.result())
                continue
            if action.kind == "reset":
                self.reset()
            else:
                request.status = 500 if action.kind == "error" else 200
                self.write(request.status, b"no" if request.status == 500 else b"ok")
            self.receiver.finished(request, time.monotonic())
            if action.kind == "reset":
                return

    def write(self, status: int, body: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(
                f"HTTP/1.1 {status} {REASONS.get(status, 'Other')}\r\nContent-Type: text/plain"
                f"\r\nContent-Length: {len(body)}\r\n\r\n".encode("latin-1") + body)

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0), as a crashing receiver or a proxy would."""
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


class FlakyReceiver:
    """``with FlakyReceiver(Plan(error=0.1)) as r:`` serves on ``r.url(path)``; ``r.requests()``
    lists every request that arrived, open or finished (see :class:`Request`)."""

    def __init__(self, plan: Plan | None = None,
                 decide: Callable[[Request, bool], Action] | None = None) -> None:
        self.plan = plan or Plan()
        self._decide = decide
        self._all: list[Request] = []
        self._seen: set[tuple[str, str]] = set()
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="flaky-receiver")
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await self._loop.create_server(
                lambda: _Connection(self), "127.0.0.1", 0, backlog=512)
            self.port = self._server.sockets[0].getsockname()[1]

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()
        assert self._server is not None
        self._server.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def __enter__(self) -> FlakyReceiver:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the flaky receiver did not start")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def decide(self, request: Request) -> Action:
        key = (request.path, request.webhook_id)
        seen = key in self._seen  # only the loop thread touches _seen
        self._seen.add(key)
        if self._decide is not None:
            return self._decide(request, seen)
        return self.plan.choose(seen)

    def arrived(self, request: Request) -> None:
        with self._cond:
            self._all.append(request)
            self._cond.notify_all()

    def finished(self, request: Request, at: float) -> None:
        with self._cond:
            request.done = at
            self._cond.notify_all()

    def requests(self, path: str | None = None) -> list[Request]:
        with self._cond:
            return [r for r in self._all if path is None or r.path == path]

    def wait_until(self, predicate: Callable[[list[Request]], bool], timeout: float,
                   what: str = "the requests") -> list[Request]:
        """Block until ``predicate(every request so far)`` holds; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self._all):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; "
                                         f"{len(self._all)} requests so far")
                self._cond.wait(min(remaining, 0.5))
            return list(self._all)


# --- checks shared by the fault tests and the soak ------------------------------------------


def delivered_pairs(requests: Iterable[Request]) -> set[tuple[str, str]]:
    """``(path, webhook-id)`` of every pair the receiver answered with a 2xx at least once."""
    return {(r.path, r.webhook_id) for r in requests if r.answered_ok}


def overlaps(requests: Iterable[Request]) -> list[tuple[Request, Request]]:
    """Pairs of requests with the same path and ``webhook-id`` that were open at the same time
    (the second arrived before the first ended, or while it was still open)."""
    groups: dict[tuple[str, str], list[Request]] = defaultdict(list)
    for request in requests:
        groups[(request.path, request.webhook_id)].append(request)
    found = []
    for group in groups.values():
        group.sort(key=lambda r: r.started)
        latest = group[0]
        for request in group[1:]:
            if request.started < latest.done:
                found.append((latest, request))
            if request.done > latest.done:
                latest = request
    return found


def mismatched_ids(requests: Iterable[Request]) -> list[Request]:
    """Requests whose body ``id`` is not their ``webhook-id`` header (a duplicate must carry
    the very same id as the first copy: receivers dedupe on it)."""
    return [r for r in requests if not r.webhook_id or r.body_id != r.webhook_id]
