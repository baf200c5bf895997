"""A real HTTP receiver on 127.0.0.1 for tests: records every request, answers as scripted."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: How often a test server's ``serve_forever`` looks for a shutdown request. With socketserver's
#: default (0.5 s) every test that started a receiver waited about that long for it to stop.
SHUTDOWN_POLL = 0.01


class PromptShutdown(socketserver.BaseServer):
    """Mixin (put it first) for a socketserver server: ``shutdown()`` returns within
    :data:`SHUTDOWN_POLL` seconds instead of socketserver's half second."""

    def serve_forever(self, poll_interval: float = SHUTDOWN_POLL) -> None:
        super().serve_forever(min(poll_interval, SHUTDOWN_POLL))


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    #: The client's (address, port): tells requests on one kept-alive connection apart.
    client: tuple[str, int] | None = None


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    #: Answer with the request's own path and body instead of ``body``.
    echo: bool = False


class Receiver:
    """``with Receiver() as r:`` serves on ``r.url(path)``; ``r.script(path, Reply(...), ...)``
    queues answers for a path (default: ``default``, or 200)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 default: Reply | None = None) -> None:
        self.host = host
        self.default = default or Reply()
        self.requests: list[Received] = []
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Buffer the whole response into one send: an unbuffered writer sends headers and
            # body apart, and Nagle + delayed ACK then cost ~40 ms per request.
            wbufsize = 64 * 1024

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._cond:
                    receiver.requests.append(Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                        time.time(), tuple(self.client_address[:2])))
                    script = receiver._scripts[self.path]
                    reply = script.popleft() if script else receiver.default
                    receiver._cond.notify_all()
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                answer = self.path.encode() + b" " + body if reply.echo else reply.body
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(PromptShutdown, ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that hung up (a timeout test) is not news

        if ":" in host:
            Server.address_family = socket.AF_INET6
        self.server = Server((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/hook") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[path].extend(replies)

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def wait_for(self, count: int, path: str | None = None, timeout: float = 20.0,
                 ) -> list[Received]:
        """Block until ``count`` requests (to ``path``) arrived; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self.requests if path is None or r.path == path]
                if len(got) >= count:
                    return got
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} requests, got {len(got)}")
                self._cond.wait(remaining)
