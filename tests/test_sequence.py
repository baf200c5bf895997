"""Per-object sequence numbers: model events count 1, 2, 3… per object in commit order, custom
events only when sent with a ``sequence_key``; the payload carries the number."""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

import pytest
from django.db import connection, connections, transaction

import webhooks
from tests.helpers import make_user, override_webhooks
from tests.testapp.models import LineItem, Order, Product
from webhooks import outbox
from webhooks.models import Event, ObjectSequence
from webhooks.testing import capture_webhooks

pytestmark = pytest.mark.django_db


def order_events(pk: int) -> list[tuple[str, int | None]]:
    """``(type, sequence)`` of the events about order ``pk``, in sequence order."""
    return [(e.type, e.sequence) for e in Event.objects.order_by("sequence")
            if e.type.startswith("order.") and body(e)["data"]["id"] == pk]


def body(event: Event) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(event.payload)
    return result


def test_model_events_count_per_object_and_the_body_carries_the_number(
    enqueued: list[Any],
) -> None:
    first = Order.objects.create(total="1")
    second = Order.objects.create(total="2")
    first.status = "paid"
    first.save()
    first.status = "shipped"
    first.save()
    pk = first.pk
    first.delete()
    assert order_events(pk) == [
        ("order.created", 1), ("order.updated", 2), ("order.updated", 3), ("order.deleted", 4)]
    assert order_events(second.pk) == [("order.created", 1)]
    assert ObjectSequence.objects.get(key=f"testapp.order:{pk}").value == 4
    for event in Event.objects.all():
        document = body(event)
        # Top level, after the event time, before the data: what receivers order by.
        assert list(document)[:5] == ["id", "type", "timestamp", "sequence", "data"]
        assert document["sequence"] == event.sequence
        assert document["id"] == event.public_id


def test_rolled_back_changes_give_their_numbers_back() -> None:
    order = Order.objects.create(total="1")
    with pytest.raises(RuntimeError), transaction.atomic():
        order.save()
        order.save()
        raise RuntimeError("rolled back")
    with transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():  # a savepoint
            order.save()
            raise RuntimeError("rolled back")
        order.save()
    assert order_events(order.pk) == [("order.created", 1),
                                                       ("order.updated", 2)]


def test_objects_of_different_models_have_their_own_counters() -> None:
    order = Order.objects.create(total="1")
    product = Product.objects.create(pk=order.pk, name="Pen")
    LineItem.objects.create(order=order, product=product)
    assert Event.objects.get(type="order.created").sequence == 1
    assert Event.objects.get(type="product.created").sequence == 1
    assert Event.objects.get(type="line_item.created").sequence == 1
    assert set(ObjectSequence.objects.values_list("key", flat=True)) == {
        f"testapp.order:{order.pk}", f"testapp.product:{order.pk}",
        f"testapp.lineitem:{LineItem.objects.get().pk}"}


def test_custom_events_have_a_sequence_only_with_a_key() -> None:
    plain = webhooks.send_event("invoice.paid", {"invoice": 1})
    assert plain.sequence is None and "sequence" not in body(plain)
    first = webhooks.send_event("invoice.paid", {"invoice": 42}, sequence_key="invoice:42")
    second = webhooks.send_event("invoice.paid", {"invoice": 42}, sequence_key="invoice:42")
    other = webhooks.send_event("invoice.paid", {"invoice": 7}, sequence_key="invoice:7")
    assert (first.sequence, second.sequence, other.sequence) == (1, 2, 1)
    assert body(second)["sequence"] == 2


def test_the_returned_event_is_the_row_that_was_written() -> None:
    user = make_user()
    event = webhooks.send_event("invoice.paid", {"n": 1}, owner=user, sequence_key="k")
    stored = Event.objects.get()
    assert not event._state.adding and event._state.db == "default"
    for name in ("pk", "type", "owner_id", "created_at", "payload", "error", "dispatched_at",
                 "sequence"):
        assert getattr(event, name) == getattr(stored, name), name
    assert event.data == {"n": 1} and event.sequence == 1


def test_a_model_instance_as_key_shares_the_counter_of_its_model_events() -> None:
    order = Order.objects.create(total="1")
    shipped = webhooks.send_event("ping.sent", {"order": order.pk}, sequence_key=order)
    order.save()
    assert shipped.sequence == 2
    assert Event.objects.get(type="order.updated").sequence == 3


def test_bad_keys_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="unsaved model instance"):
        webhooks.send_event("ping.sent", {}, sequence_key=Order(total="1"))
    with pytest.raises(ValueError, match="non-empty string"):
        webhooks.send_event("ping.sent", {}, sequence_key="")
    with pytest.raises(ValueError, match="non-empty string"):
        webhooks.send_event("ping.sent", {}, sequence_key=42)  # type: ignore[arg-type]
    assert not Event.objects.exists()


