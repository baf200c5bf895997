"""SSRF guard, limits and secrets: every refused case is proven against a live listener."""

from __future__ import annotations

import ast
import gzip
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import webhooks
from tests.factories import make_endpoint, make_user
from tests.helpers import override_webhooks, run_command
from tests.rawserver import RawServer, read_request
from tests.receiver import Receiver, Reply
from webhooks import ssrf
from webhooks.delivery.fanout import fan_out
from webhooks.delivery.loop import drain
from webhooks.encryption import decrypt, uses_newest_key
from webhooks.exceptions import PayloadError
from webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event
from webhooks.validators import header_errors, validate_endpoint_url

pytestmark = pytest.mark.django_db
NO_ALLOWLIST = {"ALLOWED_NETWORKS": []}
LOOPBACK = ["127.0.0.0/8", "::1/128"]


def send_to(url: str) -> tuple[Delivery, DeliveryAttempt]:
    """Publish one event to a new endpoint at ``url`` (only), deliver it, return the result."""
    Endpoint.objects.update(is_active=False)
    endpoint = make_endpoint(url)
    event = webhooks.send_event("invoice.paid", {"n": 1})
    fan_out([str(event.id)])
    drain()
    delivery = Delivery.objects.get(endpoint=endpoint)
    return delivery, delivery.attempt_log.get()


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


# --- the address classifier --------------------------------------------------------------------

BLOCKED = [
    "127.0.0.1", "127.255.255.254", "0.0.0.0", "10.1.2.3", "172.16.0.1", "172.31.255.255",
    "192.168.0.1", "100.64.0.1", "100.100.100.200", "169.254.169.254", "169.254.0.1",
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "198.18.0.1",
    "198.19.255.255", "192.0.2.1", "198.51.100.1", "203.0.113.1", "192.0.0.192",
    "192.88.99.1",
    "::1", "::", "fe80::1", "fe80::1%1", "fc00::1", "fd00:ec2::254", "ff02::1", "ff05::2",
    "::ffff:127.0.0.1", "::ffff:7f00:1", "::127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b:1::1", "2002:7f00:1::1", "2002:a9fe:a9fe::1",
    "2001::1", "2001:2::1", "2001:db8::1", "3fff::1", "100::1", "fec0::1", "::8.8.8.8",
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "::ffff:8.8.8.8", "64:ff9b::808:808",
           "2002:808:808::1", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e",
           "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0", "192.169.0.0"]


