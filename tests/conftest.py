"""Fixtures for every test: no real DNS, every body sent checked against its schema, a loopback
receiver, recorded task queueing, and the rule that only tests marked ``e2e`` start a real
``qcluster``."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.cluster import Cluster
from tests.receiver import Receiver
from tests.schema_check import SentBodies
from webhooks import ssrf

#: Names the fake resolver knows. Everything else fails to resolve: tests never use real DNS.
FAKE_DNS: dict[str, list[str]] = {
    "example.com": ["93.184.215.14"],
    "hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "internal.example.com": ["10.0.0.5"],
    "mixed.example.com": ["93.184.215.14", "192.168.1.20"],
    "metadata.example.com": ["169.254.169.254"],
    "v6loopback.example.com": ["::1"],
    "loopback.example.com": ["127.0.0.1"],
}


def fake_getaddrinfo(host: str, port: int) -> list[object]:
    """Numeric hosts (in any notation the C library takes) and localhost resolve for real;
    names come from FAKE_DNS."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                  flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    if host == "localhost":
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if host not in FAKE_DNS:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in the test resolver")
    return [info for address in FAKE_DNS[host]
            for info in socket.getaddrinfo(address, port, type=socket.SOCK_STREAM,
                                           flags=socket.AI_NUMERICHOST)]


@pytest.fixture(autouse=True)
def _no_real_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssrf, "_getaddrinfo", fake_getaddrinfo)


@pytest.fixture(autouse=True)
def _sent_bodies_match_their_schemas(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every event body any test sends (in this process: not e2e clusters') matches its event
    type's JSON Schema (tests/schema_check.py)."""
    from webhooks import http

    sent = SentBodies(http.post)
    monkeypatch.setattr(http, "post", sent)
    yield
    if sent.problems:
        pytest.fail("Sent bodies that do not match their schemas:\n" + "\n".join(
            sent.problems[:20]))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def fresh_throttles() -> Iterator[None]:
    """Throttle counters live in the cache: the test starts with none and leaves none."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[object, ...]]]:
    """Record what would be handed to django-q2 instead of running it."""
    calls: list[tuple[str, tuple[object, ...]]] = []
    monkeypatch.setattr("webhooks.tasks.enqueue", lambda task, *args: calls.append((task, args)))
    return calls


@pytest.fixture
def async_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks go to the broker (django-q2's sync mode off), for the real clusters a test starts."""
    from django_q.conf import Conf

    from webhooks import dispatch

    monkeypatch.setattr(Conf, "SYNC", False)
    # The database starts empty for every test; the dispatch token kept in Redis (Redis broker)
    # must too: a task an earlier test's cluster never ran would hold it until it expires.
    dispatch.release_queue_token()


@pytest.fixture
def postgres() -> None:
    """Skip the test unless the database is PostgreSQL."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only (set DATABASE_URL)")


@pytest.fixture(autouse=True)
def _clusters_only_in_e2e_tests(request: pytest.FixtureRequest,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that starts a real qcluster must be marked ``e2e``: ``-m "not e2e"`` (the quick
    run) relies on it."""
    if request.node.get_closest_marker("e2e") is not None:
        return

    def refuse(self: Cluster) -> Cluster:
        pytest.fail(f"{request.node.nodeid} starts a qcluster: mark it e2e")

    monkeypatch.setattr(Cluster, "start", refuse)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With organizations as owners (``tests.settings_org``) only the tests marked ``owners``
    run: the others assume that users own endpoints and events."""
    from django.conf import settings

    if getattr(settings, "WEBHOOKS_OWNER_MODEL", None) is None:
        return
    kept = [item for item in items if item.get_closest_marker("owners")]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept
