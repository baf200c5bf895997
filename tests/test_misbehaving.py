"""Misbehaving receivers (issue #6): each one a real loopback peer, driven through the real
pipeline (``send_event`` → ``fan_out`` → ``drain``), ends as the contract says, with its own
error class on the attempt, in bounded time and memory.

Covered elsewhere and not repeated here: redirects are not followed and every 3xx is a
``redirect`` (test_delivery), a 410 stops the rest of the batch (test_delivery), a body or
header section dripping a byte at a time (test_security), an untrusted or misnamed certificate,
DNS failures and every SSRF refusal (test_security), ``retry_delay`` and
``parse_retry_after`` as functions (test_delivery).
"""

from __future__ import annotations

import email.utils
import socket
import ssl
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

import webhooks
from tests.helpers import make_endpoint
from tests.rawserver import RawServer
from tests.receiver import Receiver, Reply
from webhooks import http, ssrf
from webhooks.delivery.fanout import fan_out
from webhooks.delivery.loop import drain
from webhooks.models import Delivery, DeliveryAttempt, Endpoint

pytestmark = pytest.mark.django_db

TIMEOUT, READ_TIMEOUT, CONNECT_TIMEOUT = 1.5, 0.5, 0.5
FIRST_RETRY = 60  # seconds: the schedule's first delay, no jitter
STORED = 1000
#: Wall time one drain of one delivery may take: the deadline, plus room for a busy machine.
TIME_BOUND = TIMEOUT + 2.0
#: Python memory one drain of one delivery may allocate at its peak (tracemalloc).
MEMORY_BOUND = 8 * 1024 * 1024


@pytest.fixture(autouse=True)
def _small_limits(settings: Any) -> None:
    settings.WEBHOOKS = {
        **settings.WEBHOOKS,
        "TIMEOUT": TIMEOUT, "READ_TIMEOUT": READ_TIMEOUT, "CONNECT_TIMEOUT": CONNECT_TIMEOUT,
        "RETRY_SCHEDULE": [FIRST_RETRY, FIRST_RETRY], "RETRY_JITTER": 0,
        "MAX_RESPONSE_BYTES": 64 * 1024, "STORED_RESPONSE_BYTES": STORED, "CLAIM_TTL": 10,
        "ALLOWED_NETWORKS": ["127.0.0.0/8"],
    }


@dataclass
class Sent:
    delivery: Delivery
    attempt: DeliveryAttempt
    endpoint: Endpoint
    elapsed: float  # seconds the drain took
    peak: int  # bytes: tracemalloc's peak during the drain
    before: datetime  # just before and just after the drain
    after: datetime


def send(url: str) -> Sent:
    """One event to a new endpoint at ``url``, drained once, measured."""
    endpoint = make_endpoint(url)
    event = webhooks.send_event("invoice.paid", {"n": 1})
    fan_out([str(event.id)])
    tracemalloc.start()
    try:
        before, started = timezone.now(), time.monotonic()
        drain()
        elapsed, after = time.monotonic() - started, timezone.now()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    delivery = Delivery.objects.select_related("endpoint").get(endpoint=endpoint)
    return Sent(delivery, delivery.attempt_log.get(), delivery.endpoint, elapsed, peak, before,
                after)


def assert_bounded(sent: Sent) -> None:
    assert sent.elapsed < TIME_BOUND, sent.elapsed
    assert sent.attempt.duration <= TIMEOUT + 0.5, sent.attempt.duration
    assert sent.peak < MEMORY_BOUND, sent.peak
    assert len(sent.attempt.response_body) <= STORED


def assert_retrying_after(sent: Sent, delay: float, slack: float = 1.0) -> None:
    """The delivery waits ``delay`` seconds (within ``slack``) after its attempt ended, and the
    contract's bounds hold: never sooner than the schedule, never later than twice it."""
    delivery, attempt = sent.delivery, sent.attempt
    assert (delivery.status, delivery.attempts, delivery.claim_token) == ("pending", 1, None)
    assert delivery.next_attempt_at is not None
    waits = (delivery.next_attempt_at - attempt.created_at).total_seconds() - attempt.duration
    assert FIRST_RETRY - slack <= waits <= 2 * FIRST_RETRY + slack, waits
    assert abs(waits - delay) <= slack, waits


# --- raw peers -----------------------------------------------------------------------------------


def hang_up_hard(conn: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0) instead of an orderly FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def reset_mid_response(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
    time.sleep(0.05)
    hang_up_hard(conn)


def reset_before_answering(conn: socket.socket) -> None:
    hang_up_hard(conn)


def close_before_answering(conn: socket.socket) -> None:
    pass  # the request was read; an orderly close, no answer


def headers_never_sent(conn: socket.socket) -> None:
    time.sleep(TIMEOUT + 1)


def slow_drip_chunked(conn: socket.socket) -> None:
    # Each chunk comes well within READ_TIMEOUT: only the total deadline can stop this one.
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(100):
        conn.sendall(b"1\r\nx\r\n")
        time.sleep(0.1)


def invalid_status_line(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 OK 200\r\nContent-Length: 2\r\n\r\nok")


def malformed_headers(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nthis line is no header\r\nContent-Length: 2\r\n\r\nok")


def endless_header_section(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for n in range(100_000):
        conn.sendall(b"X-More-%d: %s\r\n" % (n, b"h" * 100))


def interim_answer_only(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                 b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


@pytest.fixture
def refused_url() -> str:
    with socket.socket() as s:  # a port nobody listens on (bound, never listening)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# --- TLS peers -----------------------------------------------------------------------------------


@dataclass
class TlsPeer:
    context: ssl.SSLContext
    ca_file: str


@pytest.fixture
def expired_tls(tmp_path: Path) -> TlsPeer:
    """A server whose certificate chains to a trusted CA and names the host, but expired."""
    import trustme

    ca = trustme.CA()
    now = datetime.now(UTC)
    cert = ca.issue_cert("loopback.example.com", not_before=now - timedelta(days=30),
                         not_after=now - timedelta(days=1))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return TlsPeer(context, str(ca_file))


def answer_ok(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


# --- the issue's list: one distinct error class each -----------------------------------------

#: (case, error class the attempt gets). Status-code classes come from webhooks.delivery.sending.
ISSUE_CASES = {
    "connection refused": "connection_refused",
    "reset mid-response": "connection_reset",
    "headers never sent": "read_timeout",
    "slow drip": "timeout",
    "invalid status line": "invalid_response",
    "TLS failure": "tls_error",
    "3xx": "redirect",
    "410": "gone",
    "429": "rate_limited",
    "503": "http_status",
}


def test_each_misbehaviour_of_the_issue_has_its_own_error_class() -> None:
    assert len(set(ISSUE_CASES.values())) == len(ISSUE_CASES)
    transport = {c for c in ISSUE_CASES.values()
                 if c not in ("redirect", "gone", "rate_limited", "http_status")}
    assert transport <= set(http.ERROR_CLASSES)


def test_connection_refused(refused_url: str) -> None:
    sent = send(refused_url)
    assert (sent.attempt.error_class, sent.attempt.status_code) == ("connection_refused", None)
    assert "127.0.0.1" not in sent.attempt.error
    assert_retrying_after(sent, FIRST_RETRY)
    assert_bounded(sent)


@pytest.mark.parametrize("peer,status_code", [
    (reset_mid_response, 200),       # the status came, the body did not
    (reset_before_answering, None),  # RST right after the request was read
    (close_before_answering, None),  # FIN, no answer
])
def test_a_receiver_that_hangs_up(peer: Callable[[socket.socket], None],
                                  status_code: int | None) -> None:
    with RawServer(peer) as server:
        sent = send(server.url)
    assert (sent.attempt.error_class, sent.attempt.status_code) == ("connection_reset",
                                                                    status_code)
    assert_retrying_after(sent, FIRST_RETRY)
    assert_bounded(sent)


def test_headers_never_sent() -> None:
    with RawServer(headers_never_sent) as server:
        sent = send(server.url)
    assert (sent.attempt.error_class, sent.attempt.status_code) == ("read_timeout", None)
    assert READ_TIMEOUT - 0.1 <= sent.attempt.duration < TIMEOUT
    assert_retrying_after(sent, FIRST_RETRY)
    assert_bounded(sent)


def test_a_slow_drip_is_cut_at_the_total_deadline() -> None:
    with RawServer(slow_drip_chunked) as server:
        sent = send(server.url)
    assert sent.attempt.error_class == "timeout"
    assert sent.attempt.status_code == 200  # the head came in time; the body never ended
    assert TIMEOUT - 0.1 <= sent.attempt.duration <= TIMEOUT + 0.5
    assert_retrying_after(sent, FIRST_RETRY)
    assert_bounded(sent)


@pytest.mark.parametrize("peer,error_class", [
    (invalid_status_line, "invalid_response"),
    (malformed_headers, "invalid_response"),
    (interim_answer_only, "invalid_response"),
    (endless_header_section, "response_too_large"),
])
def test_answers_that_are_not_http(peer: Callable[[socket.socket], None],
                                   error_class: str) -> None:
    with RawServer(peer) as server:
        sent = send(server.url)
    assert sent.attempt.error_class == error_class
    assert sent.delivery.status == "pending"  # never a success, even behind "200 OK"
    assert_retrying_after(sent, FIRST_RETRY)
    assert_bounded(sent)


def test_an_expired_certificate(expired_tls: TlsPeer, settings: Any) -> None:
    settings.WEBHOOKS = {**settings.WEBHOOKS, "CA_BUNDLE": expired_tls.ca_file}
    with RawServer(answer_ok, ssl_context=expired_tls.context) as server:
        sent = send(f"https://loopback.example.com:{server.port}/hook")
    assert (sent.attempt.error_class, sent.attempt.status_code) == ("tls_error", None)
    assert "expired" in sent.attempt.error
    assert_retrying_after(sent, FIRST_RETRY)
    assert_bounded(sent)


def plain_http_answer(conn: socket.socket) -> None:
    conn.recv(4096)  # a TLS ClientHello, taken for a request
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def test_a_plain_http_server_behind_an_https_url() -> None:
    with RawServer(plain_http_answer, raw=True) as server:
        sent = send(f"https://127.0.0.1:{server.port}/hook")
    assert (sent.attempt.error_class, sent.attempt.status_code) == ("tls_error", None)
    assert_retrying_after(sent, FIRST_RETRY)
    assert_bounded(sent)


def test_a_tls_handshake_that_never_comes_is_a_connect_timeout() -> None:
    with RawServer(headers_never_sent, raw=True) as server:  # accepts, never speaks TLS
        sent = send(f"https://127.0.0.1:{server.port}/hook")
    assert (sent.attempt.error_class, sent.attempt.status_code) == ("connect_timeout", None)
    assert CONNECT_TIMEOUT - 0.1 <= sent.attempt.duration < TIMEOUT
    assert_retrying_after(sent, FIRST_RETRY)
    assert_bounded(sent)


# --- endless bodies ------------------------------------------------------------------------------

STREAM = 64 * 1024 * 1024  # what an endless peer offers: far more than anything we keep


class EndlessBody:
    """A peer that answers ``status`` and then streams up to STREAM bytes of chunked body."""

    def __init__(self, status: bytes) -> None:
        self.status = status
        self.sent = 0
        self.hung_up = threading.Event()

    def __call__(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 " + self.status + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b"z" * 65536)
        try:
            while self.sent < STREAM:
                conn.sendall(chunk)
                self.sent += 65536
        except OSError:
            self.hung_up.set()


@pytest.mark.parametrize("status,state", [(b"200 OK", "succeeded"),
                                          (b"500 Internal Server Error", "pending")])
def test_an_endless_body_is_read_up_to_the_cap_only(status: bytes, state: str) -> None:
    """Behind a 2xx, an endless body is a success once MAX_RESPONSE_BYTES have arrived within
    the deadline: the rest is never read, the connection is closed instead. Behind any other
    status the status decides."""
    peer = EndlessBody(status)
    with RawServer(peer) as server:
        sent = send(server.url)
        assert peer.hung_up.wait(5)  # we hung up on it...
    assert peer.sent < STREAM  # ...long before the end
    assert sent.delivery.status == state
    assert sent.attempt.error_class == ("" if state == "succeeded" else "http_status")
    assert sent.attempt.response_body == "z" * STORED
    assert sent.peak < 1024 * 1024  # (about 0.2 MiB measured, against a 64 MiB stream)
    assert_bounded(sent)


# --- status codes (classes assigned in webhooks.delivery.sending) ---------------------------


def test_3xx_is_a_retried_redirect(receiver: Receiver) -> None:
    receiver.script("/hook", Reply(303, headers={"Location": "http://169.254.169.254/"}))
    sent = send(receiver.url())
    assert (sent.attempt.status_code, sent.attempt.error_class) == (303, "redirect")
    assert len(receiver.received()) == 1
    assert_retrying_after(sent, FIRST_RETRY)
    assert_bounded(sent)


def test_410_fails_the_delivery_and_disables_the_endpoint(receiver: Receiver) -> None:
    receiver.script("/hook", Reply(410))
    sent = send(receiver.url())
    assert sent.attempt.status_code == 410
    assert (sent.delivery.status, sent.delivery.next_attempt_at) == ("failed", None)
    assert not sent.endpoint.is_active and sent.endpoint.disabled_at is not None
    assert sent.attempt.error_class == "gone"
    assert_bounded(sent)


def http_date_in(seconds: int) -> str:
    return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=seconds),
                                       usegmt=True)


RETRY_AFTER = [  # (id, header value or a function making it, expected delay)
    ("seconds", "90", 90),
    ("http-date", lambda: http_date_in(90), 90),
    ("absurd", str(10**12), 2 * FIRST_RETRY),  # capped at twice the schedule
    ("negative", "-5", FIRST_RETRY),           # garbage: the schedule
    ("garbage", "soon, promise", FIRST_RETRY),
    ("empty", "", FIRST_RETRY),
]


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("value,expected", [(v, e) for _, v, e in RETRY_AFTER],
                         ids=[name for name, _, _ in RETRY_AFTER])
def test_retry_after_is_honoured_within_bounds(receiver: Receiver, status: int, value: Any,
                                               expected: float) -> None:
    header = value() if callable(value) else value
    receiver.script("/hook", Reply(status, b"busy", headers={"Retry-After": header}))
    sent = send(receiver.url())
    assert sent.attempt.status_code == status
    assert sent.attempt.response_headers.get("Retry-After") == header
    # An HTTP date has whole seconds: up to one second less than asked.
    assert_retrying_after(sent, expected, slack=2.0 if callable(value) else 1.0)
    assert sent.endpoint.is_active
    assert_bounded(sent)
    if status == 503:
        assert sent.attempt.error_class == "http_status"
        return
    assert sent.attempt.error_class == "rate_limited"
    assert sent.endpoint.paused_until is not None  # flow control: the endpoint waits too
    assert sent.endpoint.paused_until > sent.before


# --- many threads, one client -------------------------------------------------------------------

NETS = ssrf.parse_networks(["127.0.0.0/8"])


def post(url: str, body: bytes = b"{}", *, timeout: float = 5.0,
         read_timeout: float | None = None) -> http.HttpResult:
    return http.post(url, body, {"Content-Type": "application/json"}, timeout=timeout,
                     connect_timeout=1.0, read_timeout=read_timeout, max_response_bytes=4096,
                     allowed_networks=NETS)


def drip_forever(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(200):
        conn.sendall(b"d")
        time.sleep(0.05)


@pytest.fixture
def fleet() -> Iterator[dict[str, Any]]:
    with Receiver(default=Reply(echo=True)) as a, Receiver(default=Reply(echo=True)) as b, \
            Receiver(default=Reply(echo=True, delay=0.3)) as slow, \
            Receiver(default=Reply(delay=3)) as silent, RawServer(drip_forever) as drip:
        yield {"a": a, "b": b, "slow": slow, "silent": silent, "drip": drip}


def test_concurrent_posts_get_their_own_answers_and_deadlines(fleet: dict[str, Any]) -> None:
    """Twelve threads post at once through the one session (sharing its pools and kept-alive
    connections) to fast, slow, silent and dripping receivers: every answer is the one to its
    own request, and every deadline cuts its own request only, on time."""
    plan: list[tuple[str, float]] = [  # (target, this thread's deadline)
        ("a", 5), ("a", 5), ("a", 5), ("b", 5), ("b", 5), ("slow", 5), ("slow", 5),
        ("drip", 0.6), ("drip", 1.2), ("silent", 5), ("a", 5), ("b", 5),
    ]
    rounds = 4
    results: dict[int, list[tuple[bytes, http.HttpResult]]] = {i: [] for i in range(len(plan))}
    barrier = threading.Barrier(len(plan))

    def worker(index: int, target: str, deadline: float) -> None:
        server = fleet[target]
        barrier.wait()
        for n in range(rounds if target in ("a", "b", "slow") else 1):
            path = f"/t{index}/r{n}"
            body = b'{"thread": %d, "round": %d}' % (index, n)
            url = server.url if target == "drip" else server.url(path)
            read_timeout = 0.4 if target == "silent" else None
            results[index].append((path.encode() + b" " + body,
                                   post(url, body, timeout=deadline,
                                        read_timeout=read_timeout)))

    threads = [threading.Thread(target=worker, args=(i, t, d), name=f"poster-{i}")
               for i, (t, d) in enumerate(plan)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    for index, (target, deadline) in enumerate(plan):
        for expected, result in results[index]:
            if target in ("a", "b", "slow"):
                assert (result.status_code, result.error_class) == (200, ""), result
                assert result.body == expected  # its own answer, never another thread's
                assert result.duration < deadline
            elif target == "drip":
                assert result.error_class == "timeout", result
                assert deadline - 0.05 <= result.duration <= deadline + 0.5
            else:
                assert result.error_class == "read_timeout", result
                assert result.duration < 1.5
    # The connections were shared: fewer of them than requests to the fast receivers.
    for name in ("a", "b"):
        requests = fleet[name].received()
        assert len({r.client for r in requests}) < len(requests)


def test_a_deadline_never_cuts_a_connection_its_request_handed_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Request A gets its answer and hands its kept-alive connection back to the pool; B takes
    it at once. A's deadline then passes (A's thread is still on its way out): it must not cut
    B's request, and A, answered in time, is a success."""
    handed_back = threading.Event()
    real_finish = http._watchdog.finish

    def slow_finish(ctx: Any) -> None:
        if threading.current_thread().name == "request-a":
            handed_back.set()
            time.sleep(1.0)  # A's deadline (0.3 s) passes here
        real_finish(ctx)

    monkeypatch.setattr(http._watchdog, "finish", slow_finish)
    with Receiver(default=Reply(echo=True)) as receiver:
        receiver.script("/b", Reply(200, b"answer for b", delay=0.6))
        results: dict[str, http.HttpResult] = {}
        first = threading.Thread(
            target=lambda: results.update(a=post(receiver.url("/a"), timeout=0.3)),
            name="request-a")
        first.start()
        assert handed_back.wait(5)
        results["b"] = post(receiver.url("/b"))
        first.join(5)
        a, b = receiver.received()
    assert a.client == b.client  # B did run on A's connection
    assert (results["b"].status_code, results["b"].body) == (200, b"answer for b"), results["b"]
    assert (results["a"].status_code, results["a"].error_class) == (200, "")


def test_receivers_cookies_are_never_kept(receiver: Receiver) -> None:
    receiver.script("/hook", Reply(200, headers={"Set-Cookie": "session=abc; Path=/"}))
    assert post(receiver.url()).ok
    assert post(receiver.url()).ok
    assert [r.headers.get("cookie") for r in receiver.received()] == [None, None]
    assert len(http.get_session().cookies) == 0


# --- documentation ---------------------------------------------------------------------------


def test_every_error_class_is_documented() -> None:
    text = (Path(__file__).parent.parent / "docs" / "observability.md").read_text()
    section = text.split("## Error classes", 1)[1].split("\n## ", 1)[0]
    for name in [*http.ERROR_CLASSES, "redirect", "gone", "rate_limited", "http_status"]:
        assert f"| `{name}` |" in section, name