@pytest.mark.parametrize("address", BLOCKED)
def test_refused_addresses(address: str) -> None:
    assert ssrf.blocked_reason(ssrf.parse_address(address)) is not None
    assert not ssrf.is_allowed(ssrf.parse_address(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses(address: str) -> None:
    assert ssrf.blocked_reason(ssrf.parse_address(address)) is None


def test_allowlist_is_the_only_escape_hatch() -> None:
    nets = ssrf.parse_networks(["127.0.0.0/8", "10.1.0.0/16"])
    assert ssrf.is_allowed(ipaddress.ip_address("127.0.0.1"), nets)
    assert ssrf.is_allowed(ipaddress.ip_address("::ffff:127.0.0.1"), nets)  # same host
    assert ssrf.is_allowed(ipaddress.ip_address("10.1.2.3"), nets)
    assert not ssrf.is_allowed(ipaddress.ip_address("10.2.0.1"), nets)
    assert not ssrf.is_allowed(ipaddress.ip_address("169.254.169.254"), nets)
    assert not ssrf.is_allowed(ipaddress.ip_address("::1"), nets)


_v4_blocked = st.sampled_from([net for net, _ in ssrf.BLOCKED_IPV4]).flatmap(
    lambda net: st.integers(int(net.network_address), int(net.broadcast_address)))


@given(_v4_blocked)
@hsettings(max_examples=300)
def test_every_ipv6_form_of_a_blocked_ipv4_is_blocked(value: int) -> None:
    v4 = ipaddress.IPv4Address(value)
    assert ssrf.blocked_reason(v4) is not None
    for v6 in (0xFFFF_0000_0000 | value,              # ::ffff:a.b.c.d (mapped)
               value,                                 # ::a.b.c.d (compatible)
               (0x64FF9B << 96) | value,              # 64:ff9b::a.b.c.d (NAT64)
               (0x2002 << 112) | (value << 80)):      # 2002:aabb:ccdd:: (6to4)
        assert ssrf.blocked_reason(ipaddress.IPv6Address(v6)) is not None


@given(st.integers(0, 2**32 - 1))
@hsettings(max_examples=500)
def test_mapped_form_agrees_with_ipv4(value: int) -> None:
    v4 = ipaddress.IPv4Address(value)
    mapped = ipaddress.IPv6Address(0xFFFF_0000_0000 | value)
    assert (ssrf.blocked_reason(v4) is None) == (ssrf.blocked_reason(mapped) is None)


@given(st.integers(0, 2**128 - 1))
@hsettings(max_examples=500)
def test_only_global_unicast_ipv6_passes_unless_it_embeds_a_public_ipv4(value: int) -> None:
    address = ipaddress.IPv6Address(value)
    if ssrf.blocked_reason(address) is None:
        assert address in ipaddress.IPv6Network("2000::/3") or \
            ssrf.embedded_ipv4(address) is not None


# --- the guard, against a live listener ----------------------------------------------------------

ODD_LOOPBACK_URLS = [
    "http://127.0.0.1:{port}/hook",
    "http://localhost:{port}/hook",
    "http://2130706433:{port}/hook",        # decimal
    "http://0x7f000001:{port}/hook",        # hex
    "http://017700000001:{port}/hook",      # octal
    "http://127.1:{port}/hook",             # shortened
    "http://0x7f.1:{port}/hook",
    "http://0177.0.0.1:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook",  # IPv4-mapped IPv6
    "http://[::ffff:7f00:1]:{port}/hook",
]
#: Names that resolve to refused addresses (in tests/conftest.py's resolver). Whether a name
#: resolves inside the network is not the API user's business: such a name is accepted when
#: saved, like a name that does not resolve, and its deliveries fail like those of a name that
#: does not resolve.
INTERNAL_NAMES = [
    "http://loopback.example.com:{port}/hook",
    "http://metadata.example.com/latest/meta-data/",   # resolves to 169.254.169.254
    "http://internal.example.com/",                    # resolves to 10.0.0.5
    "http://mixed.example.com/",                       # one public, one private answer
]


@pytest.mark.parametrize("template", ODD_LOOPBACK_URLS)
def test_loopback_in_any_notation_is_refused_and_nothing_reaches_it(
    receiver: Receiver, template: str
) -> None:
    url = template.format(port=receiver.port)
    with override_webhooks(**NO_ALLOWLIST):
        delivery, attempt = send_to(url)
        with pytest.raises(ValidationError) as info:
            validate_endpoint_url(url)
    assert receiver.received() == []
    assert attempt.error_class == "blocked"
    assert attempt.status_code is None
    assert delivery.status == "failed"  # refused by policy: not retried
    assert delivery.next_attempt_at is None
    message = " ".join(info.value.messages)
    assert "private, loopback or reserved" in message
    assert "127." not in message and "127." not in attempt.error  # no address revealed


@pytest.mark.parametrize("template", [*ODD_LOOPBACK_URLS, INTERNAL_NAMES[0]])
def test_the_same_urls_deliver_with_the_allowlist(receiver: Receiver, template: str) -> None:
    with override_webhooks(ALLOWED_NETWORKS=LOOPBACK):
        delivery, attempt = send_to(template.format(port=receiver.port))
        validate_endpoint_url(template.format(port=receiver.port))
    assert len(receiver.received()) == 1
    assert (delivery.status, attempt.status_code) == ("succeeded", 200)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8001/hook", "http://localhost:8001/hook"])
def test_a_refused_loopback_url_tells_a_developer_about_the_allowlist(url: str) -> None:
    """With DEBUG on, the refusal names ALLOWED_NETWORKS; with it off, users learn nothing of
    the site's settings. The quickstart's development allowlist then accepts the URL."""
    def refusal() -> str:
        with override_webhooks(**NO_ALLOWLIST), pytest.raises(ValidationError) as info:
            validate_endpoint_url(url)
        return " ".join(info.value.messages)

    with override_settings(DEBUG=True):
        message = refusal()
        assert "private, loopback or reserved" in message
        assert "WEBHOOKS['ALLOWED_NETWORKS']" in message and "never in production" in message
        with override_webhooks(ALLOWED_NETWORKS=["127.0.0.0/8"]):
            validate_endpoint_url(url)
    assert "ALLOWED_NETWORKS" not in refusal()


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback here")
@pytest.mark.parametrize("host", ["[::1]", "v6loopback.example.com"])
def test_ipv6_loopback_is_refused_and_allowlisted(host: str) -> None:
    with Receiver(host="::1") as v6:
        url = f"http://{host}:{v6.port}/hook"
        with override_webhooks(**NO_ALLOWLIST):
            _, attempt = send_to(url)
        refused = "blocked" if host.startswith("[") else "dns_error"  # a name: told nothing
        assert attempt.error_class == refused and v6.received() == []
        with override_webhooks(ALLOWED_NETWORKS=LOOPBACK):
            _, attempt = send_to(url)
        assert attempt.status_code == 200 and len(v6.received()) == 1


@pytest.mark.parametrize("url", [
    "http://0.0.0.0:9/", "http://[::]:9/", "http://[fe80::1]:9/",
    "http://[64:ff9b::7f00:1]:9/", "http://[::127.0.0.1]:9/", "http://[2002:7f00:1::1]:9/",
])
def test_private_destinations_are_refused_before_connecting(url: str) -> None:
    with override_webhooks(ALLOWED_NETWORKS=LOOPBACK):
        delivery, attempt = send_to(url)
    assert attempt.error_class == "blocked"
    assert delivery.status == "failed"


def api_view_of_attempt(delivery: Delivery) -> dict[str, Any]:
    """What the API shows the owner of ``delivery`` about it and its attempt, less what
    differs between any two deliveries (ids, times, the URL)."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(delivery.endpoint.owner)
    body = client.get(f"/api/webhooks/deliveries/{delivery.pk}/").json()
    (attempt,) = body["attempt_log"]
    shown = {key: body[key] for key in ("status", "attempts", "last_status_code", "last_error")}
    shown["retry_scheduled"] = body["next_attempt_at"] is not None
    shown.update({key: attempt[key] for key in ("status_code", "response_headers",
                                                "response_body", "error_class", "error")})
    return shown


@pytest.mark.parametrize("template", INTERNAL_NAMES)
def test_an_internal_name_is_refused_when_sent_as_if_it_did_not_resolve(
    receiver: Receiver, template: str,
) -> None:
    """Sending refuses a name that resolves to a refused address, but what the owner sees (the
    attempt's class and message, the delivery's state and retries) is exactly what a name that
    does not resolve gets: the API tells nothing about the names inside the network."""
    owner = make_user("owner")
    internal, unknown = template.format(port=receiver.port), "http://nowhere.example.org/hook"
    with override_webhooks(**NO_ALLOWLIST):
        views = []
        for url in (internal, unknown):
            Endpoint.objects.update(is_active=False)
            endpoint = make_endpoint(url, owner=owner)
            event = webhooks.send_event("invoice.paid", {"n": 1}, owner=owner)
            fan_out([str(event.id)])
            drain()
            views.append(api_view_of_attempt(Delivery.objects.get(endpoint=endpoint)))
    assert receiver.received() == []
    assert views[0] == views[1]
    assert views[0]["error_class"] == "dns_error" and views[0]["status"] == "pending"


def test_staff_learn_from_the_log_why_a_name_was_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="webhooks")
    with override_webhooks(**NO_ALLOWLIST):
        send_to("http://internal.example.com/hook")
    assert any("internal.example.com" in r.getMessage() and "refused" in r.getMessage().lower()
               for r in caplog.records if r.name.startswith("webhooks"))


def test_ipv6_zone_ids_never_connect() -> None:
    _, attempt = send_to("http://[fe80::1%251]:9/")
    assert attempt.error_class in ("blocked", "invalid_url")


def test_dns_rebinding_after_a_check_is_caught_at_send_time(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter(["93.184.215.14", "127.0.0.1"])  # public when checked, loopback when sent
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[Any]:
        calls.append(host)
        return socket.getaddrinfo(next(answers), port, type=socket.SOCK_STREAM)

    monkeypatch.setattr(ssrf, "_getaddrinfo", rebinding)
    url = f"http://rebind.example.com:{receiver.port}/hook"
    with override_webhooks(**NO_ALLOWLIST):
        validate_endpoint_url(url, resolve=True)  # looks public now (the staff's dry run)
        _, attempt = send_to(url)
    assert attempt.error_class == "dns_error"  # refused, and told like an unknown name
    assert receiver.received() == []
    assert calls == ["rebind.example.com", "rebind.example.com"]


def test_a_connection_goes_to_the_address_that_was_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The resolver answers an allowed address, then a refused one: the request goes to the
    first (checked) address, and the name is resolved once for the connection."""
    with Receiver(host="127.0.0.2") as allowed, \
            Receiver(host="127.0.0.1", port=allowed.port) as refused:
        answers = iter(["127.0.0.2", "127.0.0.1", "127.0.0.1"])
        calls: list[str] = []

        def flipping(host: str, port: int) -> list[Any]:
            calls.append(host)
            return socket.getaddrinfo(next(answers), port, type=socket.SOCK_STREAM)

        monkeypatch.setattr(ssrf, "_getaddrinfo", flipping)
        with override_webhooks(ALLOWED_NETWORKS=["127.0.0.2/32"]):
            delivery, attempt = send_to(f"http://flip.example.com:{allowed.port}/hook")
        assert (delivery.status, attempt.status_code) == ("succeeded", 200)
        assert len(allowed.received()) == 1
        assert refused.received() == []
        assert calls == ["flip.example.com"]
        assert allowed.received()[0].headers["host"] == f"flip.example.com:{allowed.port}"


def test_a_kept_alive_connection_is_checked_again_when_the_allowlist_shrinks(
    receiver: Receiver,
) -> None:
    with override_webhooks(ALLOWED_NETWORKS=LOOPBACK):
        send_to(receiver.url())  # opens a pooled keep-alive connection
    with override_webhooks(**NO_ALLOWLIST):
        _, attempt = send_to(receiver.url())
    assert attempt.error_class == "blocked"
    assert len(receiver.received()) == 1


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd",
                                 "gopher://127.0.0.1:70/", "javascript:alert(1)"])
