"""Change filters, old/new values on ``updated``, and thin events."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.helpers import make_user, override_webhooks
from tests.testapp.models import Order, Product
from webhooks.checks import check_catalog
from webhooks.events.catalog import SNAPSHOT_ATTR
from webhooks.models import Event

pytestmark = pytest.mark.django_db

TRACKED = {"testapp.Order": {"events": ["created", "updated"], "owner": "customer",
                              "track": ["total", "customer"], "updated_when": ["status"]}}


def bodies(event_type: str) -> list[dict[str, Any]]:
    return [json.loads(e.payload) for e in Event.objects.filter(type=event_type)
            .order_by("created_at")]


@override_webhooks(MODELS=TRACKED)
def test_updated_only_when_a_listed_field_changed_with_old_and_new_values() -> None:
    user = make_user()
    order = Order.objects.create(customer=user, total="10.00")
    order.total = Decimal("12.00")
    order.save()  # status unchanged: no event
    assert bodies("order.updated") == []
    order.status = "paid"
    order.save()
    (body,) = bodies("order.updated")
    assert body["data"]["status"] == "paid"
    # The diff is against the row as it was, whoever changed it since it was loaded.
    assert body["changes"] == {"status": {"old": "new", "new": "paid"}}
    Order.objects.filter(pk=order.pk).update(total=Decimal("13.00"))  # behind its back
    reloaded = order
    reloaded.status = "shipped"
    reloaded.total = Decimal("15.50")
    reloaded.save()
    last = bodies("order.updated")[-1]
    assert last["changes"] == {"status": {"old": "paid", "new": "shipped"},
                               "total": {"old": "13.00", "new": "15.50"}}


@override_webhooks(MODELS=TRACKED)
def test_update_fields_is_honoured() -> None:
    order = Order.objects.create(total="10.00")
    order.status = "paid"
    order.total = Decimal("11.00")
    with CaptureQueriesContext(connection) as ctx:
        order.save(update_fields=["total"])  # status not saved: not a status change
    assert bodies("order.updated") == []
    assert not any("webhooks_event" in q["sql"] or "webhooks_insert_event" in q["sql"]
                   for q in ctx.captured_queries)
    with CaptureQueriesContext(connection) as ctx:
        order.save(update_fields=["customer"])  # nothing listed in updated_when is saved...
    selects = [q for q in ctx.captured_queries if q["sql"].startswith("SELECT")]
    assert len(selects) == 1  # ...but customer is tracked: its old value is read, once
    order.save(update_fields=["status"])
    (body,) = bodies("order.updated")
    assert body["changes"] == {"status": {"old": "new", "new": "paid"}}


@override_webhooks(MODELS=TRACKED)
def test_deferred_fields_and_blind_saves_never_lose_an_event() -> None:
    order = Order.objects.create(total="10.00")
    partial = Order.objects.only("id", "total").get(pk=order.pk)
    with CaptureQueriesContext(connection) as ctx:
        partial.total = Decimal("20.00")
        partial.save()  # a deferred-field save: Django saves the loaded fields only
    (select,) = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("SELECT")]
    assert '"total"' in select and '"status"' not in select  # reads what is saved, only
    assert bodies("order.updated") == []  # status was not saved
    blind = Order(pk=order.pk, customer=None, status="paid", total=Decimal("1.00"),
                  created_at=order.created_at)
    blind.save()  # built in memory, never loaded: we cannot know, so the event is sent
    (body,) = bodies("order.updated")
    assert body["changes"] == {}  # unknown old values are not invented


def test_without_tracking_a_save_costs_no_extra_query_and_has_no_changes_key() -> None:
    order = Order.objects.create(total="1.00")
    order.total = Decimal("2.00")
    with CaptureQueriesContext(connection) as ctx:
        order.save()
    # No read of old values (on PostgreSQL the event itself is written by a SELECT of the
    # outbox's function, webhooks_insert_event).
    assert not [q for q in ctx.captured_queries if q["sql"].startswith("SELECT")
                and "webhooks_insert_event" not in q["sql"]]
    assert SNAPSHOT_ATTR not in order.__dict__
    (body,) = bodies("order.updated")
    assert "changes" not in body


@override_webhooks(MODELS={"testapp.Product": {
    "events": ["created", "updated"], "thin": "https://shop.example.com/api/products/{pk}/"}})
def test_thin_events_carry_an_id_and_a_url_only() -> None:
    product = Product.objects.create(name="Secret formula", price="9.99")
    (body,) = bodies("product.created")
    assert body["data"] == {"id": product.pk,
                            "url": f"https://shop.example.com/api/products/{product.pk}/"}
    assert "Secret formula" not in json.dumps(body)


@pytest.mark.parametrize("options,fragment", [
    ({"track": "total"}, "list of field names"),
    ({"track": ["nope"]}, "no field 'nope'"),
    ({"updated_when": ["items"]}, "is not a column"),
    ({"thin": "https://x.example.com/orders/"}, "containing {pk}"),
    ({"thin": "https://x.example.com/{pk}/", "serializer":
      "tests.testapp.serializers.ProductSerializer"}, "both 'thin' and 'serializer'"),
])
def test_bad_tracking_options_are_check_errors(options: dict[str, Any], fragment: str) -> None:
    with override_webhooks(MODELS={"testapp.Order": options}):
        (message,) = check_catalog()
    assert message.id == "webhooks.E010" and fragment in message.msg


@override_webhooks(MODELS={
    "testapp.Order": {"events": ["updated"], "track": ["status"]},
    "testapp.Product": {"events": ["created"], "thin": "https://x.example.com/p/{pk}/"},
})
def test_the_catalog_examples_show_thin_events_and_changes() -> None:
    from webhooks.api.examples import example_body
    from webhooks.events.catalog import get_catalog

    catalog = get_catalog()
    thin = example_body(catalog.types["product.created"], catalog)
    assert thin["data"] == {"id": 1, "url": "https://x.example.com/p/1/"}
    updated = example_body(catalog.types["order.updated"], catalog)
    assert set(updated["changes"]) == {"status"}


# --- payload field allowlists ----------------------------------------------------------------


def test_a_subscription_can_restrict_the_payload_to_some_fields(receiver: Any) -> None:
    from standardwebhooks import Webhook

    from tests.helpers import make_endpoint
    from webhooks.delivery.fanout import fan_out
    from webhooks.delivery.loop import drain
    from webhooks.models import Subscription

    user = make_user()
    narrow = make_endpoint(receiver.url("/narrow"), "order.created", owner=user)
    Subscription.objects.filter(endpoint=narrow).update(fields=["id", "status"])
    wide = make_endpoint(receiver.url("/wide"), "*")
    Subscription.objects.filter(endpoint=wide).update(fields=["total"])  # for "*"
    full = make_endpoint(receiver.url("/full"), "order.created")
    order = Order.objects.create(customer=user, total="5.00")
    fan_out()
    with CaptureQueriesContext(connection) as ctx:
        drain()
    by_path = {r.path: r for r in receiver.received()}
    assert json.loads(by_path["/narrow"].body)["data"] == {"id": order.pk, "status": "new"}
    assert json.loads(by_path["/wide"].body)["data"] == {"total": "5.00"}
    assert set(json.loads(by_path["/full"].body)["data"]) >= {"id", "status", "total",
                                                               "customer"}
    for path, endpoint in (("/narrow", narrow), ("/wide", wide), ("/full", full)):
        Webhook(endpoint.secret).verify(by_path[path].body, by_path[path].headers)
    assert sum("webhooks_subscription" in q["sql"] for q in ctx.captured_queries) == 1


def test_the_api_reads_writes_and_validates_payload_fields() -> None:
    from rest_framework.test import APIClient

    user = make_user()
    client = APIClient()
    client.force_authenticate(user)
    url = "/api/webhooks/endpoints/"
    body = {"url": "https://example.com/hook", "events": ["order.created", "order.updated"],
            "payload_fields": {"order.created": ["id", "status"]}}
    created = client.post(url, body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["payload_fields"] == {"order.created": ["id", "status"]}
    bad = client.post(url, {**body, "payload_fields": {"order.created": ["ssn"],
                                                       "invoice.paid": ["x"]}}, format="json")
    assert bad.status_code == 400
    messages = " ".join(bad.json()["payload_fields"])
    assert "no field ssn" in messages and "not one of this endpoint's events" in messages
    changed = client.patch(f"{url}{created.json()['id']}/",
                           {"payload_fields": {"order.updated": ["total"]}}, format="json")
    assert changed.json()["payload_fields"] == {"order.updated": ["total"]}
    catalog = {t["type"]: t for t in client.get("/api/webhooks/event-types/").json()}
    assert {"id", "status", "total", "customer"} <= set(
        catalog["order.created"]["payload_fields"])
    assert catalog["invoice.paid"]["payload_fields"] is None


def test_staff_set_payload_fields_in_the_admin(client: Any) -> None:
    from webhooks.models import Endpoint

    staff = make_user("staff")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    form = {"url": "https://example.com/h", "description": "", "owner": "", "is_active": "on",
            "events": ["order.created"], "headers": "{}", "rate_limit": "",
            "payload_fields": '{"order.created": ["id", "total"]}'}
    response = client.post("/admin/webhooks/endpoint/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    endpoint = Endpoint.objects.get()
    assert endpoint.payload_fields == {"order.created": ["id", "total"]}
    page = client.get(f"/admin/webhooks/endpoint/{endpoint.pk}/change/").content.decode()
    assert "&quot;total&quot;" in page or '"total"' in page
    bad = client.post("/admin/webhooks/endpoint/add/",
                      {**form, "payload_fields": '{"order.created": ["ssn"]}'})
    assert bad.status_code == 200 and "has no field ssn" in bad.content.decode()


@override_webhooks(MODELS={"testapp.Order": {"events": ["updated"], "owner": "customer",
                                             "track": ["total", "status"]}})
def test_an_allowlist_governs_changes_too(receiver: Any) -> None:
    """A field left out of the allowlist appears nowhere in the body: not in ``data``, not in
    ``changes`` (issue 14, finding 2)."""
    from standardwebhooks import Webhook

    from tests.helpers import make_endpoint
    from webhooks.delivery.fanout import fan_out
    from webhooks.delivery.loop import drain
    from webhooks.models import Subscription

    user = make_user()
    narrow = make_endpoint(receiver.url("/narrow"), "order.updated", owner=user)
    Subscription.objects.filter(endpoint=narrow).update(fields=["id", "status"])
    full = make_endpoint(receiver.url("/full"), "order.updated", owner=user)
    order = Order.objects.create(customer=user, total="5.00")
    order.total = Decimal("7.00")
    order.status = "paid"
    order.save()
    fan_out()
    drain()
    by_path = {r.path: r for r in receiver.received()}
    narrow_body = json.loads(by_path["/narrow"].body)
    assert narrow_body["data"] == {"id": order.pk, "status": "paid"}
    assert narrow_body["changes"] == {"status": {"old": "new", "new": "paid"}}
    assert "7.00" not in by_path["/narrow"].body.decode()
    assert "5.00" not in by_path["/narrow"].body.decode()
    assert set(json.loads(by_path["/full"].body)["changes"]) == {"total", "status"}
    for path, endpoint in (("/narrow", narrow), ("/full", full)):
        Webhook(endpoint.secret).verify(by_path[path].body, by_path[path].headers)
        # The API's delivery detail shows the body that endpoint was sent, not the stored one.
        from rest_framework.test import APIClient

        from webhooks.models import Delivery
        client = APIClient()
        client.force_authenticate(user)
        delivery = Delivery.objects.get(endpoint=endpoint)
        shown = client.get(f"/api/webhooks/deliveries/{delivery.pk}/").json()["payload"]
        assert shown == json.loads(by_path[path].body)
