"""The HTTP client that sends every webhook, and the SSRF guard around it. Knows no models.

- One ``requests.Session`` per process (keep-alive between deliveries) that never reads proxies
  or ``.netrc`` from the environment and never follows redirects.
- Each new connection resolves its host once, checks *every* address (``webhooks.ssrf``) and
  connects to the checked address, while TLS (SNI, certificate) and ``Host`` keep the name: no
  DNS-rebinding window. A reused connection's peer is checked again before each request.
- A total deadline per request: a watchdog thread shuts the socket of a request that runs past
  it, so a receiver dripping one byte a second is cut off.
- At most ``max_response_bytes`` of the body are read, undecoded (``Accept-Encoding:
  identity`` is sent; nothing is decompressed).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from webhooks import __version__, ssrf

USER_AGENT = f"django-webhooks/{__version__}"


@dataclass
class HttpResult:
    """What one POST produced: a response (any status) or an error, never an exception."""

    status_code: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    duration: float = 0.0
    error_class: str = ""
    error: str = ""
    #: ``False`` when retrying cannot help (the destination is refused by policy).
    retryable: bool = True

    @property
    def ok(self) -> bool:
        return (self.status_code is not None and 200 <= self.status_code < 300
                and not self.error_class)


# --- per-request context, shared with the connection classes ------------------------------------


@dataclass(eq=False)
class _Request:
    allowed_networks: Sequence[ssrf.IPNetwork]
    deadline: float
    sockets: list[socket.socket] = field(default_factory=list)
    finished: bool = False
    timed_out: bool = False


_current = threading.local()


def _context() -> _Request:
    ctx = getattr(_current, "request", None)
    if ctx is None:
        # Only post() opens connections; anything else using this session is refused.
        raise ssrf.BlockedDestination("requests must go through webhooks.http.post")
    return ctx


class _Watchdog:
    """One thread per process that shuts the sockets of requests past their deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Request]] = []
        self._seq = itertools.count()
        self._pid: int | None = None

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():  # a forked worker needs its own thread
            self._pid = os.getpid()
            self._heap = []
            threading.Thread(target=self._run, name="webhooks-deadline", daemon=True).start()

    def watch(self, ctx: _Request) -> None:
        with self._cond:
            self._ensure_thread()
            earliest = self._heap[0][0] if self._heap else None
            heapq.heappush(self._heap, (ctx.deadline, next(self._seq), ctx))
            if earliest is None or ctx.deadline < earliest:
                self._cond.notify()  # only an earlier deadline changes what the thread waits for

    def add_socket(self, ctx: _Request, sock: socket.socket) -> None:
        with self._cond:
            if not ctx.finished:
                ctx.sockets.append(sock)

    def finish(self, ctx: _Request) -> None:
        with self._cond:
            ctx.finished = True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, _, ctx = self._heap[0]
                if ctx.finished:
                    heapq.heappop(self._heap)
                    continue
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                ctx.timed_out = True
                for sock in ctx.sockets:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)


_watchdog = _Watchdog()