def test_only_http_and_https(url: str) -> None:
    _, attempt = send_to(url)
    assert attempt.error_class == "blocked"
    with pytest.raises(ValidationError):
        validate_endpoint_url(url)


def test_require_https(receiver: Receiver) -> None:
    with override_webhooks(REQUIRE_HTTPS=True):
        delivery, attempt = send_to(receiver.url())
        with pytest.raises(ValidationError, match="https://"):
            validate_endpoint_url(receiver.url())
        validate_endpoint_url("https://example.com/hook")
    assert (attempt.error_class, delivery.status) == ("blocked", "failed")
    assert receiver.received() == []


def test_proxies_from_the_environment_are_ignored(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Receiver() as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "HTTPS_PROXY"):
            monkeypatch.setenv(name, proxy.url(""))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        _, attempt = send_to(receiver.url())
        assert attempt.status_code == 200
        assert proxy.received() == [] and len(receiver.received()) == 1


def test_responses_are_never_decompressed(receiver: Receiver) -> None:
    bomb = gzip.compress(b"0" * 10_000_000)
    assert b"\x00" in bomb  # binary garbage must be storable too (PostgreSQL refuses NUL)
    receiver.script("/hook", Reply(200, body=bomb, headers={"Content-Encoding": "gzip",
                                                            "X-Odd": "a\x00b"}))
    _, attempt = send_to(receiver.url())
    assert receiver.received()[0].headers["accept-encoding"] == "identity"
    assert attempt.status_code == 200
    assert "0" * 1000 not in attempt.response_body
    assert len(attempt.response_body.encode("utf-8", "surrogateescape")) <= 20_000 * 3


