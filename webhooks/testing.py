"""Test helpers for sites: capture the webhooks their code would send, with no worker or network.

::

    from webhooks.testing import capture_webhooks

    def test_checkout_notifies_the_customer(customer_endpoint):
        with capture_webhooks() as webhooks:
            checkout(cart)
        webhooks.assert_sent("order.created", owner=cart.customer,
                             data_contains={"total": "12.30"}, endpoint=customer_endpoint)

While a capture is active, events are written to the outbox exactly as in production (same
transaction, same payload), but no dispatch is ever asked for: no django-q2 task, no dispatch
token, no delivery rows, no HTTP: the capture makes its own dispatcher the active one
(:func:`webhooks.dispatch.push_dispatcher`), which records events and queues nothing. What each
event *would* receive is computed with the same matching rules as the worker's fan-out
(:func:`webhooks.delivery.match_endpoints`).

pytest users get the same thing as the ``webhooks_outbox`` fixture (``webhooks.pytest_plugin``,
registered through an entry point). Details and examples: ``docs/testing.md``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.test.utils import TestContextDecorator

if TYPE_CHECKING:  # pragma: no cover
    from webhooks.models import Endpoint, Event

__all__ = ["CapturedEvent", "CapturedWebhooks", "capture_webhooks"]

_ANY: Any = object()  # "not given": ``owner=None`` means "no owner", so None cannot be it


@dataclass(frozen=True)
class CapturedEvent:
    """One event written while a capture was active, and where it would be delivered."""

    #: The id receivers see (``webhook-id``, and ``id`` in the body): ``evt_…``.
    id: str
    pk: Any
    type: str
    #: The ``data`` member of the payload, decoded from the JSON that would be sent.
    data: Any
    owner_id: Any
    created_at: datetime
    #: The exact body every delivery would send (empty when the payload could not be built).
    payload: str
    #: Why the payload could not be built (its deliveries would fail), or ``""``.
    error: str
    #: Active endpoints that would receive it, by the fan-out's rules (sorted by id).
    endpoints: tuple[Endpoint, ...] = field(default=())
    #: Its per-object ``sequence`` number (``None`` for a custom event sent without a
    #: ``sequence_key``).
    sequence: int | None = None

    @property
    def endpoint_ids(self) -> list[Any]:
        return [endpoint.pk for endpoint in self.endpoints]

    def describe(self) -> str:
        data = json.dumps(self.data, ensure_ascii=False)  # as read back from the payload
        if len(data) > 200:
            data = data[:197] + "..."
        owner = "site-wide" if self.owner_id is None else f"owner={self.owner_id!r}"
        targets = ", ".join(e.public_id for e in self.endpoints) or "no endpoint"
        error = f" error={self.error!r}" if self.error else ""
        return f"{self.type} {self.id} ({owner}) -> [{targets}] data={data}{error}"


class CapturedWebhooks:
    """What one capture recorded. Read it after (or during) the code under test.

    Reading queries the database (the events, subscriptions and endpoints), so an event whose
    transaction or savepoint rolled back is not listed: only what would really be sent is.
    Endpoints are matched when read, as the worker would match them when it fans out.
    """

    def __init__(self) -> None:
        self._written: list[tuple[str, Any]] = []  # (database alias, event pk), in order
        self._lock = threading.Lock()

    # -- recording (called through the active dispatcher after each event row inserted) --

    def _record(self, using: str, pk: Any) -> None:
        with self._lock:
            self._written.append((using, pk))

    def clear(self) -> None:
        """Forget everything recorded so far (the capture goes on)."""
        with self._lock:
            self._written.clear()

    # -- reading --

    @property
    def events(self) -> list[CapturedEvent]:
        """Every event written while capturing and still in the database, in write order."""
        from webhooks.delivery.fanout import match_endpoints, subscriptions_for
        from webhooks.models import Delivery, Endpoint, Event

        with self._lock:
            written = list(self._written)
        aliases: dict[str, list[Any]] = {}
        for using, pk in written:
            aliases.setdefault(using, []).append(pk)
        result: dict[Any, CapturedEvent] = {}
        for using, pks in aliases.items():
            found = Event.objects.using(using).in_bulk(pks)
            events = list(found.values())
            # Events already dispatched (test events, or a test that ran the fan-out itself)
            # go where their delivery rows say; the others where the fan-out would send them.
            waiting = [e for e in events if e.dispatched_at is None]
            targets: dict[Any, list[Any]] = {e.pk: [] for e in events}
            if waiting:
                targets.update(match_endpoints(waiting, subscriptions_for(waiting)))
            done = [e.pk for e in events if e.dispatched_at is not None]
            if done:
                for event_id, endpoint_id in (Delivery.objects.using(using)
                                              .filter(event_id__in=done)
                                              .values_list("event_id", "endpoint_id")):
                    targets[event_id].append(endpoint_id)
            wanted = {endpoint_id for ids in targets.values() for endpoint_id in ids}
            endpoints = Endpoint.objects.using(using).in_bulk(wanted) if wanted else {}
            for event in events:
                result[event.pk] = _captured(event, tuple(
                    endpoints[i] for i in sorted(targets[event.pk]) if i in endpoints))
        return [result[pk] for _, pk in written if pk in result]

    def __iter__(self) -> Iterator[CapturedEvent]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def __getitem__(self, index: int) -> CapturedEvent:
        return self.events[index]

    def __repr__(self) -> str:
        return f"<CapturedWebhooks: {len(self._written)} event(s) written>"

    @property
    def types(self) -> list[str]:
        """The event types captured, in write order (with repeats)."""
        return [event.type for event in self.events]

    def of_type(self, *event_types: str) -> list[CapturedEvent]:
        """Captured events of any of ``event_types``."""
        return [event for event in self.events if event.type in event_types]

    def for_endpoint(self, endpoint: Any) -> list[CapturedEvent]:
        """Captured events ``endpoint`` (an instance or a primary key) would receive."""
        endpoint_id = _pk(endpoint)
        return [event for event in self.events if endpoint_id in event.endpoint_ids]

    def filter(self, event_type: str | None = None, *, owner: Any = _ANY,
               data: Any = _ANY, data_contains: Mapping[str, Any] | None = None,
               endpoint: Any = None) -> list[CapturedEvent]:
        """Captured events matching every condition given (see :meth:`assert_sent`)."""
        events = self.events
        if event_type is not None:
            events = [e for e in events if e.type == event_type]
        if owner is not _ANY:
            owner_id = _pk(owner)
            events = [e for e in events if e.owner_id == owner_id]
        if data is not _ANY:
            expected = _as_json(data)
            events = [e for e in events if e.data == expected]
        if data_contains is not None:
            expected = _as_json(dict(data_contains))
            events = [e for e in events if _contains(e.data, expected)]
        if endpoint is not None:
            endpoint_id = _pk(endpoint)
            events = [e for e in events if endpoint_id in e.endpoint_ids]
        return events

    def assert_sent(self, event_type: str, *, owner: Any = _ANY, data: Any = _ANY,
                    data_contains: Mapping[str, Any] | None = None, endpoint: Any = None,
                    count: int | None = None) -> list[CapturedEvent]:
        """Assert that an event of ``event_type`` was captured; return the matching events.

        ``owner``: a user or primary key (``None``: an event without owner). ``data``: the
        whole ``data``; ``data_contains``: a subset of it (nested dicts are matched as subsets
        too). Expected values go through the same JSON encoding as payloads, so
        ``Decimal("12.30")`` matches ``"12.30"`` and a datetime its ISO string. ``endpoint``:
        an endpoint (or its id) that would receive it. ``count``: exactly this many match
        (default: at least one).
        """
        matches = self.filter(event_type, owner=owner, data=data, data_contains=data_contains,
                              endpoint=endpoint)
        if (count is None and not matches) or (count is not None and len(matches) != count):
            wanted = "at least one" if count is None else f"exactly {count}"
            conditions = _conditions(owner=owner, data=data, data_contains=data_contains,
                                     endpoint=endpoint)
            raise AssertionError(
                f"Expected {wanted} {event_type!r} webhook{conditions}, found "
                f"{len(matches)}.\n{self._summary()}")
        return matches

    def assert_not_sent(self, event_type: str | None = None, *, owner: Any = _ANY,
                        data: Any = _ANY, data_contains: Mapping[str, Any] | None = None,
                        endpoint: Any = None) -> None:
        """Assert that no captured event matches (no arguments: nothing was captured at all)."""
        matches = self.filter(event_type, owner=owner, data=data, data_contains=data_contains,
                              endpoint=endpoint)
        if matches:
            what = f"{event_type!r} webhook" if event_type else "webhook"
            conditions = _conditions(owner=owner, data=data, data_contains=data_contains,
                                     endpoint=endpoint)
            raise AssertionError(
                f"Expected no {what}{conditions}, found {len(matches)}.\n{self._summary()}")

    def _summary(self) -> str:
        events = self.events
        if not events:
            return "No webhook was captured."
        lines = "\n".join(f"  {event.describe()}" for event in events)
        return f"Captured webhooks ({len(events)}):\n{lines}"


def _captured(event: Event, endpoints: tuple[Endpoint, ...]) -> CapturedEvent:
    return CapturedEvent(
        id=event.public_id, pk=event.pk, type=event.type, data=event.data,
        owner_id=event.owner_id, created_at=event.created_at, payload=event.payload,
        error=event.error, endpoints=endpoints, sequence=event.sequence,
    )


def _pk(value: Any) -> Any:
    """A model instance's primary key, or the value itself (already a key, or ``None``)."""
    return getattr(value, "pk", value)


