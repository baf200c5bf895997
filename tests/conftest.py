from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[object, ...]]]:
    """Record what would be handed to django-q2 instead of running it."""
    calls: list[tuple[str, tuple[object, ...]]] = []
    monkeypatch.setattr("webhooks.tasks.enqueue", lambda task, *args: calls.append((task, args)))
    return calls