# --- limits --------------------------------------------------------------------------------------


def drip(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(100):
        conn.sendall(b"x")
        time.sleep(0.1)


def drip_headers(conn: socket.socket) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 100:
        conn.sendall(bytes([byte]))
        time.sleep(0.1)


def endless(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"z" * 65536)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        conn.sendall(chunk)


@pytest.mark.parametrize("behaviour", [drip, drip_headers])
@override_webhooks(TIMEOUT=1, READ_TIMEOUT=0.5, CONNECT_TIMEOUT=0.5, CLAIM_TTL=10)
def test_the_total_deadline_cuts_off_a_dripping_receiver(behaviour: Any) -> None:
    with RawServer(behaviour) as server:
        started = time.monotonic()
        delivery, attempt = send_to(server.url)
        elapsed = time.monotonic() - started
    assert attempt.error_class == "timeout"
    assert elapsed < 2.5
    assert 0.9 <= attempt.duration < 2
    assert delivery.status == "pending"  # a timeout is retried


@override_webhooks(MAX_RESPONSE_BYTES=100_000, STORED_RESPONSE_BYTES=500)
def test_an_endless_body_is_cut_at_the_byte_cap() -> None:
    with RawServer(endless) as server:
        started = time.monotonic()
        delivery, attempt = send_to(server.url)
    assert time.monotonic() - started < 3
    assert attempt.status_code == 200 and delivery.status == "succeeded"
    assert len(attempt.response_body) == 500


def huge_header_section(conn: socket.socket) -> None:
    """About 100 headers of 64 KB each (over 6 MB): within http.client's own limits (100
    headers, 64 KB a line)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n")
    value = b"h" * (64 * 1024 - 100)
    for n in range(98):
        conn.sendall(b"X-Big-%d: %s\r\n" % (n, value))
    conn.sendall(b"\r\nok")


def row_size(attempt: DeliveryAttempt) -> int:
    """Characters the attempt's row holds (its variable-length columns)."""
    return (len(json.dumps(attempt.request_headers)) + len(json.dumps(attempt.response_headers))
            + len(attempt.response_body) + len(attempt.error) + len(attempt.url))


def test_a_huge_header_section_is_cut_off_and_never_stored() -> None:
    with RawServer(huge_header_section) as server:
        started = time.monotonic()
        delivery, attempt = send_to(server.url)
    assert time.monotonic() - started < 3
    assert attempt.error_class == "response_too_large"
    assert delivery.status == "pending"  # retried, like a line or a header count too long
    assert row_size(attempt) < 4096, row_size(attempt)


def headers_of(count: int, size: int) -> Any:
    """A handler answering 200 with ``count`` headers whose values are ``size`` bytes."""
    def answer(conn: socket.socket) -> None:
        head = b"".join(b"X-H-%03d: %s\r\n" % (n, b"v" * size) for n in range(count))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + head + b"\r\nok")
    return answer


@override_webhooks(MAX_RESPONSE_HEADER_BYTES=4096, MAX_RESPONSE_HEADERS=20)
@pytest.mark.parametrize(("count", "size", "error_class"), [
    (10, 300, ""),                        # about 3.3 KB in 11 headers: kept whole
    (15, 300, "response_too_large"),      # about 4.9 KB: over the bytes
    (19, 10, ""),                         # 20 headers (Content-Length is one)
    (20, 10, "response_too_large"),       # 21 headers
])
def test_response_head_caps(count: int, size: int, error_class: str) -> None:
    with RawServer(headers_of(count, size)) as server:
        delivery, attempt = send_to(server.url)
    assert attempt.error_class == error_class
    if not error_class:
        assert (delivery.status, attempt.status_code) == ("succeeded", 200)
        assert len(attempt.response_headers) == count + 1
        assert len(json.dumps(attempt.response_headers)) <= 4096 + 8 * (count + 1)
    else:
        assert attempt.response_headers == {} and attempt.status_code is None


