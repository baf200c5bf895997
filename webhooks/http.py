"""The HTTP client that sends every webhook, and the SSRF guard around it. Knows no models.

- One ``requests.Session`` per process (keep-alive between deliveries) that never reads proxies
  or ``.netrc`` from the environment, never follows redirects and keeps no cookies.
- Each new connection resolves its host once, checks *every* address (``webhooks.ssrf``) and
  connects to the checked address, while TLS (SNI, certificate) and ``Host`` keep the name: no
  DNS-rebinding window. A reused connection's peer is checked again before each request.
- A total deadline per request: a watchdog thread shuts the socket of a request that runs past
  it, so a receiver dripping one byte a second is cut off, during the TLS handshake as much as
  in the body.
- At most ``max_response_bytes`` of the body are read, undecoded (``Accept-Encoding:
  identity`` is sent; nothing is decompressed). The head (status line and headers) is read
  up to ``max_header_bytes`` and ``max_headers`` header lines: a longer one is an error
  (``response_too_large``), never read to its end nor stored.
- urllib3 logs request lines (the URL's path and query, which can carry tokens) at DEBUG and
  whole URLs in some warnings: while a request of ours runs, a filter on its loggers replaces
  every path and query in their records with ``/…``.
- Thread-safe: :func:`post` may run in several threads of one process at once. They share the
  session's connection pools; each request's deadline only ever cuts the connection that
  request is using (a connection handed back to the pool belongs to no request).
- Every failure gets one of the classes in :data:`ERROR_CLASSES`.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import http.cookiejar
import itertools
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.response import assert_header_parsing

from webhooks import __version__, ssrf

USER_AGENT = f"django-webhooks/{__version__}"

#: Every ``error_class`` :func:`post` can give a failure, and what causes it. The delivery
#: engine adds the classes of HTTP answers that are not 2xx (``redirect``, ``gone``,
#: ``rate_limited``, ``http_status``). docs/observability.md has the same table.
ERROR_CLASSES: dict[str, str] = {
    "blocked": "the SSRF guard refused the destination, or the scheme is not allowed",
    "invalid_url": "the URL or a custom header cannot be sent",
    "dns_error": "the host name does not resolve, or only to addresses the SSRF guard refuses "
                 "(not told apart: internal names stay private; the log tells staff which)",
    "connection_refused": "nothing listens at the address (TCP reset on connect)",
    "connect_timeout": "connecting, or a wait in the TLS handshake, took over CONNECT_TIMEOUT",
    "connection_error": "any other failure to connect (unreachable network or host...)",
    "tls_error": "the TLS handshake failed: certificate, name, protocol",
    "read_timeout": "the receiver went silent for READ_TIMEOUT (e.g. headers never sent)",
    "timeout": "no complete answer within TIMEOUT (e.g. a slow drip)",
    "connection_reset": "the receiver reset or closed the connection before the answer ended",
    "invalid_response": "not HTTP: bad status line, malformed headers or framing, a 1xx",
    "response_too_large": "the response head (status line and headers) is over the limits: "
                          "MAX_RESPONSE_HEADER_BYTES, MAX_RESPONSE_HEADERS or a line of 64 KiB",
}

#: Defaults of :func:`post`'s caps on the response head (the settings table has the same).
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100

logger = logging.getLogger("webhooks")

#: Where a request is; decides what an error means (a timeout while connecting is not one
#: while waiting for the answer).
_CONNECT, _TLS, _SEND, _WAIT, _BODY = "connect", "tls", "send", "wait", "body"


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
    max_header_bytes: int = MAX_HEADER_BYTES
    max_headers: int = MAX_HEADERS
    phase: str = _CONNECT
    #: Connections this request has used (it owns those whose ``_webhooks_owner`` is it).
    connections: list[Any] = field(default_factory=list)
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
    """One thread per process that cuts the connections of requests past their deadline.

    A connection is owned by one request from the moment that request connects it (or takes
    it from the pool) until the request ends or hands it back to the pool; only its owner's
    deadline can cut it. To cut, the watchdog shuts down a duplicate descriptor of the socket
    (``shutdown`` acts on the connection, whatever wraps the socket, TLS included), so it never
    touches an object another thread is using. Every change of ownership, every cut and every
    close of a duplicate happen under one lock.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
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

    def attach(self, ctx: _Request, conn: Any, sock: socket.socket) -> None:
        """Make ``ctx`` the owner of ``conn``, whose socket is ``sock``."""
        handle = os.dup(sock.fileno())
        with self._cond:
            self._detach(conn)
            if ctx.finished:
                os.close(handle)
                return
            conn._webhooks_owner, conn._webhooks_handle = ctx, handle
            ctx.connections.append(conn)
            if ctx.timed_out:  # the deadline passed before the connection existed
                _shut(handle)

    def release(self, conn: Any) -> bool:
        """``conn`` goes back to the pool: it belongs to no request any more. Returns whether
        its owner's deadline cut it (then it must not be reused)."""
        with self._cond:
            owner = conn._webhooks_owner
            self._detach(conn)
            return owner is not None and owner.timed_out

    def finish(self, ctx: _Request) -> None:
        with self._cond:
            ctx.finished = True
            for conn in ctx.connections:
                if conn._webhooks_owner is ctx:
                    self._detach(conn)
            ctx.connections.clear()

    @staticmethod
    def _detach(conn: Any) -> None:
        handle = conn._webhooks_handle
        conn._webhooks_owner = conn._webhooks_handle = None
        if handle is not None:
            os.close(handle)

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
                for conn in ctx.connections:
                    if conn._webhooks_owner is ctx and conn._webhooks_handle is not None:
                        _shut(conn._webhooks_handle)


