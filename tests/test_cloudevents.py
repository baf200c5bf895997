"""CloudEvents 1.0 as a per-endpoint body format, and the ``webhook-endpoint`` header.

What a ``cloudevents`` endpoint receives is read back by the CloudEvents Python SDK (both its
current ``cloudevents.core`` API and the ``cloudevents.v1`` one that ``from_http`` users
know), checked against the specification's rules as written (:func:`spec_problems`), and its
Standard Webhooks signature verified over the exact bytes received.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage
from cloudevents.core.bindings.http import from_http as core_from_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.v1.http import from_http as v1_from_http
from django.test import Client, modify_settings, override_settings
from rest_framework.test import APIClient
from standardwebhooks import Webhook

import webhooks
from tests.factories import make_endpoint, make_owner, make_user, member_of, publish
from tests.helpers import override_webhooks
from tests.receiver import Received, Receiver
from tests.testapp.models import Order
from webhooks.delivery import bodies as bodies_module
from webhooks.delivery.bodies import Bodies, cloudevents_body, cloudevents_source, members
from webhooks.delivery.fanout import fan_out
from webhooks.delivery.loop import drain
from webhooks.delivery.sending import build_headers
from webhooks.models import Delivery, Endpoint, Event, Subscription
from webhooks.receiving import verify

pytestmark = pytest.mark.django_db

API = "/api/webhooks"
CE = Endpoint.Format.CLOUDEVENTS
TRACKED = {"testapp.Order": {"events": ["created", "updated"], "owner": "customer",
                              "track": ["status"]}}


# --- the specification's rules, as written --------------------------------------------------

#: Attributes the core specification defines (besides ``data``).
CONTEXT_ATTRIBUTES = {"specversion", "id", "source", "type", "datacontenttype", "dataschema",
                      "subject", "time"}
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def spec_problems(event: dict[str, Any]) -> list[str]:
    """What a JSON-format CloudEvent breaks of CloudEvents 1.0 (spec.md, json-format.md):
    required attributes are non-empty strings, ``specversion`` is ``"1.0"``, ``time`` is an
    RFC 3339 timestamp, extension names are 1 to 20 lowercase letters or digits, and every
    attribute value is of a CloudEvents type (Boolean, Integer in 32 bits, String)."""
    problems = []
    for name in ("id", "source", "type", "specversion"):
        if not isinstance(event.get(name), str) or not event[name]:
            problems.append(f"{name} must be a non-empty string")
    if event.get("specversion") != "1.0":
        problems.append("specversion must be 1.0")
    if "time" in event and not RFC3339.match(str(event["time"])):
        problems.append("time must be RFC 3339")
    for name, value in event.items():
        if name in ("data", "data_base64"):
            continue
        if name not in CONTEXT_ATTRIBUTES and not re.fullmatch(r"[a-z0-9]{1,20}", name):
            problems.append(f"extension name {name!r}")
        if isinstance(value, bool | str):
            continue
        if isinstance(value, int) and -2**31 <= value < 2**31:
            continue
        problems.append(f"{name} is not of a CloudEvents type: {value!r}")
    return problems


def read_back(request: Received) -> dict[str, Any]:
    """What a receiver gets from ``request``: parsed by both SDK APIs, which must agree, and
    by the specification's rules. Returns the event's JSON object."""
    assert request.headers["content-type"] == "application/cloudevents+json"
    document = json.loads(request.body)
    assert spec_problems(document) == []
    core = core_from_http(HTTPMessage(request.headers, request.body), JSONFormat())
    legacy = v1_from_http(request.headers, request.body)
    attributes = {k: v for k, v in document.items() if k != "data"}
    assert core.get_data() == legacy.data == document["data"]
    assert legacy.get_attributes() == attributes
    core_attributes = core.get_attributes()
    assert isinstance(core_attributes["time"], datetime)
    assert {**core_attributes, "time": attributes["time"]} == attributes
    assert core.get_id() == request.headers["webhook-id"]
    return document


# --- on the wire ------------------------------------------------------------------------------


def test_a_cloudevents_endpoint_gets_the_same_event_as_a_cloudevent(receiver: Receiver) -> None:
    standard = make_endpoint(receiver.url("/standard"), "invoice.paid")
    cloud = make_endpoint(receiver.url("/cloud"), "invoice.paid", body_format=CE)
    event = publish("invoice.paid", {"amount": Decimal("12.30"), "note": "caf\u00e9 \u2603",
                                     "tricky": ',"changes":{"x":1}}'})
    drain()
    (plain,), (request,) = receiver.received("/standard"), receiver.received("/cloud")
    envelope = json.loads(plain.body)
    document = read_back(request)
    assert document == {
        "specversion": "1.0", "id": event.public_id, "source": "/webhooks",
        "type": "invoice.paid", "time": envelope["timestamp"],
        "datacontenttype": "application/json", "data": envelope["data"],
    }
    assert plain.headers["content-type"] == "application/json"
    # data is sent byte for byte as the stored payload has it (UTF-8 as is, not re-encoded).
    assert b'"data":{"amount":"12.30","note":"caf\xc3\xa9 \xe2\x98\x83"' in request.body
    # Signed like any delivery, over the exact bytes sent.
    for endpoint, got in ((standard, plain), (cloud, request)):
        Webhook(endpoint.secret).verify(got.body, got.headers)
        verify(got.headers, got.body, endpoint.secret)  # our receiver kit too
        assert got.headers["webhook-id"] == event.public_id
    assert not any(name.startswith("ce-") for name in request.headers)


@override_webhooks(MODELS=TRACKED)
def test_sequence_and_changes_become_extension_attributes(receiver: Receiver) -> None:
    user = make_user()
    cloud = make_endpoint(receiver.url("/cloud"), "order.updated", owner=user, body_format=CE)
    standard = make_endpoint(receiver.url("/standard"), "order.updated", owner=user)
    order = Order.objects.create(customer=user, total="5.00")
    order.status = "paid"
    order.save()
    fan_out()
    drain()
    envelope = json.loads(receiver.received("/standard")[0].body)
    request = receiver.received("/cloud")[0]
    document = read_back(request)
    assert envelope["sequence"] == 2
    assert document["sequence"] == 2  # an Integer attribute, as in the Standard body
    # An extension attribute cannot hold an object: changes is the JSON text of the object.
    assert isinstance(document["changes"], str)
    assert json.loads(document["changes"]) == envelope["changes"] == {
        "status": {"old": "new", "new": "paid"}}
    assert document["type"] == "order.updated"
    assert document["data"] == envelope["data"]
    Webhook(cloud.secret).verify(request.body, request.headers)
    assert standard.pk != cloud.pk


def test_payload_allowlists_apply_to_cloudevents_bodies(receiver: Receiver) -> None:
    user = make_user()
    narrow = make_endpoint(receiver.url("/narrow"), "order.created", owner=user,
                           body_format=CE)
    Subscription.objects.filter(endpoint=narrow).update(fields=["id", "status"])
    wildcard = make_endpoint(receiver.url("/wild"), "*", body_format=CE)
    Subscription.objects.filter(endpoint=wildcard).update(fields=["total"])
    order = Order.objects.create(customer=user, total="5.00")
    fan_out()
    drain()
    narrow_event = read_back(receiver.received("/narrow")[0])
    assert narrow_event["data"] == {"id": order.pk, "status": "new"}
    assert narrow_event["sequence"] == 1
    request = receiver.received("/wild")[0]
    assert read_back(request)["data"] == {"total": "5.00"}
    Webhook(wildcard.secret).verify(request.body, request.headers)


def test_source_and_type_prefix_settings(receiver: Receiver) -> None:
    make_endpoint(receiver.url("/cloud"), "invoice.paid", body_format=CE)
    with override_webhooks(CLOUDEVENTS_SOURCE="https://shop.example.com/webhooks",
                           CLOUDEVENTS_TYPE_PREFIX="com.example.shop."):
        publish("invoice.paid", {"n": 1})
        drain()
    document = read_back(receiver.received("/cloud")[0])
    assert document["source"] == "https://shop.example.com/webhooks"
    assert document["type"] == "com.example.shop.invoice.paid"


def test_the_default_source_is_the_current_site() -> None:
    from django.contrib import admin

    with modify_settings(INSTALLED_APPS={"append": "django.contrib.sites"}):
        from django.contrib.sites.models import SITE_CACHE, Site

        try:
            with override_settings(SITE_ID=7):
                # Django's cache of the current site, which Site.objects.get_current() reads
                # first (the test database has no sites table).
                SITE_CACHE[7] = Site(id=7, domain="shop.example.com", name="Shop")
                assert cloudevents_source() == "https://shop.example.com"
                SITE_CACHE[7] = Site(id=7, domain="http://localhost:8000", name="Dev")
                assert cloudevents_source() == "http://localhost:8000"
                with override_webhooks(CLOUDEVENTS_SOURCE="urn:example:shop"):
                    assert cloudevents_source() == "urn:example:shop"
            # No SITE_ID (the site is chosen per request): there is no current site.
            assert cloudevents_source() == "/webhooks"
        finally:
            SITE_CACHE.clear()
            # Installing the app re-ran the admin's autodiscovery, which registered Site.
            if admin.site.is_registered(Site):
                admin.site.unregister(Site)


def test_without_the_sites_framework_the_source_is_a_uri_reference() -> None:
    assert cloudevents_source() == "/webhooks"


def test_each_body_is_built_once_per_event_and_format(receiver: Receiver,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = bodies_module.cloudevents_body
    monkeypatch.setattr(bodies_module, "cloudevents_body",
                        lambda *args, **kw: calls.append("ce") or real(*args, **kw))
    restrict = bodies_module.restrict_payload
    monkeypatch.setattr(bodies_module, "restrict_payload",
                        lambda *args, **kw: calls.append("restrict") or restrict(*args, **kw))
    cloud = [make_endpoint(receiver.url(f"/cloud{n}"), "invoice.paid", body_format=CE)
             for n in range(3)]
    for n in range(2):
        make_endpoint(receiver.url(f"/standard{n}"), "invoice.paid")
    narrow = make_endpoint(receiver.url("/narrow"), "invoice.paid", body_format=CE)
    Subscription.objects.filter(endpoint=narrow).update(fields=["n"])
    publish("invoice.paid", {"n": 1, "m": 2}, count=2)
    drain()
    assert len(receiver.received()) == 12
    # Per event: one CloudEvents body for the three unrestricted endpoints, one restricted
    # payload and its CloudEvents body for the narrow one; the standard body is the stored one.
    assert sorted(calls) == ["ce"] * 4 + ["restrict"] * 2
    bodies = {r.body for r in receiver.received() if r.path.startswith("/cloud")}
    assert len(bodies) == 2
    assert all(json.loads(r.body)["data"].keys() == {"n"} for r in receiver.received("/narrow"))
    assert len(cloud) == 3


def test_a_payload_that_cannot_be_read_fails_its_delivery_for_good(receiver: Receiver) -> None:
    endpoint = make_endpoint(receiver.url("/cloud"), "invoice.paid", body_format=CE)
    event = Event.objects.create(type="invoice.paid", payload="not json")
    Delivery.objects.create(event=event, endpoint=endpoint, next_attempt_at=event.created_at)
    drain()
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.last_error.startswith("payload_error:")
    assert receiver.received() == []


# --- the body, piece by piece -----------------------------------------------------------------


def test_members_keep_each_value_as_written() -> None:
    document = ('{"id":"evt_1","type":"a.b","timestamp":"2024-01-02T03:04:05.000Z",'
                '"sequence":12,"data":{"s":"\\"}, \\"changes\\":","n":[1.50,{"x":null}]},'
                '"changes":{"data":{"old":{"changes":1},"new":"}"}}}')
    found = members(document)
    assert list(found) == ["id", "type", "timestamp", "sequence", "data", "changes"]
    assert found["sequence"] == "12"
    assert found["data"] == '{"s":"\\"}, \\"changes\\":","n":[1.50,{"x":null}]}'
    assert json.loads(found["changes"]) == {"data": {"old": {"changes": 1}, "new": "}"}}
    assert members(' { "a" : 1 , "b":[ ] } ') == {"a": "1", "b": "[ ]"}
    assert members("{}") == {}
    for bad in ("[]", '{"a":1', '{"a" 1}', '{"a":1;"b":2}', "{a:1}", ""):
        with pytest.raises(ValueError):
            members(bad)


def test_cloudevents_body_of_an_envelope() -> None:
    payload = ('{"id":"evt_X","type":"order.updated","timestamp":"2024-01-02T03:04:05.123Z",'
               '"sequence":3,"data":{"id":1},"changes":{"status":{"old":"a","new":"\u00e9"}}}')
    body = cloudevents_body(payload, "https://shop.example.com", "com.example.")
    assert json.loads(body) == {
        "specversion": "1.0", "id": "evt_X", "source": "https://shop.example.com",
        "type": "com.example.order.updated", "time": "2024-01-02T03:04:05.123Z",
        "datacontenttype": "application/json", "sequence": 3,
        "changes": '{"status":{"old":"a","new":"\u00e9"}}', "data": {"id": 1},
    }
    assert spec_problems(json.loads(body)) == []
    bare = json.loads(cloudevents_body('{"id":"evt_Y","type":"a.b","timestamp":"T","data":7}',
                                       "/webhooks"))
    assert "sequence" not in bare and "changes" not in bare and bare["data"] == 7


def test_bodies_are_cached_per_event_format_and_fields() -> None:
    event = webhooks.send_event("invoice.paid", {"n": 1, "m": 2})
    batch = Bodies(source="/s")
    standard = batch.get(event, "standard")
    assert standard == event.payload.encode()
    assert batch.get(event, "standard") is standard
    cloud = batch.get(event, CE)
    assert batch.get(event, CE) is cloud and cloud != standard
    narrow = batch.get(event, CE, ("n",))
    assert json.loads(narrow)["data"] == {"n": 1}
    assert Bodies.for_formats({"standard"}).source == "/webhooks"
    with override_webhooks(CLOUDEVENTS_SOURCE="urn:x", CLOUDEVENTS_TYPE_PREFIX="p."):
        configured = Bodies.for_formats({"standard", CE})
    assert (configured.source, configured.type_prefix) == ("urn:x", "p.")


# --- the endpoint's setting: API and admin ----------------------------------------------------


@pytest.mark.owners
def test_the_api_sets_and_keeps_the_body_format() -> None:
    client = APIClient()
    client.force_authenticate(member_of(make_owner()))
    created = client.post(API + "/endpoints/", {"url": "https://example.com/hook",
                                                "events": ["invoice.paid"]}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["body_format"] == "standard"
    url = API + f"/endpoints/{created.json()['id']}/"
    changed = client.patch(url, {"body_format": "cloudevents"}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["body_format"] == "cloudevents"
    kept = client.patch(url, {"description": "orders"}, format="json")
    assert kept.json()["body_format"] == "cloudevents"
    assert Endpoint.objects.get().body_format == CE
    refused = client.patch(url, {"body_format": "xml"}, format="json")
    assert refused.status_code == 400
    assert "body_format" in refused.json()
    second = client.post(API + "/endpoints/", {"url": "https://example.com/ce",
                                               "events": ["*"], "body_format": "cloudevents"},
                         format="json")
    assert second.json()["body_format"] == "cloudevents"


def test_staff_choose_the_body_format_in_the_admin() -> None:
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(admin)
    endpoint = make_endpoint("https://example.com/hook", "invoice.paid")
    url = f"/admin/webhooks/endpoint/{endpoint.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    assert b'name="body_format"' in page.content
    form = {"url": endpoint.url, "description": "", "events": ["invoice.paid"],
            "payload_fields": "{}", "headers": "{}", "is_active": "on",
            "body_format": "cloudevents"}
    response = client.post(url, form)
    assert response.status_code == 302, response.content[:2000]
    endpoint.refresh_from_db()
    assert endpoint.body_format == CE
    form.pop("body_format")  # a form posted without it keeps the format
    assert client.post(url, form).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.body_format == CE


# --- who a delivery is for --------------------------------------------------------------------


def test_the_endpoint_header_names_the_endpoint_when_the_site_asks(receiver: Receiver) -> None:
    first = make_endpoint(receiver.url("/a"), "invoice.paid")
    second = make_endpoint(receiver.url("/b"), "invoice.paid", body_format=CE)
    publish("invoice.paid", {"n": 1})
    drain()
    assert all("webhook-endpoint" not in r.headers for r in receiver.received())
    with override_webhooks(ENDPOINT_HEADER=True):
        publish("invoice.paid", {"n": 2})
        drain()
    (_, a), (_, b) = receiver.received("/a"), receiver.received("/b")
    assert a.headers["webhook-endpoint"] == str(first.pk)
    assert b.headers["webhook-endpoint"] == str(second.pk)
    # The header is not part of the body: the standard body is the same for every endpoint.
    assert json.loads(a.body)["data"] == {"n": 2}
    Webhook(first.secret).verify(a.body, a.headers)


def test_the_endpoint_header_cannot_be_replaced_by_custom_headers() -> None:
    from django.core.exceptions import ValidationError

    endpoint = make_endpoint("https://example.com/hook", "invoice.paid")
    endpoint.headers = {"webhook-endpoint": "someone-else"}
    with pytest.raises(ValidationError):
        endpoint.full_clean()
    # One that slipped past validation (a queryset update) is left out when sending.
    Endpoint.objects.filter(pk=endpoint.pk).update(
        headers={"webhook-endpoint": "someone-else", "Webhook-Endpoint": "x", "X-Ok": "1"})
    endpoint.refresh_from_db()
    event = webhooks.send_event("invoice.paid", {"n": 1})
    headers = build_headers(endpoint, event, event.payload.encode(), 1, endpoint_header=True)
    assert headers["webhook-endpoint"] == str(endpoint.pk)
    assert [name for name in headers if name.lower() == "webhook-endpoint"] == [
        "webhook-endpoint"]
    assert headers["X-Ok"] == "1"
    assert headers["Content-Type"] == "application/json"
    endpoint.body_format = CE
    assert build_headers(endpoint, event, b"{}", 1)["Content-Type"] == (
        "application/cloudevents+json")
    assert "webhook-endpoint" not in build_headers(endpoint, event, b"{}", 1)