@override_webhooks(MAX_URL_LENGTH=40)
def test_url_length_limit() -> None:
    validate_endpoint_url("https://example.com/short")
    with pytest.raises(ValidationError, match="too long"):
        validate_endpoint_url("https://example.com/" + "a" * 30)


def test_credentials_in_urls_are_refused() -> None:
    with pytest.raises(ValidationError, match="user name or password"):
        validate_endpoint_url("https://user:pass@example.com/hook")


def test_unresolvable_names_are_accepted_when_saved_and_checked_when_sent() -> None:
    validate_endpoint_url("https://not-yet-registered.example.org/hook")
    _, attempt = send_to("http://not-yet-registered.example.org/hook")
    assert attempt.error_class == "dns_error"


@pytest.mark.parametrize("template", [*INTERNAL_NAMES, "https://nowhere.example.org/hook"])
def test_names_are_not_resolved_when_saved(template: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that resolves inside the network and one that does not resolve are both
    accepted when saved (the resolver is never asked), so the answer reveals nothing."""
    asked: list[str] = []
    monkeypatch.setattr(ssrf, "_getaddrinfo", lambda host, port: asked.append(host) or [])
    with override_webhooks(**NO_ALLOWLIST):
        validate_endpoint_url(template.format(port=8080))
    assert asked == []


@pytest.mark.parametrize("url", [
    "http://10.0.0.5/hook", "http://169.254.169.254/latest", "http://[::1]:8080/",
    "http://2130706433/", "http://0x7f.1/", "http://localhost/", "http://api.localhost/",
])
def test_private_addresses_written_in_the_url_are_still_refused_when_saved(url: str) -> None:
    """An address (in any notation) or localhost, written in the URL, reveals nothing."""
    with override_webhooks(**NO_ALLOWLIST), pytest.raises(ValidationError, match="private"):
        validate_endpoint_url(url)


@pytest.mark.parametrize("headers,fragment", [
    ({"X-Token": "a\r\nInjected: 1"}, "control character"),
    ({"X-Token": "a\nb"}, "control character"),
    ({"X-Token": "a\x00b"}, "control character"),
    ({"Bad Name": "x"}, "not a valid header name"),
    ({"X:Y": "x"}, "not a valid header name"),
    ({"": "x"}, "not a valid header name"),
    ({"Connection": "close"}, "connection header"),
    ({"Transfer-Encoding": "chunked"}, "connection header"),
    ({"Content-Type": "text/plain"}, "cannot be replaced"),
    ({"Host": "evil.example.com"}, "cannot be replaced"),
    ({"Webhook-Signature": "v1,x"}, "cannot be replaced"),
    ({"webhook-anything": "x"}, "cannot be replaced"),
    ({"X-N": 5}, "must be a string"),
    ({"X-Long": "v" * 3000}, "longer than"),
    ({"X-Space": " padded"}, "white space"),
    ({"X-Emoji": "🙂"}, "Latin-1"),
    ([("X", "y")], "must be an object"),
])
def test_bad_custom_headers(headers: Any, fragment: str) -> None:
    errors = header_errors(headers)
    assert errors and fragment in " ".join(errors)


@override_webhooks(MAX_HEADERS=2)
def test_header_count_limit() -> None:
    assert header_errors({"A": "1", "B": "2"}) == []
    assert "At most 2" in header_errors({"A": "1", "B": "2", "C": "3"})[0]


_token = st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP",
                 min_size=1, max_size=40).filter(
    lambda n: not n.lower().startswith("webhook-") and n.lower() not in {
        "content-type", "content-length", "content-encoding", "host", "user-agent",
        "accept-encoding", "expect", "connection", "keep-alive", "proxy-authenticate",
        "proxy-authorization", "proxy-connection", "te", "trailer", "transfer-encoding",
        "upgrade"})
_safe_value = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126),
                      min_size=0, max_size=100)


@given(_token, _safe_value)
def test_valid_headers_are_accepted(name: str, value: str) -> None:
    assert header_errors({name: value}) == []


@given(_token, _safe_value, st.sampled_from(["\r", "\n", "\x00", "\r\n", "\x7f", "\x0b"]),
       _safe_value)
def test_any_control_character_in_a_value_is_refused(name: str, head: str, bad: str,
                                                     tail: str) -> None:
    assert header_errors({name: f"{head}{bad}{tail}x"}) != []


def test_invalid_headers_that_slipped_into_the_database_are_not_sent(
    receiver: Receiver,
) -> None:
    endpoint = make_endpoint(receiver.url())
    Endpoint.objects.filter(pk=endpoint.pk).update(
        headers={"X-Ok": "fine", "X-Evil": "a\r\nX-Injected: 1"})
    Endpoint.objects.update()  # (the update above went through the encrypted field)
    webhooks.send_event("invoice.paid", {})
    fan_out()
    drain()
    (request,) = receiver.received()
    assert request.headers["x-ok"] == "fine"
    assert "x-evil" not in request.headers and "x-injected" not in request.headers


@override_webhooks(MAX_ENDPOINTS_PER_OWNER=2)
def test_endpoints_per_owner_are_capped() -> None:
    user, other = make_user("u1"), make_user("u2")
    make_endpoint("https://example.com/1", owner=user)
    make_endpoint("https://example.com/2", owner=user)
    with pytest.raises(ValidationError, match="already has 2 endpoints"):
        Endpoint(url="https://example.com/3", owner=user).full_clean()
    Endpoint(url="https://example.com/3", owner=other).full_clean()
    Endpoint(url="https://example.com/3", owner=None).full_clean()  # site-wide: not capped
    existing = Endpoint.objects.filter(owner=user).first()
    assert existing is not None
    existing.full_clean()  # editing one of them is fine


@override_webhooks(MAX_PAYLOAD_BYTES=1000)
def test_oversized_payloads_fail_clearly_and_are_never_truncated() -> None:
    with pytest.raises(PayloadError, match="more than MAX_PAYLOAD_BYTES"):
        webhooks.send_event("invoice.paid", {"blob": "é" * 600})
    webhooks.send_event("invoice.paid", {"blob": "x" * 100})
    from tests.testapp.models import Product

    with override_webhooks(MAX_PAYLOAD_BYTES=100):
        Product.objects.create(name="n" * 90)  # a model event: the save still succeeds
        event = Event.objects.get(type="product.created")
    assert event.payload == "" and "MAX_PAYLOAD_BYTES" in event.error


# --- TLS through the pinned connection -----------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("loopback.example.com")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    seen: dict[str, Any] = {"sni": [], "requests": []}

    def remember_sni(sock: Any, name: str | None, ctx: Any) -> None:
        seen["sni"].append(name)

    context.sni_callback = remember_sni
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(raw, server_side=True) as conn:
                    # Read the whole request: closing with unread bytes would reset the
                    # connection under the client's feet.
                    seen["requests"].append(read_request(conn))
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                 b"Connection: close\r\n\r\nok")
            except (OSError, ssl.SSLError):
                raw.close()

    threading.Thread(target=serve, daemon=True).start()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    seen.update(port=listener.getsockname()[1], ca_file=str(ca_file))
    yield seen
    listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() that close() alone would leave
    listener.close()


def test_tls_keeps_the_hostname_for_sni_and_verification(tls_server: dict[str, Any]) -> None:
    url = f"https://loopback.example.com:{tls_server['port']}/hook"
    with override_webhooks(CA_BUNDLE=tls_server["ca_file"], ALLOWED_NETWORKS=LOOPBACK):
        delivery, attempt = send_to(url)
    assert (delivery.status, attempt.status_code) == ("succeeded", 200), attempt.error
    assert tls_server["sni"] == ["loopback.example.com"]
    assert f"Host: loopback.example.com:{tls_server['port']}".encode() in \
        tls_server["requests"][0]


def test_tls_verification_failures_are_errors(tls_server: dict[str, Any]) -> None:
    with override_webhooks(ALLOWED_NETWORKS=LOOPBACK):  # certifi does not know the test CA
        _, attempt = send_to(f"https://loopback.example.com:{tls_server['port']}/hook")
    assert attempt.error_class == "tls_error"
    with override_webhooks(CA_BUNDLE=tls_server["ca_file"], ALLOWED_NETWORKS=LOOPBACK):
        _, attempt = send_to(f"https://127.0.0.1:{tls_server['port']}/hook")  # wrong name
    assert attempt.error_class == "tls_error"


# --- secrets -------------------------------------------------------------------------------------


def raw_columns(endpoint: Endpoint) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT signing_secret, headers FROM webhooks_endpoint WHERE id = %s",
                       [endpoint.pk.hex if connection.vendor == "sqlite" else endpoint.pk])
        return cursor.fetchone()


def test_secrets_and_custom_headers_are_encrypted_at_rest() -> None:
    endpoint = make_endpoint("https://example.com/h", headers={"Authorization": "Bearer s3cr3t"})
    secret_column, headers_column = raw_columns(endpoint)
    assert endpoint.secret.startswith("whsec_")
    assert endpoint.secret not in secret_column and "whsec_" not in secret_column
    assert "s3cr3t" not in headers_column and "Authorization" not in headers_column
    assert decrypt(secret_column) == endpoint.secret
    fresh = Endpoint.objects.get(pk=endpoint.pk)
    assert fresh.secret == endpoint.secret
    assert fresh.headers == {"Authorization": "Bearer s3cr3t"}


def test_key_rotation_and_reencryption() -> None:
    from django.conf import settings

    new_key, old_key = settings.WEBHOOKS["ENCRYPTION_KEYS"]
    with override_webhooks(ENCRYPTION_KEYS=[old_key]):
        endpoint = make_endpoint("https://example.com/h", headers={"X-Token": "t"})
        secret = endpoint.secret
    # The new key is in front; the old one still decrypts.
    assert Endpoint.objects.get(pk=endpoint.pk).secret == secret
    assert not uses_newest_key(raw_columns(endpoint)[0])
    out = run_command("webhooks_reencrypt", "--dry-run")
    assert "1 of 1 endpoints are not on the newest key" in out
    out = run_command("webhooks_reencrypt")
    assert "Re-encrypted 1 endpoints" in out
    assert all(uses_newest_key(column) for column in raw_columns(endpoint))
    with override_webhooks(ENCRYPTION_KEYS=[new_key]):  # the old key can now go
        fresh = Endpoint.objects.get(pk=endpoint.pk)
        assert fresh.secret == secret and fresh.headers == {"X-Token": "t"}


def test_rotation_grace_defaults_to_a_day_and_is_capped() -> None:
    endpoint = make_endpoint("https://example.com/h")
    endpoint.rotate_secret()
    assert endpoint.previous_secret_expires_at is not None
    left = endpoint.previous_secret_expires_at - endpoint.updated_at
    assert timedelta(hours=23, minutes=59) < left <= timedelta(hours=24, seconds=1)
    endpoint.rotate_secret(timedelta(days=365))
    left = endpoint.previous_secret_expires_at - endpoint.updated_at
    assert left <= timedelta(days=7, seconds=1)
    endpoint.rotate_secret(timedelta(0))
    assert endpoint.signing_secrets() == [endpoint.secret]


def test_secrets_never_reach_logs_or_list_pages(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, client: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.script("/hook", Reply(500, body=b"nope"), Reply(410))
    endpoint = make_endpoint(receiver.url(), headers={"Authorization": "Bearer tok-123456"})
    webhooks.send_event("invoice.paid", {})
    fan_out()
    drain()  # 500: a retry
    Delivery.objects.update(next_attempt_at=timezone.now())
    drain()  # 410: the endpoint is disabled
    text = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert endpoint.secret not in text and "tok-123456" not in text
    staff = make_user("staff")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    for path in ("/admin/webhooks/endpoint/", "/admin/webhooks/deliveryattempt/",
                 "/admin/webhooks/delivery/", f"/admin/webhooks/endpoint/{endpoint.pk}/change/"):
        page = client.get(path).content.decode()
        assert endpoint.secret not in page, path
        assert "tok-123456" not in page or path.endswith("/change/"), path
    for attempt in DeliveryAttempt.objects.all():
        assert "tok-123456" not in str(attempt.request_headers)


def test_endpoint_urls_never_reach_logs_at_any_level(
    receiver: Receiver, caplog: pytest.LogCaptureFixture,
) -> None:
    """URLs can carry tokens in their path or query: urllib3 logs the request line at DEBUG
    and the whole URL in a WARNING about malformed headers. Neither reaches a log."""
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "urllib3.connectionpool", "urllib3.connection", "webhooks"):
        caplog.set_level(logging.DEBUG, logger=name)
    path = "/hook/tok-PATH-7f3a?token=tok-QUERY-9b2c"
    _, attempt = send_to(receiver.url(path))
    assert attempt.status_code == 200
    with RawServer(malformed_header_section) as server:
        _, attempt = send_to(server.url + path.removeprefix("/hook"))
    assert attempt.error_class == "invalid_response"
    seen = [r for r in caplog.records if r.name.startswith("urllib3")]
    assert seen  # urllib3 did log...
    text = "\n".join(f"{r.name} {r.getMessage()} {logging.Formatter().formatException(r.exc_info)}"
                     if r.exc_info else f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert "tok-PATH" not in text and "tok-QUERY" not in text  # ...but never the path or query
    assert "/hook/tok" not in text


def malformed_header_section(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nthis line is no header\r\nContent-Length: 2\r\n\r\nok")


def test_urllib3_logs_outside_our_requests_are_left_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The redaction only applies to our own requests: the site's other HTTP calls log as
    they always did."""
    from webhooks import http  # noqa: F401 - installs the filter

    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    logging.getLogger("urllib3.connectionpool").debug('%s "%s %s"', "http://h", "GET", "/a/b?c=d")
    assert caplog.records[-1].getMessage() == 'http://h "GET /a/b?c=d"'


@pytest.mark.parametrize("nbytes", [0, 16, 23, 65, 128])
def test_endpoint_secrets_outside_24_to_64_bytes_are_refused(nbytes: int) -> None:
    import base64

    from webhooks import signing

    bad = "whsec_" + base64.b64encode(b"k" * nbytes).decode()
    endpoint = make_endpoint("https://example.com/h")
    endpoint.signing_secret = bad
    with pytest.raises(ValidationError, match="24 to 64 bytes"):
        endpoint.save()
    endpoint.signing_secret = signing.generate_secret()
    endpoint.previous_secret = bad
    with pytest.raises(ValidationError, match="24 to 64 bytes"):
        endpoint.save()
    if nbytes > 64:
        with pytest.raises(ValueError, match="64"):
            signing.generate_secret(nbytes)


@pytest.mark.parametrize("nbytes", [24, 32, 64])
def test_endpoint_secrets_of_24_to_64_bytes_are_kept(nbytes: int) -> None:
    from webhooks import signing

    endpoint = make_endpoint("https://example.com/h")
    endpoint.signing_secret = signing.generate_secret(nbytes)
    endpoint.previous_secret = ""
    endpoint.save()
    assert Endpoint.objects.get(pk=endpoint.pk).secret == endpoint.signing_secret


def test_an_endpoint_secret_must_be_base64() -> None:
    endpoint = make_endpoint("https://example.com/h")
    endpoint.signing_secret = "whsec_" + "not base64!" * 4
    with pytest.raises(ValidationError, match="base64"):
        endpoint.save()


# --- one way out ---------------------------------------------------------------------------------


def test_only_the_guarded_client_imports_requests() -> None:
    package = Path(webhooks.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] in {"requests", "urllib3", "httpx", "http", "urllib"}
                   and n != "urllib.parse" for n in names) and path.name != "http.py":
                offenders.append(f"{path.relative_to(package)}: {names}")
    assert offenders == []


