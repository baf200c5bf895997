"""A fast loopback webhook receiver for the benchmark (stdlib asyncio, HTTP/1.1 keep-alive).

``python bench/receiver.py`` listens on 127.0.0.1 (a free port unless ``--port``), prints
``PORT <n>`` on its first line and serves until SIGTERM/SIGINT:

- ``POST <path>``: answers ``200 ok`` and counts the request under ``<path>``, with the number
  of distinct ``webhook-id`` values, the first arrival and the arrival of the last new id
  (``time.monotonic()``: on Linux the same clock in every process); a path that contains
  ``/fail-once`` answers ``500`` to the first request of each ``webhook-id`` and ``200`` to
  the next ones (one retry per webhook); ``ok`` counts the ``200`` answers;
- ``GET /stats``: those counters as JSON; ``GET /reset``: forget them;
- ``GET /arrivals<path>``: ``{webhook-id: first arrival}`` of the requests to ``<path>``
  (the latency leg matches them with the commit time of each event).

It parses only what it needs (request line, ``Content-Length``, ``Connection``,
``webhook-id``), so one process answers far more requests per second than a Python sender
makes: the receiver is not what the benchmark measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any

MAX_HEAD = 64 * 1024
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
FAIL = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 4\r\n\r\nfail")


class PathStats:
    __slots__ = ("count", "first_at", "ids", "last_new_at", "ok")

    def __init__(self) -> None:
        self.count = 0
        self.ok = 0
        self.ids: dict[str, float] = {}  # webhook-id -> first arrival
        self.first_at: float | None = None
        self.last_new_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "ok": self.ok, "unique": len(self.ids),
                "first_at": self.first_at,
                "last_new_at": self.last_new_at}


class Stats:
    def __init__(self) -> None:
        self.paths: dict[str, PathStats] = {}

    def record(self, path: str, webhook_id: str) -> bytes:
        """Count the request; the answer to send (``FAIL`` for a first try on ``/fail-once``)."""
        now = time.monotonic()
        stats = self.paths.get(path)
        if stats is None:
            stats = self.paths[path] = PathStats()
        stats.count += 1
        if stats.first_at is None:
            stats.first_at = now
        if webhook_id not in stats.ids:
            stats.ids[webhook_id] = now
            stats.last_new_at = now
            if "/fail-once" in path:
                return FAIL
        stats.ok += 1
        return OK

    def as_json(self) -> bytes:
        return json.dumps({p: s.as_dict() for p, s in self.paths.items()}).encode()


def response(status: str, body: bytes, content_type: str = "text/plain") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body


class Protocol(asyncio.Protocol):
    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self.fail("431 Request Header Fields Too Large")
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            length, close, webhook_id = 0, False, ""
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "webhook-id":
                    webhook_id = value.strip()
                elif name == "connection":
                    close = value.strip().lower() == "close"
                elif name == "transfer-encoding":
                    self.fail("501 Not Implemented")
                    return
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            del self.buffer[:total]
            method, path, *_ = [*head[0].split(" "), "", ""]
            if method == "POST":
                self.transport.write(self.stats.record(path, webhook_id))
            elif path == "/stats":
                self.transport.write(response("200 OK", self.stats.as_json(),
                                              "application/json"))
            elif path.startswith("/arrivals/"):
                arrived = self.stats.paths.get(path[len("/arrivals"):])
                self.transport.write(response(
                    "200 OK", json.dumps(arrived.ids if arrived else {}).encode(),
                    "application/json"))
            elif path == "/reset":
                self.stats.paths.clear()
                self.transport.write(OK)
            else:
                self.transport.write(response("404 Not Found", b"not found"))
            if close:
                self.transport.close()
                self.transport = None

    def fail(self, status: str) -> None:
        if self.transport is not None:
            self.transport.write(response(status, b""))
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    server = await loop.create_server(lambda: Protocol(stats), "127.0.0.1", port, backlog=512)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.port))
    sys.exit(0)


if __name__ == "__main__":
    main()
