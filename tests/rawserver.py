"""A TCP server on 127.0.0.1 whose replies are raw bytes written by a test function: for
receivers no well-behaved HTTP server would imitate (drip, garbage, endless bodies)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any


class RawServer:
    """``handler(conn)`` writes the reply once the request has been read. With
    ``ssl_context``, connections are TLS (the handshake comes first); with ``raw=True`` the
    handler gets the connection as accepted, nothing read (nor any handshake made)."""

    def __init__(self, handler: Callable[[socket.socket], None], *,
                 ssl_context: ssl.SSLContext | None = None, raw: bool = False) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.raw = raw
        self.connections = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        # close() alone leaves the thread blocked in accept() (Linux) with the port still
        # listening; shutdown() wakes it at once.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}/hook"

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            if not self.raw:
                if self.ssl_context is not None:
                    conn = self.ssl_context.wrap_socket(conn, server_side=True)
                read_request(conn)
            self.handler(conn)
        except OSError:
            pass
        finally:
            conn.close()


def read_request(conn: socket.socket) -> bytes:
    """Read one request's head and its Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head
