"""Custom actions on model events: ``"actions": ["shipped", ...]`` in a model's ``MODELS`` entry,
published with ``webhooks.send_model_event(instance, "shipped")`` as the model's own events
(serializer, owner path, the object's sequence counter, thin events and payload allowlists)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from standardwebhooks import Webhook

import webhooks
from tests.factories import make_endpoint, make_owner, make_user, owned_order
from tests.helpers import override_webhooks
from tests.receiver import Receiver
from tests.testapp.models import Note, Order, Product
from webhooks.checks import check_catalog
from webhooks.delivery.fanout import fan_out
from webhooks.delivery.loop import drain
from webhooks.events.catalog import get_catalog
from webhooks.exceptions import InvalidInstance, PayloadError, UnknownEventType
from webhooks.models import Delivery, Event, Subscription
from webhooks.testing import capture_webhooks

pytestmark = pytest.mark.django_db


def order_entry(**options: Any) -> dict[str, Any]:
    """The test settings' ``testapp.Order`` entry (its owner path follows the configuration)
    with ``options`` added."""
    return {"testapp.Order": {**settings.WEBHOOKS["MODELS"]["testapp.Order"], **options}}


def with_actions(*actions: str, **options: Any) -> Any:
    """``override_settings`` where orders declare ``actions`` (default: shipped, refunded)."""
    return override_webhooks(MODELS={**settings.WEBHOOKS["MODELS"], **order_entry(
        actions=list(actions or ("shipped", "refunded")), **options)})


@pytest.fixture
def actions() -> Iterator[None]:
    with with_actions():
        yield


def deliver() -> None:
    """What the workers do: one delivery per matching endpoint, then send them all."""
    while fan_out():
        pass
    drain()


def bodies(receiver: Receiver, path: str) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.received(path)]


# --- declaration ------------------------------------------------------------------------------


@pytest.mark.parametrize(("actions", "fragment"), [
    ("shipped", "must be a list of lowercase words"),
    (["Shipped"], "must be a list of lowercase words"),
    (["order.shipped"], "must be a list of lowercase words"),
    (["2nd"], "must be a list of lowercase words"),
    ([7], "must be a list of lowercase words"),
    (["shipped", "updated"], "names updated: built-in actions are chosen with 'events'"),
    (["created"], "built-in actions"),
    (["shipped", "shipped"], "names an action twice"),
])
def test_bad_actions_are_check_errors(actions: Any, fragment: str) -> None:
    with override_webhooks(MODELS={"testapp.Order": {"actions": actions}}):
        (message,) = check_catalog()
    assert message.id == "webhooks.E010"
    assert "['actions']" in message.msg and fragment in message.msg


def test_an_action_that_clashes_with_another_declared_type_is_a_check_error() -> None:
    with override_webhooks(MODELS={"testapp.Order": {"actions": ["shipped"]}},
                           EVENTS={"order.shipped": "Declared twice."}):
        (message,) = check_catalog()
    assert message.id == "webhooks.E011" and "'order.shipped'" in message.msg
    # Another model published under a name that makes the same type.
    with override_webhooks(MODELS={
        "testapp.Order": {"actions": ["shipped"]},
        "testapp.Product": {"name": "order", "events": ["created"], "actions": ["shipped"]},
    }):
        (message,) = check_catalog()
    assert message.id == "webhooks.E011"


@with_actions("shipped", "refund_requested",
              description={"shipped": "An order left the warehouse.", "created": "New!"})
def test_declared_actions_join_the_catalog_with_descriptions() -> None:
    assert check_catalog() == []
    types = get_catalog().types
    assert [name for name in types if name.startswith("order.")] == [
        "order.created", "order.updated", "order.deleted", "order.shipped",
        "order.refund_requested"]
    assert types["order.shipped"].description == "An order left the warehouse."
    assert types["order.refund_requested"].description == "An order was refund requested."
    assert types["order.created"].description == "New!"
    assert types["order.shipped"].model == "testapp.Order"


@with_actions("shipped", events=["created"])
def test_custom_actions_do_not_need_the_built_in_ones() -> None:
    assert [n for n in get_catalog().types if n.startswith("order.")] == [
        "order.created", "order.shipped"]


def test_the_api_lists_actions_with_examples_and_fields(actions: None) -> None:
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(make_user())
    listed = {t["type"]: t for t in client.get("/api/webhooks/event-types/").json()}
    shipped = listed["order.shipped"]
    assert shipped["description"] == "An order was shipped."
    assert shipped["payload_fields"] == listed["order.created"]["payload_fields"]
    example = shipped["example"]
    assert example["type"] == "order.shipped" and example["sequence"] == 1
    assert set(example["data"]) == set(listed["order.created"]["example"]["data"])
    assert "changes" not in example
    # A subscription can name the action and restrict its fields, like any model event.
    created = client.post("/api/webhooks/endpoints/", {
        "url": "https://example.com/hook", "events": ["order.shipped"],
        "payload_fields": {"order.shipped": ["id", "status"]}}, format="json")
    assert created.status_code == 201, created.content
    bad = client.post("/api/webhooks/endpoints/", {
        "url": "https://example.com/hook", "events": ["order.shipped"],
        "payload_fields": {"order.shipped": ["ssn"]}}, format="json")
    assert bad.status_code == 400 and "no field ssn" in json.dumps(bad.json())


# --- sending ----------------------------------------------------------------------------------


def test_actions_are_numbered_with_the_objects_other_events_and_delivered(
        receiver: Receiver, actions: None) -> None:
    user = make_user()
    endpoint = make_endpoint(receiver.url("/hook"), owner=user)
    order = Order.objects.create(customer=user, total="10.00")
    order.status = "paid"
    order.save()
    shipped = webhooks.send_model_event(order, "shipped")
    order.status = "shipped"
    order.save()
    refunded = webhooks.send_model_event(order, "refunded")
    other = Order.objects.create(customer=user)
    first_of_other = webhooks.send_model_event(other, "shipped")

    assert (shipped.type, shipped.sequence, shipped.owner_id) == ("order.shipped", 3, user.pk)
    assert (refunded.sequence, first_of_other.sequence) == (5, 2)
    deliver()
    received = bodies(receiver, "/hook")
    about_order = sorted((b["sequence"], b["type"]) for b in received
                         if b["data"]["id"] == order.pk)
    assert about_order == [(1, "order.created"), (2, "order.updated"), (3, "order.shipped"),
                           (4, "order.updated"), (5, "order.refunded")]
    (shipped_body,) = [b for b in received if b["id"] == shipped.public_id]
    # The model's serializer output, as it was when the action was sent.
    assert shipped_body["data"]["status"] == "paid" and shipped_body["data"]["total"] == "10.00"
    assert shipped_body["data"]["customer"] == user.pk
    assert list(shipped_body)[:5] == ["id", "type", "timestamp", "sequence", "data"]
    for request in receiver.received("/hook"):
        Webhook(endpoint.secret).verify(request.body, request.headers)


def test_a_built_in_action_can_be_sent_after_a_bulk_update(actions: None) -> None:
    order = Order.objects.create(total="1.00")
    Order.objects.filter(pk=order.pk).update(status="paid")  # no signal, no event
    order.refresh_from_db()
    event = webhooks.send_model_event(order, "updated")
    assert (event.type, event.sequence) == ("order.updated", 2)
    assert json.loads(event.payload)["data"]["status"] == "paid"


def test_the_event_is_written_in_the_callers_transaction(actions: None) -> None:
    order = Order.objects.create(total="1.00")
    with pytest.raises(RuntimeError), transaction.atomic():
        webhooks.send_model_event(order, "shipped")
        raise RuntimeError("rolled back")
    assert not Event.objects.filter(type="order.shipped").exists()
    # The rolled-back number was given back.
    assert webhooks.send_model_event(order, "shipped").sequence == 2


def test_capture_webhooks_sees_actions_with_their_endpoints(actions: None) -> None:
    user = make_user()
    shipping = make_endpoint("https://ship.example.com/hook", "order.shipped", owner=user)
    make_endpoint("https://other.example.com/hook", "order.created", owner=user)
    order = Order.objects.create(customer=user)
    with capture_webhooks() as captured:
        webhooks.send_model_event(order, "shipped")
    (event,) = captured.assert_sent("order.shipped", owner=user, data_contains={"id": order.pk})
    assert event.endpoints == (shipping,) and event.data["status"] == "new"


@with_actions("shipped", thin="https://shop.example.com/api/orders/{pk}/")
def test_thin_models_send_thin_actions() -> None:
    order = Order.objects.create(total="99.00")
    body = json.loads(webhooks.send_model_event(order, "shipped").payload)
    assert body["data"] == {"id": order.pk,
                            "url": f"https://shop.example.com/api/orders/{order.pk}/"}
    assert body["sequence"] == 2


def test_a_subscriptions_allowlist_narrows_the_action(receiver: Receiver,
                                                      actions: None) -> None:
    narrow = make_endpoint(receiver.url("/narrow"), "order.shipped")
    Subscription.objects.filter(endpoint=narrow).update(fields=["id", "status"])
    make_endpoint(receiver.url("/full"), "order.shipped")
    order = Order.objects.create(total="5.00")
    webhooks.send_model_event(order, "shipped")
    deliver()
    (narrowed,) = bodies(receiver, "/narrow")
    assert narrowed["data"] == {"id": order.pk, "status": "new"}
    (full,) = bodies(receiver, "/full")
    assert full["data"]["total"] == "5.00" and full["sequence"] == narrowed["sequence"] == 2


# --- owners -----------------------------------------------------------------------------------


@pytest.mark.owners
def test_an_action_goes_to_the_owners_endpoints_and_the_sites(receiver: Receiver,
                                                               actions: None) -> None:
    a, b = make_owner("acme"), make_owner("globex")
    make_endpoint(receiver.url("/a"), "order.shipped", owner=a)
    make_endpoint(receiver.url("/b"), "order.shipped", owner=b)
    make_endpoint(receiver.url("/site"), "order.shipped")
    order = owned_order(a, total=10)
    event = webhooks.send_model_event(order, "shipped")
    assert event.owner_id == a.pk
    deliver()
    assert [body["id"] for body in bodies(receiver, "/a")] == [event.public_id]
    assert [body["id"] for body in bodies(receiver, "/site")] == [event.public_id]
    assert bodies(receiver, "/b") == []
    assert Delivery.objects.count() == 2


@pytest.mark.owners
def test_an_order_without_an_owner_goes_to_the_site_only(actions: None) -> None:
    make_endpoint("https://owned.example.com/hook", owner=make_owner("acme"))
    site = make_endpoint("https://site.example.com/hook")
    order = Order.objects.create()
    with capture_webhooks() as captured:
        webhooks.send_model_event(order, "refunded")
    (event,) = captured.assert_sent("order.refunded", owner=None)
    assert event.endpoints == (site,)


# --- errors -----------------------------------------------------------------------------------


def test_an_undeclared_action_is_an_unknown_event_type(actions: None) -> None:
    order = Order.objects.create()
    with pytest.raises(UnknownEventType, match=r"'order\.lost'.*\['actions'\]"):
        webhooks.send_model_event(order, "lost")
    with override_webhooks(MODELS=order_entry(events=["created"])), \
            pytest.raises(UnknownEventType, match=r"'order\.deleted'.*\['events'\]"):
        webhooks.send_model_event(order, "deleted")  # a built-in one not published
    assert not Event.objects.exclude(type="order.created").exists()


def test_unsaved_deleted_and_unpublished_instances_are_refused(actions: None) -> None:
    with pytest.raises(InvalidInstance, match="no primary key"):
        webhooks.send_model_event(Order(total="1"), "shipped")
    with pytest.raises(InvalidInstance, match="no primary key"):
        webhooks.send_model_event(Order(pk=12345), "shipped")  # a key, but never saved
    order = Order.objects.create()
    order.delete()
    with pytest.raises(InvalidInstance, match="no primary key"):
        webhooks.send_model_event(order, "shipped")
    note = Note.objects.create(text="hi")
    with pytest.raises(InvalidInstance, match=r"'testapp\.Note' to WEBHOOKS\['MODELS'\]"):
        webhooks.send_model_event(note, "shipped")
    assert isinstance(InvalidInstance("x"), ValueError)
    assert not Event.objects.filter(type="order.shipped").exists()


@pytest.mark.parametrize(("serializer", "error"), [
    ("tests.testapp.serializers.RaisingSerializer", RuntimeError),
    ("tests.testapp.serializers.BrokenSerializer", PayloadError),
])
def test_a_failing_serializer_raises_to_the_caller(serializer: str,
                                                   error: type[Exception]) -> None:
    with override_webhooks(MODELS={"testapp.Product": {
            "events": ["created"], "serializer": serializer, "actions": ["discontinued"]}}):
        product = Product.objects.create(name="x")  # the save's own event keeps its error
        assert Event.objects.get(type="product.created").error
        with pytest.raises(error):
            webhooks.send_model_event(product, "discontinued")
    assert not Event.objects.filter(type="product.discontinued").exists()
