"""The OpenAPI schema of the REST API: complete, valid, and true (schemathesis finds no server
error and no response that contradicts it)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import override_settings
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import webhooks
from tests.factories import make_owner, organizations_own
from tests.helpers import make_endpoint
from tests.urls import api
from webhooks import ids
from webhooks.models import Delivery, Endpoint

pytestmark = pytest.mark.django_db

AUTH = {"Authorization": "Basic " + base64.b64encode(b"fuzzer:pw").decode()}

ROUTES = {
    "/api/webhooks/endpoints/": {"get", "post"},
    "/api/webhooks/endpoints/{id}/": {"get", "put", "patch", "delete"},
    "/api/webhooks/endpoints/{id}/secret/": {"get"},
    "/api/webhooks/endpoints/{id}/rotate-secret/": {"post"},
    "/api/webhooks/endpoints/{id}/test/": {"post"},
    "/api/webhooks/endpoints/{id}/replay/": {"post"},
    "/api/webhooks/endpoints/{id}/event-types/": {"get"},
    "/api/webhooks/deliveries/": {"get"},
    "/api/webhooks/deliveries/{id}/": {"get"},
    "/api/webhooks/deliveries/{id}/attempts/": {"get"},
    "/api/webhooks/deliveries/{id}/retry/": {"post"},
    "/api/webhooks/event-types/": {"get"},
    "/api/webhooks/zapier/hooks/": {"post"},
    "/api/webhooks/zapier/hooks/{id}/": {"delete"},
    "/api/webhooks/zapier/hooks/unsubscribe/": {"post"},
    "/api/webhooks/zapier/hooks/sample/": {"get"},
}


def generate() -> dict[str, Any]:
    GENERATOR_STATS.reset()
    schema: dict[str, Any] = SchemaGenerator(patterns=api).get_schema(request=None,
                                                                      public=True)
    return schema


def test_the_schema_is_valid_openapi_3_with_every_route_and_no_warning() -> None:
    schema = generate()
    assert not GENERATOR_STATS, "drf-spectacular warned: the schema is guessed somewhere"
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    assert {path: set(ops) - {"parameters"} for path, ops in schema["paths"].items()} == ROUTES


def test_the_schema_is_exact_where_it_matters() -> None:
    schema = generate()
    components = schema["components"]["schemas"]
    endpoint = components["Endpoint"]
    assert list(endpoint["properties"])[:11] == ["id", "url", "description", "events",
                                                 "is_active", "headers", "rate_limit",
                                                 "max_concurrency", "paused_until",
                                                 "pause_reason", "created_at"]
    assert "owner" not in endpoint["properties"]
    assert set(endpoint["required"]) >= {"url", "events"}
    assert endpoint["properties"]["headers"]["additionalProperties"] == {"type": "string"}
    events = components[endpoint["properties"]["events"]["items"]["$ref"].split("/")[-1]]
    assert "invoice.paid" in events["enum"] and "*" in events["enum"]
    # v1 endpoints answer their whsec_ secret, v1a endpoints their whpk_ public key: one of
    # the two is present, so neither is required.
    secret = components["Secret"]
    assert {name: prop["type"] for name, prop in secret["properties"].items()} == {
        "secret": "string", "public_key": "string"}
    assert "whsec_" in secret["properties"]["secret"]["description"]
    assert "whpk_" in secret["properties"]["public_key"]["description"]
    assert not secret.get("required")
    rotated = components["RotatedSecret"]
    assert set(rotated["properties"]) == {"secret", "public_key", "previous_secret_expires_at"}
    assert rotated["required"] == ["previous_secret_expires_at"]
    scheme = endpoint["properties"]["signature_scheme"]
    assert components[scheme["allOf"][0]["$ref"].split("/")[-1]]["enum"] == ["v1", "v1a"]
    assert "signature_scheme" not in endpoint.get("required", [])
    body_format = endpoint["properties"]["body_format"]
    assert components[body_format["allOf"][0]["$ref"].split("/")[-1]]["enum"] == [
        "standard", "cloudevents"]
    assert "body_format" not in endpoint.get("required", [])
    # One id per object: the public id, a string of a known shape (no longer a uuid).
    delivery = components["Delivery"]["properties"]
    attempt = components["DeliveryAttempt"]["properties"]
    for prop, prefix in ((endpoint["properties"]["id"], "ep"), (delivery["id"], "dlv"),
                         (delivery["endpoint"], "ep"), (attempt["id"], "att"),
                         (components["ZapierSubscription"]["properties"]["id"], "ep")):
        assert prop["type"] == "string" and "format" not in prop
        assert prop["pattern"] == ids.pattern(prefix)
        assert prop.get("readOnly") is True
    deliveries = schema["paths"]["/api/webhooks/deliveries/"]["get"]
    assert {p["name"] for p in deliveries["parameters"]} == {
        "endpoint", "status", "event_type", "event", "created_after", "created_before",
        "cursor", "page_size"}
    by_name = {p["name"]: p for p in deliveries["parameters"]}
    assert by_name["endpoint"]["schema"]["type"] == "string"
    assert "format" not in by_name["endpoint"]["schema"]
    assert "ep_" in by_name["endpoint"]["description"]
    replay = schema["paths"]["/api/webhooks/endpoints/{id}/replay/"]["post"]
    assert set(replay["responses"]) == {"202", "400", "401", "403", "404", "406", "409",
                                        "429"}
    # Every operation says that a request acting for no owner is refused.
    for operations in schema["paths"].values():
        for method, operation in operations.items():
            if method != "parameters":
                assert "no owner" in operation["responses"]["403"]["description"]


def test_the_schema_is_served(client: Any) -> None:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert "/api/webhooks/endpoints/" in response.json()["paths"]


# --- schemathesis -----------------------------------------------------------------------------


@pytest.fixture
def api_schema(db: Any) -> Iterator[Any]:
    """The served schema, loaded by schemathesis, calling the app in-process (WSGI): an
    authenticated user (of an organization named like them, with organizations as owners)
    with an endpoint and a delivery of their owner's, throttles loosened."""
    owner = make_owner("fuzzer")
    endpoint = make_endpoint("https://example.com/hook", "invoice.paid", owner=owner)
    event = webhooks.send_event("invoice.paid", {"n": 1}, owner=owner)
    Delivery.objects.create(event=event, endpoint=endpoint, status="failed")
    cache.clear()
    rates = {"webhooks": "100000/minute", "webhooks_send": "100000/minute"}
    # Like Django's test client: the test's connection (and transaction) outlives requests.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        with override_settings(REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": rates}):
            yield schemathesis.openapi.from_wsgi("/api/schema/?format=json",
                                                 get_wsgi_application())
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
        cache.clear()


CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]
OPERATIONS = sorted((method, path) for path, methods in ROUTES.items() for method in methods)


@pytest.mark.owners
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m.upper()} {p}"
                                                            for m, p in OPERATIONS])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
def test_the_api_keeps_its_schema(api_schema: Any, enqueued: list[Any], method: str,
                                  path: str, mode: GenerationMode) -> None:
    """Generated requests, valid and not, to every operation: never a server error, and
    every answer (status, content type, body) as the schema documents it."""
    operation = api_schema[path][method.upper()]
    statuses: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode), own_id=st.booleans())
    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    def run(case: Any, own_id: bool) -> None:
        if own_id and "id" in (case.path_parameters or {}):
            # Half the time, an object of the user's own, not only unknown ids (404s).
            model = Delivery if path.startswith("/api/webhooks/deliveries/") else Endpoint
            owner = "owner__name" if organizations_own() else "owner__username"
            mine = model.objects.filter(**{f"endpoint__{owner}" if model is Delivery
                                           else owner: "fuzzer"}).first()
            if mine is not None:
                case.path_parameters["id"] = mine.public_id
        response = case.call_and_validate(headers=AUTH, checks=CHECKS)
        statuses.append(response.status_code)

    run()
    assert statuses and all(code < 500 for code in statuses)