def test_nothing_outside_post_can_use_the_session() -> None:
    from webhooks import http

    with pytest.raises(ssrf.BlockedDestination):
        http.get_session().get("http://127.0.0.1:9/")


@override_settings(DEBUG=False)
def test_encryption_checks() -> None:
    from webhooks.checks import check_encryption

    with override_webhooks(ENCRYPTION_KEYS=[]):
        assert [m.id for m in check_encryption()] == ["webhooks.E030"]
        with override_settings(DEBUG=True):
            assert [m.id for m in check_encryption()] == ["webhooks.W030"]
    with override_webhooks(ENCRYPTION_KEYS=["not-a-key"]):
        assert [m.id for m in check_encryption()] == ["webhooks.E031"]
    # The quickstart's os.environ.get("WEBHOOKS_ENCRYPTION_KEY", "") with the variable unset.
    with override_webhooks(ENCRYPTION_KEYS=[""]):
        [error] = check_encryption()
        assert error.id == "webhooks.E031" and "environment variable" in error.msg
        assert "generate_key()" in error.hint


def test_deploy_check_recommends_https() -> None:
    from webhooks.checks import check_deploy

    assert [m.id for m in check_deploy()] == ["webhooks.W003"]
    with override_webhooks(REQUIRE_HTTPS=True):
        assert check_deploy() == []