def test_long_keys_fit_the_counter_table_and_stay_apart() -> None:
    one, two = "x" * 300 + "1", "x" * 300 + "2"
    assert webhooks.send_event("ping.sent", {}, sequence_key=one).sequence == 1
    assert webhooks.send_event("ping.sent", {}, sequence_key=two).sequence == 1
    assert webhooks.send_event("ping.sent", {}, sequence_key=one).sequence == 2
    keys = list(ObjectSequence.objects.values_list("key", flat=True))
    assert len(keys) == 2 and all(len(key) <= outbox.MAX_SEQUENCE_KEY for key in keys)


def test_an_event_without_payload_still_takes_its_number() -> None:
    with override_webhooks(MAX_PAYLOAD_BYTES=50):
        product = Product.objects.create(name="A")  # must not raise
    product.save()  # not configured for updates: no event
    event = Event.objects.get()
    assert event.payload == "" and "MAX_PAYLOAD_BYTES" in event.error
    assert event.sequence == 1


def test_the_portable_counter_gives_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Databases without ``INSERT … ON CONFLICT … RETURNING`` (MySQL, old SQLite) draw numbers
    with an UPDATE, an INSERT for a new key and a SELECT."""
    portable = dataclasses.replace(outbox._statements(connection), next_sequence="",
                                   insert_sequenced="")
    monkeypatch.setitem(outbox._STATEMENTS, connection.vendor, portable)
    order = Order.objects.create(total="1")
    order.save()
    order.save()
    assert [e.sequence for e in Event.objects.order_by("sequence")] == [1, 2, 3]
    assert webhooks.send_event("ping.sent", {}, sequence_key="p").sequence == 1


@pytest.mark.django_db(transaction=True)
def test_autocommit_saves_are_numbered_too(enqueued: list[Any]) -> None:
    order = Order.objects.create(total="1")  # no transaction.atomic around it
    order.save()
    assert [e.sequence for e in Event.objects.order_by("sequence")] == [1, 2]
    assert not connection.in_atomic_block


def test_captured_events_show_their_sequence() -> None:
    with capture_webhooks() as captured:
        order = Order.objects.create(total="1")
        order.save()
        webhooks.send_event("invoice.paid", {"n": 1})
    assert [(e.type, e.sequence) for e in captured.events] == [
        ("order.created", 1), ("order.updated", 2), ("invoice.paid", None)]


# --- concurrency (PostgreSQL: row locks; SQLite has one writer at a time anyway) ---------------


def in_thread(target: Any) -> tuple[threading.Thread, list[Any]]:
    """Run ``target`` on a thread of its own (so a database connection of its own); its result
    or exception lands in the returned list."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(target())
        except BaseException as exc:  # reported by the test
            outcome.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.django_db(transaction=True)
def test_a_second_transaction_waits_for_the_first_and_takes_the_next_number(
    postgres: None, enqueued: list[Any]
) -> None:
    first_has_its_number = threading.Event()
    let_first_commit = threading.Event()

    def first() -> int | None:
        with transaction.atomic():
            event = webhooks.send_event("ping.sent", {"who": 1}, sequence_key="shared")
            first_has_its_number.set()
            assert let_first_commit.wait(30)
        return event.sequence

    def second() -> int | None:
        with transaction.atomic():
            return webhooks.send_event("ping.sent", {"who": 2}, sequence_key="shared").sequence

    thread_one, one = in_thread(first)
    assert first_has_its_number.wait(30)
    thread_two, two = in_thread(second)
    thread_two.join(0.5)
    # The counter's row lock holds the second transaction until the first ends.
    assert thread_two.is_alive() and two == []
    let_first_commit.set()
    thread_one.join(30)
    thread_two.join(30)
    assert one == [1] and two == [2]
    assert sorted(Event.objects.values_list("sequence", flat=True)) == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_concurrent_changes_of_one_object_never_share_a_number(
    postgres: None, enqueued: list[Any]
) -> None:
    order = Order.objects.create(total="1")
    threads, rounds = 4, 15

    def change() -> list[int]:
        numbers = []
        for _ in range(rounds):
            with transaction.atomic():
                Order.objects.get(pk=order.pk).save()
                # The event of this save, read back inside its own transaction.
                numbers.append(Event.objects.filter(type="order.updated")
                               .order_by("-sequence").values_list("sequence", flat=True)[0])
        return numbers

    started = [in_thread(change) for _ in range(threads)]
    for thread, _ in started:
        thread.join(60)
    results = [outcome[0] for _, outcome in started]
    assert all(isinstance(r, list) for r in results), results
    numbers = sorted(n for r in results for n in r)
    assert numbers == list(range(2, 2 + threads * rounds))  # 1 is order.created
    for r in results:  # each thread saw its numbers grow: later commits, higher numbers
        assert r == sorted(r)
    assert sorted(Event.objects.values_list("sequence", flat=True)) == list(
        range(1, 2 + threads * rounds))