class _GuardedConnectionMixin:
    """Resolve once, check every address, connect to the checked one; watch the socket."""

    host: str
    port: int
    timeout: Any
    socket_options: Any
    sock: Any

    def _new_conn(self) -> socket.socket:
        ctx = _context()
        try:
            infos = ssrf.resolve(self.host, self.port, ctx.allowed_networks)
        except socket.gaierror as exc:
            raise urllib3.exceptions.NameResolutionError(
                self.host, self, exc) from exc  # type: ignore[arg-type]
        last_error: OSError | None = None
        for family, socktype, proto, _name, sockaddr in infos:
            sock = socket.socket(family, socktype, proto)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                sock.settimeout(self.timeout)
                sock.connect(sockaddr)
                return sock
            except TimeoutError as exc:
                sock.close()
                raise urllib3.exceptions.ConnectTimeoutError(
                    self, f"connecting to {self.host} timed out") from exc
            except OSError as exc:
                sock.close()
                last_error = exc
        raise urllib3.exceptions.NewConnectionError(
            self, f"Failed to establish a new connection: {last_error}")  # type: ignore[arg-type]

    def request(self, *args: Any, **kwargs: Any) -> Any:
        ctx = _context()
        if self.sock is not None:
            # A kept-alive connection: its peer must still be allowed (settings may change).
            try:
                peer = ssrf.parse_address(self.sock.getpeername()[0])
            except OSError:
                peer = None
            if peer is not None and not ssrf.is_allowed(peer, ctx.allowed_networks):
                raise ssrf.BlockedDestination()
        return super().request(*args, **kwargs)  # type: ignore[misc]

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        if self.sock is not None:
            _watchdog.add_socket(_context(), self.sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """An adapter whose pools open only guarded connections, and never through a proxy."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPPool, "https": _GuardedHTTPSPool,
        }

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        raise ssrf.BlockedDestination("proxies are not used")


_session: requests.Session | None = None
_session_pid: int | None = None


def get_session() -> requests.Session:
    """The process's session (a forked worker gets its own, never its parent's sockets)."""
    global _session, _session_pid
    pid = os.getpid()
    if _session is None or _session_pid != pid:
        session = requests.Session()
        session.trust_env = False
        adapter = GuardedAdapter(pool_connections=32, pool_maxsize=32, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _session, _session_pid = session, pid
    return _session


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    connect_timeout: float,
    read_timeout: float | None = None,
    max_response_bytes: int,
    allowed_networks: Sequence[ssrf.IPNetwork] = (),
    require_https: bool = False,
    ca_bundle: str | None = None,
) -> HttpResult:
    """POST ``body`` to ``url`` within ``timeout`` seconds in all; classify any failure.

    ``connect_timeout`` bounds connecting, ``read_timeout`` each silence of the receiver, and
    ``timeout`` the whole exchange (a watchdog enforces it even against a slow drip).

    ``error_class`` is one of ``blocked``, ``invalid_url``, ``connect_timeout``,
    ``read_timeout``, ``timeout``, ``tls_error``, ``dns_error``, ``connection_error``,
    ``invalid_response`` or ``""``. Error messages name no resolved address.
    """
    started = time.monotonic()
    result = HttpResult()
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("http", "https") or (require_https and scheme != "https"):
        result.error_class, result.retryable = "blocked", False
        result.error = "only https URLs are allowed" if require_https else \
            "only http and https URLs are allowed"
        return result
    ctx = _Request(allowed_networks=tuple(allowed_networks), deadline=started + timeout)
    _current.request = ctx
    _watchdog.watch(ctx)
    response = None
    try:
        response = get_session().post(
            url,
            data=body,
            headers=headers,
            timeout=(connect_timeout, read_timeout or timeout),
            allow_redirects=False,
            stream=True,
            verify=ca_bundle or True,
        )
        result.status_code = response.status_code
        result.headers = dict(response.headers.items())
        result.body = _read_capped(response, max_response_bytes)
    except ssrf.BlockedDestination as exc:
        result.error_class, result.error, result.retryable = "blocked", exc.reason, False
    except Exception as exc:
        result.error_class, result.error = _classify(exc, ctx, timeout)
    finally:
        _watchdog.finish(ctx)
        _current.request = None
        if response is not None:
            response.close()
    if ctx.timed_out:
        result.error_class = "timeout"
        result.error = f"no complete answer within {timeout:g}s"
    result.duration = time.monotonic() - started
    return result


def _classify(exc: Exception, ctx: _Request, timeout: float) -> tuple[str, str]:
    if ctx.timed_out:
        return "timeout", f"no complete answer within {timeout:g}s"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect_timeout", "connecting timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout | urllib3.exceptions.ReadTimeoutError):
        return "read_timeout", "the receiver stopped answering"
    if isinstance(exc, requests.exceptions.SSLError):
        return "tls_error", _first_line(exc)
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return "invalid_url", "a custom header is not valid"  # never echo header values
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema
                  | requests.exceptions.MissingSchema | requests.exceptions.URLRequired):
        return "invalid_url", _first_line(exc)
    if isinstance(exc, requests.exceptions.ConnectionError):
        if _caused_by(exc, urllib3.exceptions.NameResolutionError):
            return "dns_error", "the host name could not be resolved"
        if _caused_by(exc, urllib3.exceptions.ProtocolError):
            return "invalid_response", _first_line(exc)
        return "connection_error", _first_line(exc)
    if isinstance(exc, requests.exceptions.RequestException | urllib3.exceptions.HTTPError
                  | OSError | ValueError):
        return "invalid_response", _first_line(exc)
    raise exc


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return True
        stack += [getattr(current, "__cause__", None), getattr(current, "__context__", None),
                  getattr(current, "reason", None), *getattr(current, "args", ())[:1]]
    return False


def _read_capped(response: requests.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.raw.stream(8192, decode_content=False):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:500]