def _encode(value: Any) -> str:
    """``value`` encoded as payloads encode it (``WEBHOOKS["JSON_ENCODER"]``)."""
    from webhooks.events.payloads import json_encoder  # imports the catalog: not at import

    return json_encoder().encode(value)


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from a payload (with Django's encoder, decimals, dates and
    UUIDs become strings; a site's ``JSON_ENCODER`` may encode more types)."""
    return json.loads(_encode(value))


def _contains(actual: Any, expected: Any) -> bool:
    """``expected`` is a subset of ``actual``: dicts key by key (recursively), else equal."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and _contains(actual[key], value) for key, value in expected.items())
    return bool(actual == expected)


def _conditions(**given: Any) -> str:
    parts = [f"{name}={_pk(value)!r}" for name, value in given.items()
             if value is not _ANY and value is not None]
    if given.get("owner", _ANY) is None:
        parts.append("owner=None")
    return f" with {', '.join(parts)}" if parts else ""


# --- switching capture on and off ------------------------------------------------------------

_state_lock = threading.RLock()
_active: list[CapturedWebhooks] = []


class _CapturingDispatcher:
    """The dispatcher (:class:`webhooks.dispatch.Dispatcher`) while any capture is active:
    every active capture records each event written; no dispatch and no task is asked for."""

    def event_written(self, using: str, event_id: Any) -> None:
        """Every active capture records the new event."""
        for recorder in list(_active):
            recorder._record(using, event_id)

    def schedule(self, using: str) -> None:
        """Instead of :func:`webhooks.dispatch.schedule_dispatch`: no on-commit hook, token or
        task."""

    def enqueue(self, task: str, *args: Any) -> bool:
        """Instead of queueing a task (test events, retries, replays): nothing, successfully."""
        return True


_DISPATCHER = _CapturingDispatcher()


def _start(recorder: CapturedWebhooks) -> None:
    # Imported here, not at the top: this module must stay importable before Django is set up
    # (webhooks.dispatch reaches the models and django-q2).
    from webhooks import dispatch

    with _state_lock:
        if not _active:
            dispatch.push_dispatcher(_DISPATCHER)
        _active.append(recorder)


def _stop(recorder: CapturedWebhooks) -> None:
    from webhooks import dispatch

    with _state_lock:
        _active.remove(recorder)
        if not _active:
            dispatch.pop_dispatcher(_DISPATCHER)


class capture_webhooks(TestContextDecorator):
    """Capture the webhooks the code under test would send, instead of sending them.

    A context manager (``with capture_webhooks() as webhooks:``), a function decorator
    (``@capture_webhooks(kwarg_name="webhooks")`` passes the capture as that keyword
    argument) and a ``unittest.TestCase`` class decorator (``@capture_webhooks(
    attr_name="webhooks")`` sets ``self.webhooks`` for each test). Works inside ``TestCase``
    transactions (whose on-commit hooks never run) and with committed data alike.

    Captured events stay in the database, undispatched, exactly as production leaves them
    before a worker runs: in a ``TestCase`` they roll back with the test, with committed data
    the test database's flush removes them. Nothing delivers them unless the test runs the
    worker's code itself. Captures nest; each sees what was written while it was active.
    """

    def __init__(self, attr_name: str | None = None, kwarg_name: str | None = None) -> None:
        super().__init__(attr_name=attr_name, kwarg_name=kwarg_name)
        self._recorders: list[CapturedWebhooks] = []

    def __enter__(self) -> CapturedWebhooks:  # type: ignore[override] # stubs: Apps | None
        return self.enable()

    def enable(self) -> CapturedWebhooks:
        recorder = CapturedWebhooks()
        _start(recorder)
        self._recorders.append(recorder)
        return recorder

    def disable(self) -> None:
        _stop(self._recorders.pop())