def _shut(fd: int) -> None:
    """Shut down the connection of the descriptor ``fd`` (which stays open)."""
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=fd)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.detach()


_watchdog = _Watchdog()


class ResponseHeadTooLarge(http.client.HTTPException):
    """The answer's status line and headers are over the request's caps (never read on)."""


class _CappedHead:
    """What a response reads its head from: the connection's file, counted. More than
    ``max_bytes`` bytes or ``max_lines`` lines raise :class:`ResponseHeadTooLarge` before
    anything past the cap is read."""

    def __init__(self, fp: Any, max_bytes: int, max_lines: int) -> None:
        self._fp = fp
        self._bytes_left = max_bytes
        self._lines_left = max_lines

    def readline(self, size: int = -1) -> bytes:
        if self._lines_left <= 0:
            raise ResponseHeadTooLarge("too many header lines")
        wanted = self._bytes_left + 1 if size < 0 else min(size, self._bytes_left + 1)
        line: bytes = self._fp.readline(wanted)
        self._bytes_left -= len(line)
        self._lines_left -= 1
        if self._bytes_left < 0:
            raise ResponseHeadTooLarge("too many header bytes")
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


class _CappedHTTPResponse(http.client.HTTPResponse):
    """An ``http.client`` response whose head (interim answers included) is read under the
    caps of the request it answers."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        ctx = _context()
        original = self.fp
        # The status line, the header lines and the blank line that ends them.
        capped = _CappedHead(original, ctx.max_header_bytes, ctx.max_headers + 2)
        self.fp = capped
        try:
            super().begin()
        finally:
            if self.fp is capped:  # (http.client sets it to None when it closes)
                self.fp = original


class _GuardedConnectionMixin:
    """Resolve once, check every address, connect to the checked one; watch the socket; read
    the answer's head under the request's caps."""

    response_class: type[http.client.HTTPResponse] = _CappedHTTPResponse

    host: str
    port: int
    timeout: Any
    socket_options: Any
    sock: Any
    #: The request that owns this connection now, and the descriptor its deadline shuts (a
    #: duplicate of the socket's, closed when the ownership ends).
    _webhooks_owner: _Request | None = None
    _webhooks_handle: int | None = None
    #: The head of the request being sent, held until its body goes (``None``: not held).
    _webhooks_held: bytes | None = None
    #: The socket's peer address, and the socket it is of.
    _webhooks_peer: Any = None
    _webhooks_peer_of: Any = None

    def _new_conn(self) -> socket.socket:
        ctx = _context()
        ctx.phase = _CONNECT
        try:
            infos = ssrf.resolve(self.host, self.port, ctx.allowed_networks)
        except socket.gaierror as exc:
            raise urllib3.exceptions.NameResolutionError(
                self.host, self, exc) from exc  # type: ignore[arg-type]
        except ssrf.BlockedDestination:
            if ssrf.is_name(self.host):
                raise self._refused_name() from None
            raise
        last_error: OSError | None = None
        for family, socktype, proto, _name, sockaddr in infos:
            # Every address gets the connect timeout, but all of them together no more than
            # what is left of the deadline.
            left = ctx.deadline - time.monotonic()
            if left <= 0:
                raise urllib3.exceptions.ConnectTimeoutError(
                    self, f"connecting to {self.host} timed out")
            sock = socket.socket(family, socktype, proto)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                sock.settimeout(left if self.timeout is None else min(self.timeout, left))
                sock.connect(sockaddr)
            except TimeoutError as exc:
                sock.close()
                raise urllib3.exceptions.ConnectTimeoutError(
                    self, f"connecting to {self.host} timed out") from exc
            except OSError as exc:
                sock.close()
                last_error = exc
                continue
            try:
                _watchdog.attach(ctx, self, sock)  # from here on, the TLS handshake included
            except OSError:
                sock.close()
                raise
            ctx.phase = _TLS if isinstance(self, HTTPSConnection) else _SEND
            return sock
        raise urllib3.exceptions.NewConnectionError(
            self, f"Failed to establish a new connection: {last_error}",  # type: ignore[arg-type]
        ) from last_error

    def request(self, *args: Any, **kwargs: Any) -> Any:
        ctx = _context()
        if self.sock is not None:
            # A kept-alive connection: its peer must still be allowed (settings may change).
            peer = self._peer()
            if peer is not None and not ssrf.is_allowed(peer, ctx.allowed_networks):
                if ssrf.is_name(self.host):
                    raise self._refused_name()
                raise ssrf.BlockedDestination()
            if self._webhooks_owner is not ctx:  # (only this thread changes it now)
                _watchdog.attach(ctx, self, self.sock)
            ctx.phase = _SEND
        # The head and a bytes body leave in one send (see :meth:`send`).
        self._webhooks_held = b"" if isinstance(kwargs.get("body"), bytes) else None
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
            held = self._webhooks_held
        finally:
            self._webhooks_held = None
        if held:  # (a head without a body: it goes now)
            super().send(held)  # type: ignore[misc]

    def send(self, data: Any) -> None:
        """Send ``data``; while :meth:`request` sends a bytes body, the head is held back and
        goes out with the body in one ``sendall``: one system call (and one wait for the
        interpreter lock) less per request, and no small segment on its own."""
        held = self._webhooks_held
        if held is not None and isinstance(data, bytes):
            if not held:
                self._webhooks_held = data  # the head: wait for the body
                return
            self._webhooks_held, data = None, held + data
        super().send(data)  # type: ignore[misc]

    def _peer(self) -> ssrf.IPAddress | None:
        """The address this connection's socket is connected to (read once per socket)."""
        sock = self.sock
        if self._webhooks_peer_of is not sock:
            try:
                self._webhooks_peer = ssrf.parse_address(sock.getpeername()[0])
            except OSError:
                return None
            self._webhooks_peer_of = sock
        return self._webhooks_peer

    def _refused_name(self) -> Exception:
        """The error of a name the guard refuses: the one of a name that does not resolve
        (whoever configured the URL learns nothing of internal names); the log says why."""
        logger.warning("Refused to send to %s: it resolves to an address webhooks may not be "
                       "sent to (recorded as dns_error). In development, "
                       "WEBHOOKS['ALLOWED_NETWORKS'] lets deliveries reach a private network.",
                       self.host)
        return urllib3.exceptions.NameResolutionError(
            self.host, self, socket.gaierror("no address webhooks may be sent to"),  # type: ignore[arg-type]
        )

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _context().phase = _WAIT
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _context().phase = _SEND  # the handshake is over