def test_connect_timeout_is_its_own_error_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SYN that is never answered cannot be produced on loopback without sending traffic
    elsewhere, so the socket's connect is made to time out instead."""
    from webhooks import http

    class BlackHole(socket.socket):
        def connect(self, address: Any) -> None:
            raise TimeoutError("timed out")

    monkeypatch.setattr(http.socket, "socket", BlackHole)
    delivery, attempt = send_to("http://127.0.0.1:9/hook")
    assert attempt.error_class == "connect_timeout"
    assert delivery.status == "pending"


def test_reencrypt_with_keys_that_cannot_read_the_secrets_explains_itself() -> None:
    import io

    from django.core.management import CommandError, call_command

    from webhooks.encryption import generate_key

    endpoint = make_endpoint("https://example.com/h", headers={"X-Token": "t"})
    before = raw_columns(endpoint)
    others = [make_endpoint(f"https://example.com/{i}") for i in range(6)]
    with override_webhooks(ENCRYPTION_KEYS=[generate_key()]):  # the old key left out
        with pytest.raises(CommandError, match="7 of 7 endpoints") as caught:
            run_command("webhooks_reencrypt")
        message = str(caught.value)
        assert "cannot be decrypted with any key of WEBHOOKS['ENCRYPTION_KEYS']" in message
        assert "Nothing was changed" in message and "and 2 more" in message
        assert "derived_key(SECRET_KEY)" in message  # a development database's key
        out = io.StringIO()
        with pytest.raises(CommandError, match="7 of 7 endpoints"):
            call_command("webhooks_reencrypt", "--dry-run", stdout=out)
        assert set(out.getvalue().split()) == {str(e.pk) for e in [endpoint, *others]}
    assert raw_columns(endpoint) == before
    with override_webhooks(ENCRYPTION_KEYS=["not-a-fernet-key"]), \
            pytest.raises(CommandError, match="not a Fernet key"):
        run_command("webhooks_reencrypt")
    with override_webhooks(ENCRYPTION_KEYS=[]), override_settings(DEBUG=False), \
            pytest.raises(CommandError, match="ENCRYPTION_KEYS'] is empty"):
        run_command("webhooks_reencrypt")
