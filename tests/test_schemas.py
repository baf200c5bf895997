"""JSON Schemas of the event types: derived from serializers, declared for custom events,
narrowed by payload fields, published by event-types/ and in the OpenAPI document, and true of
every example and every real body (validated with ``jsonschema``, draft 2020-12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.test import override_settings
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.settings import patched_settings
from drf_spectacular.validation import validate_schema
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from rest_framework import serializers
from rest_framework.test import APIClient

import webhooks
from tests.factories import make_endpoint, make_user
from tests.helpers import override_webhooks
from tests.receiver import Receiver
from tests.schema_check import strict_errors
from tests.testapp.models import LineItem, Order, Organization, Product
from tests.testapp.serializers import ProductSerializer
from tests.urls import api
from webhooks import services
from webhooks.api.examples import example_body, schema_example
from webhooks.checks import check_catalog, check_settings
from webhooks.delivery.fanout import fan_out
from webhooks.delivery.loop import drain
from webhooks.events.catalog import get_catalog
from webhooks.events.payloads import payload_fields, restrict_payload, subscriber_fields
from webhooks.events.schemas import (
    DECIMAL_STRING,
    DIALECT,
    embeddable,
    event_schema,
    serializer_schema,
)
from webhooks.models import Delivery, Event

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
API = "/api/webhooks"

#: A pydantic-style declared schema: its ``Money`` is a ``$defs`` entry it refers to.
INVOICE_SCHEMA = {
    "$schema": DIALECT,
    "title": "InvoicePaid",
    "type": "object",
    "$defs": {"Money": {"type": "object", "title": "Money",
                        "properties": {"amount": {"type": "integer"},
                                       "currency": {"enum": ["EUR", "USD"]}},
                        "required": ["amount", "currency"]}},
    "properties": {"invoice": {"type": "string", "pattern": "^in_"},
                   "total": {"$ref": "#/$defs/Money"},
                   "paid_at": {"type": "string", "format": "date-time"}},
    "required": ["invoice", "total", "paid_at"],
    "examples": [{"invoice": "in_1", "total": {"amount": 1999, "currency": "EUR"},
                  "paid_at": "2024-01-02T03:04:05Z"}],
}
#: A declared schema without examples: its example is made from it.
REFUND_SCHEMA = {
    "type": "object",
    "properties": {"refund": {"type": "string", "minLength": 3},
                   "amount": {"type": "integer", "minimum": 1},
                   "reason": {"enum": ["duplicate", "fraud"]},
                   "lines": {"type": "array", "minItems": 1, "items": {
                       "type": "object", "properties": {"sku": {"type": "string"}},
                       "required": ["sku"]}}},
    "required": ["refund", "amount"],
}
#: Every kind of type: serializer-derived (default, configured with nesting), thin, tracked
#: (changes), custom declared (with $defs, without examples), custom undeclared, the test event.
RICH = {
    "MODELS": {
        "testapp.Order": {"events": ["created", "updated", "deleted"], "owner": "customer",
                          "track": ["status", "total", "customer"]},
        "testapp.Product": {"events": ["created", "updated"],
                            "thin": "https://shop.example.com/products/{pk}/"},
        "testapp.LineItem": {"events": ["created"], "owner": "order__customer",
                             "serializer": "tests.testapp.serializers.LineItemSerializer"},
    },
    "EVENTS": {
        "invoice.paid": {"description": "An invoice was paid.", "schema": INVOICE_SCHEMA},
        "refund.issued": {"description": "A refund was issued.", "schema": REFUND_SCHEMA},
        "ping.sent": "A ping.",
    },
}


def assert_valid(schema: dict[str, Any], body: Any) -> None:
    errors = strict_errors(schema, body)
    assert not errors, errors


def as_sent(data: Any) -> Any:
    """``data`` as a payload carries it (Django's JSON encoder, like the outbox)."""
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


# --- the validator is not vacuous ---------------------------------------------------------


def test_the_strict_validator_checks_formats_and_unknown_members() -> None:
    schema = {"type": "object", "properties": {"at": {"type": "string", "format": "date-time"},
                                               "key": {"type": "string", "format": "uuid"}}}
    assert strict_errors(schema, {"at": "2024-01-02T03:04:05.123Z",
                                  "key": "9c5b94b1-35ad-49bb-b118-8e8fc24abf80"}) == []
    assert strict_errors(schema, {"at": "yesterday"})
    assert strict_errors(schema, {"key": "not-a-uuid"})
    assert strict_errors(schema, {"other": 1})  # not listed: refused when closed
    with pytest.raises(Exception, match="is not valid under any of the given schemas"):
        strict_errors({"type": "objekt"}, {})


# --- derived from serializers -------------------------------------------------------------


class Everything(serializers.Serializer):
    text = serializers.CharField(max_length=10)
    maybe_text = serializers.CharField(allow_null=True)
    amount = serializers.DecimalField(max_digits=6, decimal_places=2)
    amount_number = serializers.DecimalField(max_digits=6, decimal_places=2,
                                             coerce_to_string=False)
    count = serializers.IntegerField(min_value=0)
    ratio = serializers.FloatField()
    flag = serializers.BooleanField()
    at = serializers.DateTimeField()
    on = serializers.DateField()
    clock = serializers.TimeField()
    span = serializers.DurationField()
    key = serializers.UUIDField()
    mail = serializers.EmailField()
    link = serializers.URLField()
    address = serializers.IPAddressField(protocol="IPv4")
    color = serializers.ChoiceField(choices=[("red", "Red"), ("green", "Green")],
                                    allow_null=True)
    tags = serializers.ListField(child=serializers.CharField())
    scores = serializers.DictField(child=serializers.IntegerField())
    blob = serializers.JSONField()
    product = ProductSerializer()
    products = ProductSerializer(many=True)
    shouty = serializers.SerializerMethodField()
    maybe_count = serializers.SerializerMethodField()
    anything = serializers.SerializerMethodField()
    secret = serializers.CharField(write_only=True)

    def get_shouty(self, obj: Any) -> str:
        return str(obj["text"]).upper()

    def get_maybe_count(self, obj: Any) -> int | None:
        return None

    def get_anything(self, obj):  # type: ignore[no-untyped-def]  # no return hint: anything
        return [1, "two"]


def test_every_kind_of_field_is_described_as_it_is_written() -> None:
    from datetime import UTC, date, datetime, time, timedelta

    product = Product.objects.create(name="Pen", price="2.50")
    schema = serializer_schema(Everything())
    props = schema["properties"]
    assert "secret" not in props  # write-only: never sent
    assert schema["required"] == list(props)
    assert props["text"] == {"type": "string", "maxLength": 10}
    assert props["maybe_text"] == {"type": ["string", "null"]}
    assert props["amount"] == DECIMAL_STRING  # DRF's COERCE_DECIMAL_TO_STRING
    # Without DRF's coercion the field returns a Decimal, which the payload's encoder (Django's)
    # writes as a string too.
    assert props["amount_number"] == DECIMAL_STRING
    assert props["count"] == {"type": "integer", "minimum": 0}
    assert props["at"] == {"type": "string", "format": "date-time"}
    assert props["on"] == {"type": "string", "format": "date"}
    assert props["key"] == {"type": "string", "format": "uuid"}
    assert props["address"] == {"type": "string", "format": "ipv4"}
    assert props["color"] == {"enum": ["red", "green", None]}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["scores"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["blob"] == {}
    assert props["product"]["properties"]["price"] == DECIMAL_STRING
    assert props["products"]["type"] == "array"
    assert props["shouty"] == {"type": "string"}  # from the method's return type
    assert props["maybe_count"] == {"type": ["integer", "null"]}
    assert props["anything"] == {}
    value = {"text": "hello", "maybe_text": None, "amount": Decimal("12.5"),
             "amount_number": Decimal("1.25"), "count": 3, "ratio": 0.5, "flag": False,
             "at": datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC), "on": date(2024, 5, 6),
             "clock": time(7, 8), "span": timedelta(minutes=3),
             "key": "9c5b94b1-35ad-49bb-b118-8e8fc24abf80", "mail": "a@example.com",
             "link": "https://example.com/x", "address": "192.0.2.7", "color": None,
             "tags": ["a"], "scores": {"a": 1}, "blob": {"any": ["thing"]}, "product": product,
             "products": [product, product], "secret": "s"}
    written = as_sent(Everything(value).data)
    assert_valid(schema, written)
    assert strict_errors(schema, {**written, "amount": 12.5})  # a number is not what we send
    assert strict_errors(schema, {**written, "color": "blue"})
    assert strict_errors({**schema, "required": []}, {"products": [{"id": 1, "extra": 2}]})


class DeliveryRow(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = ["id", "endpoint", "event", "status", "last_status_code"]
        read_only_fields = fields


class OrganizationRow(serializers.ModelSerializer):
    member_names = serializers.StringRelatedField(source="members", many=True)

    class Meta:
        model = Organization
        fields = ["id", "name", "members", "member_names"]
        read_only_fields = ["id", "name", "members"]


def test_relations_are_their_targets_primary_keys_and_nullability_is_the_models() -> None:
    endpoint = make_endpoint("https://example.com/h")
    event = webhooks.send_event("invoice.paid", {"n": 1})
    delivery = Delivery.objects.create(event=event, endpoint=endpoint)
    schema = serializer_schema(DeliveryRow())
    uuid_key = {"type": "string", "format": "uuid"}
    assert schema["properties"]["endpoint"] == uuid_key  # read-only: no queryset, the model's
    assert schema["properties"]["event"] == uuid_key
    assert schema["properties"]["status"] == {"enum": ["pending", "succeeded", "failed"]}
    assert schema["properties"]["last_status_code"]["type"] == ["integer", "null"]
    assert_valid(schema, as_sent(DeliveryRow(delivery).data))
    organization = Organization.objects.create(name="Acme")
    organization.members.add(make_user("ann"), make_user("bo"))
    schema = serializer_schema(OrganizationRow())
    assert schema["properties"]["members"] == {"type": "array", "items": {"type": "integer"}}
    assert schema["properties"]["member_names"] == {"type": "array",
                                                    "items": {"type": "string"}}
    assert_valid(schema, as_sent(OrganizationRow(organization).data))
    # The default serializer of a model: a nullable foreign key may be null.
    data = event_schema("order.created")["properties"]["data"]
    assert data["properties"]["customer"] == {"type": ["integer", "null"]}
    assert data["properties"]["total"] == DECIMAL_STRING


# --- the envelope, thin events, changes, declared schemas --------------------------------


def test_every_type_of_the_catalog_has_a_valid_schema_with_its_envelope() -> None:
    catalog = get_catalog()
    for name, event_type in catalog.types.items():
        schema = event_schema(name)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == DIALECT
        assert schema["title"] == name and schema["description"] == event_type.description
        assert schema["properties"]["type"] == {"const": name}
        assert schema["properties"]["id"]["pattern"] == "^evt_[0-9A-HJKMNP-TV-Z]{26}$"
        assert schema["properties"]["timestamp"]["format"] == "date-time"
        required = {"id", "type", "timestamp", "data"}
        if event_type.model:
            required.add("sequence")  # every model event has one
        assert set(schema["required"]) == required
        assert ("sequence" in schema["properties"]) is (name != "webhook.test")
    assert event_schema("invoice.paid")["properties"]["data"] == {"type": "object"}


@override_webhooks(**RICH)
def test_thin_tracked_and_declared_types() -> None:
    thin = event_schema("product.created")["properties"]["data"]
    assert thin == {"type": "object", "properties": {
        "id": {"type": "integer"},
        "url": {"type": "string", "format": "uri",
                "description": "Where to fetch the object, with your credentials."}},
        "required": ["id", "url"]}
    updated = event_schema("order.updated")
    assert "changes" in updated["required"]
    changes = updated["properties"]["changes"]
    assert changes["propertyNames"] == {"enum": ["status", "total", "customer"]}
    assert changes["properties"]["total"]["properties"]["old"] == DECIMAL_STRING
    assert changes["properties"]["customer"]["properties"]["new"] == {
        "type": ["integer", "null"]}
    assert "changes" not in event_schema("order.created")["properties"]
    # Declared: embedded with its $defs inlined, so it works inside the envelope (and an
    # OpenAPI document); its dialect is the document's.
    invoice = event_schema("invoice.paid")["properties"]["data"]
    assert invoice["properties"]["total"] == INVOICE_SCHEMA["$defs"]["Money"]  # type: ignore[index]
    assert "$defs" not in invoice and "$schema" not in invoice
    assert payload_fields("invoice.paid") == ["invoice", "total", "paid_at"]
    assert payload_fields("ping.sent") is None
    nested = event_schema("line_item.created")["properties"]["data"]
    assert nested["properties"]["product"]["properties"]["price"] == DECIMAL_STRING
    assert nested["properties"]["label"] == {"type": "string"}
    # A dotted source crossing an empty relation is left out by DRF: not required.
    assert "order_status" not in nested["required"]


def test_recursive_references_are_inlined_to_a_bounded_depth() -> None:
    tree = {"$defs": {"node": {"type": "object", "properties": {
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
        "$ref": "#/$defs/node"}
    inlined = embeddable(tree)
    assert "$ref" not in json.dumps(inlined)
    assert_valid(inlined, {"children": [{"children": [{"children": []}]}]})


@override_webhooks(**RICH)
def test_a_payload_field_allowlist_narrows_the_schema() -> None:
    schema = event_schema("order.created", fields=["id", "status"])
    data = schema["properties"]["data"]
    assert list(data["properties"]) == ["id", "status"]
    assert data["required"] == ["id", "status"]
    assert data["propertyNames"] == {"enum": ["id", "status"]}
    full = example_body(get_catalog().types["order.created"], get_catalog())
    narrowed = json.loads(restrict_payload(json.dumps(full), ["id", "status"]))
    assert_valid(schema, narrowed)
    assert strict_errors(schema, full)  # the unrestricted body has fields it may not have
    # A type without listed properties: only the member names are constrained.
    ping = event_schema("ping.sent", fields=["n"])["properties"]["data"]
    assert ping == {"type": "object", "propertyNames": {"enum": ["n"]}}
    assert event_schema("order.created", fields=[]) == event_schema("order.created")


# --- examples -----------------------------------------------------------------------------


@pytest.mark.parametrize("config", [{}, RICH], ids=["test settings", "every kind of type"])
def test_every_example_matches_its_schema(config: dict[str, Any]) -> None:
    with override_webhooks(**config):
        catalog = get_catalog()
        for event_type in catalog.types.values():
            example = example_body(event_type, catalog)
            errors = strict_errors(event_schema(event_type), example)
            assert not errors, (event_type.name, errors)
        if config:
            examples = {t: example_body(catalog.types[t], catalog)["data"]
                        for t in ("invoice.paid", "refund.issued", "product.created")}
            assert examples["invoice.paid"] == INVOICE_SCHEMA["examples"][0]  # type: ignore[index]
            assert examples["refund.issued"] == {"refund": "string", "amount": 1,
                                                 "reason": "duplicate",
                                                 "lines": [{"sku": "string"}]}
            order = example_body(catalog.types["order.updated"], catalog)
            assert order["changes"] == {"status": {"old": "string", "new": "string"},
                                        "total": {"old": "10.00", "new": "10.00"},
                                        "customer": {"old": 1, "new": 1}}


def test_schema_examples_cover_the_keywords() -> None:
    assert schema_example({"type": ["null", "integer"], "minimum": 5}) == 5
    assert schema_example({"anyOf": [{"type": "null"}, {"type": "string",
                                                        "format": "uuid"}]}) == \
        "9c5b94b1-35ad-49bb-b118-8e8fc24abf80"
    assert schema_example({"const": "x"}) == "x"
    assert schema_example({"type": "string", "maxLength": 3}) == "str"
    assert schema_example({"type": "array", "items": {"type": "boolean"},
                           "minItems": 2}) == [True, True]


# --- real payloads ------------------------------------------------------------------------


@override_webhooks(**RICH)
def test_every_real_payload_matches_its_schema(receiver: Receiver) -> None:
    """Every type of a catalog that has every kind, sent for real to two receivers (one
    subscribed to everything, one with payload field allowlists): each body received, and
    each event row, matches its type's schema (narrowed for the restricted endpoint)."""
    everything = make_endpoint(receiver.url("/all"))
    restrictions = {"order.updated": ["id", "status"], "invoice.paid": ["invoice"],
                    "ping.sent": ["n"], "refund.issued": ["refund", "amount"]}
    narrow = services.create_endpoint(None, list(restrictions), restrictions,
                                      url=receiver.url("/narrow"))
    user = make_user("buyer")
    order = Order.objects.create(customer=user, total="10.00")
    product = Product.objects.create(name="Pen", price="2.50")
    LineItem.objects.create(order=order, product=product, quantity=2)
    order.status, order.total = "paid", Decimal("5.00")
    order.save()
    order.customer = None
    order.save(update_fields=["customer"])
    product.name = "Pencil"
    product.save()
    webhooks.send_event("invoice.paid", {"invoice": "in_7", "total": {
        "amount": 500, "currency": "EUR"}, "paid_at": order.created_at}, owner=user,
        sequence_key=order)
    webhooks.send_event("refund.issued", {"refund": "re_1", "amount": 100}, owner=user)
    webhooks.send_event("ping.sent", {"n": 1})
    Order.objects.get(pk=order.pk).delete()
    services.send_test_event(everything)
    ids = [str(pk) for pk in Event.objects.values_list("pk", flat=True)]
    while fan_out(ids):
        pass
    drain()
    events = list(Event.objects.all())
    assert all(e.payload and not e.error for e in events)
    for event in events:
        assert_valid(event_schema(event.type), json.loads(event.payload))
    received = defaultdict(list)
    for request in receiver.received():
        body = json.loads(request.body)
        received[request.path].append(body["type"])
        fields = subscriber_fields(body["type"], restrictions) if request.path == "/narrow" else ()
        errors = strict_errors(event_schema(body["type"], fields=fields), body)
        assert not errors, (request.path, body["type"], errors)
    assert set(received["/all"]) == set(get_catalog().types)  # every type, for real
    assert sorted(received["/narrow"]) == ["invoice.paid", "order.updated", "order.updated",
                                           "ping.sent", "refund.issued"]
    assert narrow.pk  # the restricted endpoint took part


# --- the API ------------------------------------------------------------------------------


@override_webhooks(**RICH)
def test_event_types_publishes_each_schema_and_an_endpoint_sees_its_own() -> None:
    alice, bob = make_user("alice"), make_user("bob")
    client = APIClient()
    client.force_authenticate(alice)
    catalog = {t["type"]: t for t in client.get(API + "/event-types/").json()}
    assert set(catalog) == set(get_catalog().types)
    for name, entry in catalog.items():
        assert entry["schema"] == event_schema(name)
        assert_valid(entry["schema"], entry["example"])
    restrictions = {"order.created": ["id", "status"], "*": ["id"]}
    endpoint = services.create_endpoint(alice, ["order.created", "*"], restrictions,
                                        url="https://example.com/hook")
    response = client.get(API + f"/endpoints/{endpoint.pk}/event-types/")
    assert response.status_code == 200
    mine = {t["type"]: t for t in response.json()}
    assert set(mine) == set(catalog) - {"webhook.test"}  # "*": every subscribable type
    assert mine["order.created"]["schema"] == event_schema("order.created",
                                                           fields=["id", "status"])
    assert mine["order.created"]["example"]["data"] == {"id": 1, "status": "string"}
    assert mine["product.created"]["schema"] == event_schema("product.created", fields=["id"])
    for entry in mine.values():
        assert_valid(entry["schema"], entry["example"])
    only = services.create_endpoint(alice, ["invoice.paid"], url="https://example.com/two")
    answer = client.get(API + f"/endpoints/{only.pk}/event-types/").json()
    assert [t["type"] for t in answer] == ["invoice.paid"]
    assert answer[0]["schema"] == event_schema("invoice.paid")  # not restricted
    other = APIClient()
    other.force_authenticate(bob)
    assert other.get(API + f"/endpoints/{endpoint.pk}/event-types/").status_code == 404


# --- settings and checks ------------------------------------------------------------------


def check_ids(**webhooks_settings: Any) -> list[str]:
    with override_webhooks(**webhooks_settings):
        return [m.id for m in check_settings() + check_catalog()
                if m.id != "webhooks.W001"]  # the test settings' ALLOWED_NETWORKS


def test_declared_schemas_are_checked() -> None:
    assert check_ids(**RICH) == []
    assert check_ids(EVENTS={"invoice.paid": "Plain descriptions still work."}) == []
    assert check_ids(EVENTS={"invoice.paid": {"description": "No schema."}}) == []
    assert check_ids(EVENTS={"invoice.paid": {"description": "x",
                                              "schema": {"type": "objekt"}}}) == [
        "webhooks.E012"]
    assert check_ids(EVENTS={"invoice.paid": {"description": "x", "schema": {
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}}}) == [
        "webhooks.E012"]
    assert check_ids(EVENTS={"invoice.paid": {"description": "x", "schema": REFUND_SCHEMA}},
                     EVENT_EXAMPLES={"invoice.paid": {"refund": "r"}}) == ["webhooks.W010"]
    # The form of an entry is the settings check's: a description is needed, a schema is a dict.
    for entry in ({"schema": {}}, {"description": "x", "schema": "object"},
                  {"description": "x", "schemas": {}}):
        assert check_ids(EVENTS={"invoice.paid": entry}) == ["webhooks.E003"]


def test_a_custom_event_with_a_schema_is_sent_like_any_other() -> None:
    with override_webhooks(EVENTS={"invoice.paid": {"description": "Paid.",
                                                    "schema": REFUND_SCHEMA}}):
        assert get_catalog().types["invoice.paid"].description == "Paid."
        event = webhooks.send_event("invoice.paid", {"refund": "re_1", "amount": 5})
        assert_valid(event_schema("invoice.paid"), json.loads(event.payload))


# --- OpenAPI 3.1 webhooks -----------------------------------------------------------------

HOOK = "webhooks.api.schema.event_webhooks"
OPENAPI_31 = {"OAS_VERSION": "3.1.0",
              "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", HOOK]}


def openapi(settings: dict[str, Any]) -> dict[str, Any]:
    GENERATOR_STATS.reset()
    with patched_settings(settings):
        document: dict[str, Any] = SchemaGenerator(patterns=api).get_schema(request=None,
                                                                            public=True)
    return json.loads(json.dumps(document))  # lazy strings to plain ones, like the renderer


@override_webhooks(**RICH)
def test_the_openapi_document_lists_every_type_as_a_webhook_and_is_valid_3_1() -> None:
    document = openapi(OPENAPI_31)
    assert not GENERATOR_STATS, "drf-spectacular warned"
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)  # openapi-spec-validator: OpenAPI 3.1, its schemas 2020-12
    validate_schema(document)  # drf-spectacular's own check against the 3.1 meta-schema
    assert set(document["webhooks"]) == set(get_catalog().types)
    components = document["components"]["schemas"]
    for name in get_catalog().types:
        operation = document["webhooks"][name]["post"]
        assert [p["name"] for p in operation["parameters"]] == [
            "webhook-id", "webhook-timestamp", "webhook-signature"]
        assert all(p["in"] == "header" and p["required"] for p in operation["parameters"])
        body = operation["requestBody"]["content"]["application/json"]
        component = body["schema"]["$ref"].rsplit("/", 1)[1]
        expected = event_schema(name)
        del expected["$schema"]
        assert components[component] == expected
        assert_valid(expected, body["example"])
        assert set(operation["responses"]) == {"2XX", "410", "429", "default"}
    assert document["webhooks"]["line_item.created"]["post"]["requestBody"]["content"][
        "application/json"]["schema"] == {"$ref": "#/components/schemas/LineItemCreatedEvent"}
    # The API's own paths are unchanged.
    assert "/api/webhooks/endpoints/" in document["paths"]


def test_an_openapi_3_0_document_is_left_alone_with_a_warning() -> None:
    document = openapi({"POSTPROCESSING_HOOKS": [HOOK]})
    assert "webhooks" not in document
    assert any("3.1.0" in message for message in GENERATOR_STATS._warn_cache)
    GENERATOR_STATS.reset()


# --- the demo -----------------------------------------------------------------------------


def test_the_demo_catalog_its_real_payloads_and_its_openapi_document(tmp_path: Path) -> None:
    """The example project's settings, in a process of their own (tests/demo_catalog.py):
    every type's schema is valid, its example and the payloads of real saves match it, and
    its OpenAPI 3.1 document (with the webhooks) is valid."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(DJANGO_SETTINGS_MODULE="example_project.settings",
               DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
               WEBHOOKS_ENCRYPTION_KEYS="uJz1c9m2iB8m1Vb3y1bW7sY4bm9JZ0p7dS8k2oWvQxQ=")
    result = subprocess.run([sys.executable, "-m", "tests.demo_catalog"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert set(report["types"]) == {"invoice.paid", "order.created", "order.updated",
                                    "order.deleted", "order.shipped", "product.created",
                                    "product.updated", "webhook.test"}
    for name, entry in report["types"].items():
        assert entry["example_errors"] == [], name
        assert entry["payloads"] >= 1 and entry["payload_errors"] == [], name
        assert entry["schema_bytes"] > 0
    assert report["openapi"] == {"version": "3.1.0", "valid": True,
                                 "webhooks": sorted(report["types"])}


@override_settings(USE_TZ=False)
def test_naive_datetimes_are_not_called_date_time() -> None:
    schema = serializer_schema(Everything())
    assert schema["properties"]["at"] == {"type": "string"}