class _GuardedPoolMixin:
    def _put_conn(self, conn: Any) -> None:
        # Back in the pool, a connection belongs to no request: another thread may take it at
        # once, and the deadline of the request that used it must not cut it then.
        if conn is not None and _watchdog.release(conn):
            conn.close()  # cut by its deadline: never reused
        super()._put_conn(conn)  # type: ignore[misc]


class _GuardedHTTPPool(_GuardedPoolMixin, HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class _GuardedHTTPSPool(_GuardedPoolMixin, HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """An adapter whose pools open only guarded connections, and never through a proxy.

    :meth:`send_post` is what :func:`post` uses: it hands a prepared request straight to the
    guarded pool of its URL, without what ``Session.request`` and ``HTTPAdapter.send`` do
    around it for the general case (merging environment settings, proxies, hooks, cookies,
    building a ``requests.Response``), none of which a webhook uses.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        #: ``{(url, verify): its pool}``, so that the pool of a URL is looked up once.
        self._webhooks_pools: dict[tuple[Any, Any], Any] = {}
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPPool, "https": _GuardedHTTPSPool,
        }

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        raise ssrf.BlockedDestination("proxies are not used")

    def send_post(self, request: requests.PreparedRequest, path: str,
                  timeout: urllib3.Timeout, verify: bool | str) -> Any:
        """Send ``request`` (a POST of a bytes body to ``path`` of its URL) on the guarded pool
        of its host: the urllib3 response, its body not read. No redirect is followed and
        nothing is retried; urllib3's exceptions are raised as they are."""
        key = (request.url, verify)
        pool = self._webhooks_pools.get(key)
        if pool is None or pool.pool is None:  # (a pool the manager dropped is closed)
            try:
                pool = self.get_connection_with_tls_context(request, verify)
            except urllib3.exceptions.LocationValueError as exc:
                raise requests.exceptions.InvalidURL(exc, request=request) from exc
            # What ``HTTPAdapter.send`` does on every request, once per pool.
            self.cert_verify(pool, request.url or "", verify, None)
            if len(self._webhooks_pools) >= 4 * self._pool_connections:
                self._webhooks_pools.clear()
            self._webhooks_pools[key] = pool
        return pool.urlopen(
            method="POST", url=path, body=request.body,  # type: ignore[arg-type]
            headers=request.headers,  # type: ignore[arg-type]
            redirect=False, assert_same_host=False, preload_content=False,
            decode_content=False, retries=self.max_retries, timeout=timeout, chunked=False,
        )


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Receivers' cookies are never kept: they would go to every endpoint on the same host."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


# --- logs: no endpoint URL path or query (tokens) in urllib3's records ---------------------------

#: A URL (what follows its host goes), and a bare path (after a space, a quote, "(" or "=").
_URL_IN_TEXT = re.compile(r"""([A-Za-z][A-Za-z0-9+.-]*://[^/?#\s"']*)([^\s"']*)""")
_PATH_IN_TEXT = re.compile(r"""(?<![^\s"'(=])/[^\s"']*""")


def redact_urls(text: str) -> str:
    """``text`` with the path and query of every URL, and every bare path, made ``/…``."""
    text = _URL_IN_TEXT.sub(lambda m: m[1] + ("/…" if m[2] else ""), text)
    return _PATH_IN_TEXT.sub("/…", text)


class RedactURLs(logging.Filter):
    """On urllib3's loggers: a record made while a request of ours runs in this thread has
    every path and query replaced (its message, and its traceback, then kept as text only).
    Records of the site's other HTTP calls are left as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(_current, "request", None) is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted: say so, reveal nothing
            message = "(a urllib3 record that could not be formatted)"
        record.msg, record.args = redact_urls(message), ()
        if record.exc_info:
            record.exc_text = redact_urls(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact_urls(record.exc_text)
        return True


_redact_filter = RedactURLs()


def install_log_filter() -> None:
    """Put :class:`RedactURLs` on every urllib3 logger (once each). A filter applies only to
    records made on its own logger, so each module's logger gets it."""
    names = {"urllib3", "urllib3.connectionpool", "urllib3.connection", "urllib3.response",
             "urllib3.poolmanager", "urllib3.util.retry"}
    names.update(name for name in list(logging.root.manager.loggerDict)
                 if name.startswith("urllib3."))
    for name in names:
        log = logging.getLogger(name)
        if _redact_filter not in log.filters:
            log.addFilter(_redact_filter)


install_log_filter()


_session: requests.Session | None = None
_session_pid: int | None = None
_session_lock = threading.Lock()


_adapter: GuardedAdapter | None = None
#: The headers the session sends unless a request's own replace them (requests' defaults).
_session_headers: dict[str, str] = {}


def get_session() -> requests.Session:
    """The process's session (a forked worker gets its own, never its parent's sockets)."""
    global _session, _session_pid, _adapter, _session_headers
    pid = os.getpid()
    session = _session
    if session is not None and _session_pid == pid:
        return session
    with _session_lock:
        if _session is None or _session_pid != pid:
            install_log_filter()  # (again: loggers urllib3 made since the import)
            session = requests.Session()
            session.trust_env = False
            session.cookies.set_policy(_NoCookies())
            adapter = GuardedAdapter(pool_connections=32, pool_maxsize=32, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _session_headers = {str(k): str(v) for k, v in session.headers.items()}
            _session, _session_pid, _adapter = session, pid, adapter
            _prepared_urls.clear()
        return _session


def _get_adapter() -> GuardedAdapter:
    """The adapter of the process's session (both schemes share it)."""
    adapter = _adapter
    if adapter is None or _session_pid != os.getpid():
        adapter = get_session().get_adapter("https://")  # type: ignore[assignment]
    return adapter  # type: ignore[return-value]


#: ``{url: (its prepared form, the path and query a request line carries)}``: the URLs of a
#: process's endpoints, each parsed and normalised once (bounded: cleared when full).
_prepared_urls: dict[str, tuple[str, str]] = {}
_PREPARED_URLS_MAX = 4096


def _prepare(url: str, body: bytes, headers: dict[str, str],
             ) -> tuple[requests.PreparedRequest, str]:
    """The prepared POST of ``body`` to ``url`` with ``headers`` (after the session's, which
    they replace), and the path it goes to. Headers are checked as ``requests`` checks them
    (``InvalidHeader``); so is the URL (``InvalidURL``, ``MissingSchema``...), once."""
    request = requests.PreparedRequest()
    request.method = "POST"
    known = _prepared_urls.get(url)
    if known is None:
        request.prepare_url(url, None)
        known = (request.url or "", request.path_url)
        if len(_prepared_urls) >= _PREPARED_URLS_MAX:
            _prepared_urls.clear()
        _prepared_urls[url] = known
    request.url = known[0]
    request.prepare_headers({**_session_headers, **headers})
    request.headers["Content-Length"] = str(len(body))
    request.body = body
    return request, known[1]


def _after_fork_in_child() -> None:
    # A lock held by another thread at the moment of fork() would stay held in the child.
    global _session_lock
    _session_lock = threading.Lock()
    _watchdog._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    connect_timeout: float,
    read_timeout: float | None = None,
    max_response_bytes: int,
    max_header_bytes: int = MAX_HEADER_BYTES,
    max_headers: int = MAX_HEADERS,
    allowed_networks: Sequence[ssrf.IPNetwork] = (),
    require_https: bool = False,
    ca_bundle: str | None = None,
) -> HttpResult:
    """POST ``body`` to ``url`` within ``timeout`` seconds in all; classify any failure.

    ``connect_timeout`` bounds connecting (TCP and TLS), ``read_timeout`` each silence of the
    receiver, and ``timeout`` the whole exchange (a watchdog enforces it even against a slow
    drip). Safe to call from several threads at once.

    The answer's head (status line and headers, interim answers included) may hold at most
    ``max_header_bytes`` bytes and ``max_headers`` header lines: past either, reading stops
    and the attempt fails with ``response_too_large`` (no headers are kept). The answer is
    complete when its body has ended or ``max_response_bytes`` of it have been read,
    whichever comes first: the rest of a longer body is never read (the connection is
    closed instead). So a 2xx with an endless body succeeds once that much has arrived within
    the deadline; a 2xx whose body stops short (the receiver closes or resets the connection
    early), drips past the deadline, or is not valid HTTP is a failure.

    For an answer that is not 2xx the status decides: a failure while reading its body is
    not recorded as the error (the body read so far is kept).

    ``error_class`` is ``""`` or one of :data:`ERROR_CLASSES`. Only ``blocked`` is not worth
    retrying (``retryable`` is ``False``). Error messages name no resolved address.
    """
    started = time.monotonic()
    result = HttpResult()
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("http", "https") or (require_https and scheme != "https"):
        result.error_class, result.retryable = "blocked", False
        result.error = "only https URLs are allowed" if require_https else \
            "only http and https URLs are allowed"
        return result
    ctx = _Request(allowed_networks=tuple(allowed_networks), deadline=started + timeout,
                   max_header_bytes=max_header_bytes, max_headers=max_headers)
    _current.request = ctx
    _watchdog.watch(ctx)
    response = None
    received = bytearray()
    completed_at: float | None = None
    try:
        request, path = _prepare(url, body, headers)
        response = _get_adapter().send_post(
            request, path, urllib3.Timeout(connect=connect_timeout, read=read_timeout or timeout),
            ca_bundle or True)
        ctx.phase = _BODY
        result.status_code = response.status
        result.headers = dict(response.headers.items())
        problem = _bad_head(response)
        if problem:  # the body's framing cannot be trusted: it is not read
            if not _status_decides(result):
                result.error_class, result.error = problem
        else:
            _read_capped(response, max_response_bytes, received)
        completed_at = time.monotonic()
    except ssrf.BlockedDestination as exc:
        result.error_class, result.error, result.retryable = "blocked", exc.reason, False
    except Exception as exc:
        if not _status_decides(result):
            result.error_class, result.error = _classify(exc, ctx, timeout)
    finally:
        _watchdog.finish(ctx)
        _current.request = None
        if response is not None:
            response.close()  # a body left unread closes the connection: never reused
            response.release_conn()
    result.body = bytes(received)
    # The watchdog cuts at the deadline, so an answer completed before it is not late even if
    # the watchdog fired while this thread was still on its way out.
    late = completed_at is None or completed_at > ctx.deadline
    if ctx.timed_out and late and not _status_decides(result):
        result.error_class = "timeout"
        result.error = f"no complete answer within {timeout:g}s"
    result.duration = time.monotonic() - started
    return result


def _status_decides(result: HttpResult) -> bool:
    """A final answer that is not 2xx: it failed whatever its body does."""
    return result.status_code is not None and not 100 <= result.status_code < 300 \
        and result.error_class == ""


def _bad_head(response: Any) -> tuple[str, str] | None:
    """Why an answer whose status line and headers parsed is still not a usable HTTP answer
    (``response``: urllib3's)."""
    if response.status < 200:
        # http.client takes an interim answer (other than 100) for the final one, and the
        # real answer would then be read as the next request's: never reuse the connection.
        return "invalid_response", f"an interim answer ({response.status}) is not final"
    original = getattr(response, "_original_response", None)
    if original is not None and (original.msg.defects or original.msg.get_payload()):
        try:
            assert_header_parsing(original.msg)
        except urllib3.exceptions.HeaderParsingError:
            return "invalid_response", "malformed header section"
    length = response.headers.get("Content-Length")
    if length is not None and "Transfer-Encoding" not in response.headers:
        values = {value.strip() for value in length.split(",")}
        if len(values) != 1 or not all(value.isdigit() for value in values):
            return "invalid_response", "invalid Content-Length"
    return None


_RESETS = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
           http.client.IncompleteRead, urllib3.exceptions.IncompleteRead, ssl.SSLEOFError,
           ssl.SSLZeroReturnError)
_TIMEOUTS = (TimeoutError, urllib3.exceptions.TimeoutError, requests.exceptions.Timeout)
_MALFORMED = (http.client.HTTPException, urllib3.exceptions.InvalidChunkLength,
              urllib3.exceptions.InvalidHeader, urllib3.exceptions.HeaderParsingError,
              ValueError)


def _classify(exc: Exception, ctx: _Request, timeout: float) -> tuple[str, str]:
    """The error class and message of a failed request, from the exception chain and from
    where the request was (``ctx.phase``)."""
    chain = list(_chain(exc))

    def find(kinds: type[BaseException] | tuple[type[BaseException], ...]) -> Any:
        return next((e for e in chain if isinstance(e, kinds)), None)

    if ctx.timed_out:
        return "timeout", f"no complete answer within {timeout:g}s"
    if find(urllib3.exceptions.NameResolutionError):
        return "dns_error", "the host name does not resolve to an address webhooks may be sent to"
    if isinstance(exc, requests.exceptions.InvalidHeader) and ctx.phase == _CONNECT:
        return "invalid_url", "a custom header is not valid"  # never echo header values
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema
                  | requests.exceptions.MissingSchema | requests.exceptions.URLRequired):
        return "invalid_url", _first_line(exc)
    if ctx.phase == _CONNECT and find(ConnectionRefusedError):
        return "connection_refused", "the receiver refused the connection"
    # (urllib3's NewConnectionError subclasses its ConnectTimeoutError: it is no timeout.)
    timeouts = [e for e in chain if isinstance(e, _TIMEOUTS)
                and not isinstance(e, urllib3.exceptions.NewConnectionError)]
    if timeouts and (ctx.phase in (_CONNECT, _TLS) or any(
            isinstance(e, urllib3.exceptions.ConnectTimeoutError) for e in timeouts)):
        return "connect_timeout", "no connection within the connect timeout"
    if timeouts:
        return "read_timeout", "the receiver stopped answering"
    tls = find(ssl.SSLError)
    if ctx.phase == _TLS or (tls is not None and not isinstance(tls, _RESETS)):
        return "tls_error", _tls_detail(tls)
    if ctx.phase == _CONNECT:
        cause = find(OSError)
        return "connection_error", f"could not connect: {_os_detail(cause, exc)}"
    if find(ResponseHeadTooLarge) or find(http.client.LineTooLong) \
            or _too_many_headers(find(http.client.HTTPException)):
        return "response_too_large", "the response head is too large"
    if find(urllib3.exceptions.InvalidChunkLength):  # (an IncompleteRead, but no reset)
        return "invalid_response", "not a valid HTTP answer: invalid chunk length"
    premature = any(str(e) == "Response ended prematurely" for e in chain
                    if isinstance(e, urllib3.exceptions.ProtocolError))
    if find(_RESETS) or premature:
        return "connection_reset", ("the receiver closed the connection while answering"
                                    if ctx.phase == _BODY else
                                    "the receiver closed the connection without answering")
    malformed = find(_MALFORMED)
    if malformed is not None:
        return "invalid_response", f"not a valid HTTP answer: {_first_line(malformed)[:200]}"
    if isinstance(exc, requests.exceptions.RequestException | urllib3.exceptions.HTTPError
                  | OSError):
        return "connection_error", _first_line(exc)
    raise exc


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps (causes, contexts, ``reason``, ``args``)."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [current.__cause__, current.__context__, getattr(current, "reason", None),
                  *current.args[:3]]


def _too_many_headers(exc: BaseException | None) -> bool:
    return exc is not None and type(exc) is http.client.HTTPException and \
        str(exc).startswith("got more than")


def _tls_detail(exc: BaseException | None) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"TLS handshake failed: {exc.reason}"
    return "TLS handshake failed"


def _os_detail(cause: BaseException | None, exc: BaseException) -> str:
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return _first_line(cause or exc)


def _read_capped(response: Any, limit: int, into: bytearray) -> None:
    """Read the body into ``into`` until it ends or ``limit`` bytes are in (what is read so
    far stays in ``into`` if reading fails)."""
    for chunk in response.stream(8192, decode_content=False):
        into += chunk[:limit - len(into)]
        if len(into) >= limit:
            return


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:500]
