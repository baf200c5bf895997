"""The REST API: owner isolation on every route, validation, actions, Zapier, throttles,
query counts."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient
from standardwebhooks import Webhook

import webhooks
from tests.factories import make_delivery, make_endpoint, make_user
from tests.helpers import override_webhooks
from tests.receiver import Receiver, Reply
from tests.testapp.serializers import ProductSerializer
from webhooks.checks import check_settings
from webhooks.delivery.fanout import fan_out
from webhooks.delivery.loop import drain
from webhooks.models import Delivery, Endpoint, Event, Subscription
from webhooks.signals import endpoint_disabled

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_throttles")]

API = "/api/webhooks"


@pytest.fixture
def alice() -> Any:
    return make_user("alice")


@pytest.fixture
def bob() -> Any:
    return make_user("bob")


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def new_endpoint_body(**overrides: Any) -> dict[str, Any]:
    return {"url": "https://example.com/hook", "events": ["invoice.paid"], **overrides}


def test_responses_that_carry_custom_header_values_are_never_stored(alice: Any) -> None:
    """Header values are credentials like the secret: ``no-store`` on every endpoint response
    that carries them (issue 14, finding 3)."""
    client = client_for(alice)
    created = client.post(API + "/endpoints/", new_endpoint_body(
        headers={"X-Api-Key": "tok-7f3a9c1e"}), format="json")
    assert created.status_code == 201
    detail = API + f"/endpoints/{created.json()['id']}/"
    responses = {
        "create": created,
        "list": client.get(API + "/endpoints/"),
        "retrieve": client.get(detail),
        "partial_update": client.patch(detail, {"description": "x"}, format="json"),
        "update": client.put(detail, new_endpoint_body(headers={"X-Api-Key": "tok-2"}),
                             format="json"),
    }
    for action, response in responses.items():
        assert response.status_code in (200, 201), action
        assert "tok-" in response.content.decode(), action
        assert "no-store" in response.get("Cache-Control", ""), action


# --- owner isolation: every route and method, two users ------------------------------------


def _bobs_objects(bob: Any) -> tuple[Endpoint, Delivery]:
    endpoint = make_endpoint("https://example.com/bob", "invoice.paid", owner=bob)
    return endpoint, make_delivery(endpoint)


ROUTES_ON_OBJECTS = [
    ("get", "/endpoints/{endpoint}/", None),
    ("put", "/endpoints/{endpoint}/", new_endpoint_body()),
    ("patch", "/endpoints/{endpoint}/", {"description": "mine now"}),
    ("delete", "/endpoints/{endpoint}/", None),
    ("get", "/endpoints/{endpoint}/secret/", None),
    ("get", "/endpoints/{endpoint}/event-types/", None),
    ("post", "/endpoints/{endpoint}/rotate-secret/", {}),
    ("post", "/endpoints/{endpoint}/test/", None),
    ("post", "/endpoints/{endpoint}/replay/", {"since": "{since}"}),
    ("get", "/deliveries/{delivery}/", None),
    ("post", "/deliveries/{delivery}/retry/", None),
    ("delete", "/zapier/hooks/{endpoint}/", None),
    ("post", "/zapier/hooks/unsubscribe/", {"id": "{endpoint}"}),
    ("post", "/zapier/hooks/unsubscribe/", {"target_url": "https://example.com/bob"}),
]


@pytest.mark.parametrize("form", ["public", "uuid"])
@pytest.mark.parametrize(("method", "path", "body"), ROUTES_ON_OBJECTS,
                         ids=[f"{m} {p} {b}" for m, p, b in ROUTES_ON_OBJECTS])
def test_another_users_object_is_a_404(alice: Any, bob: Any, method: str, path: str,
                                       body: Any, form: str) -> None:
    endpoint, delivery = _bobs_objects(bob)
    make_endpoint("https://example.com/alice", owner=alice)  # alice has objects of her own
    values = {"endpoint": endpoint.public_id if form == "public" else endpoint.pk,
              "delivery": delivery.public_id if form == "public" else delivery.pk,
              "since": (timezone.now() - timedelta(hours=1)).isoformat()}
    if isinstance(body, dict):
        body = {k: v.format(**values) if isinstance(v, str) else v for k, v in body.items()}
    secret, rotated_before = endpoint.secret, endpoint.previous_secret
    before = (Delivery.objects.get(pk=delivery.pk).next_attempt_at,
              Delivery.objects.get(pk=delivery.pk).status)

    response = getattr(client_for(alice), method)(API + path.format(**values), body,
                                                  format="json")

    assert response.status_code == 404, response.content
    assert "secret" not in response.json()
    endpoint.refresh_from_db()  # still there, unchanged
    assert (endpoint.url, endpoint.description, endpoint.secret) == (
        "https://example.com/bob", "", secret)
    assert endpoint.previous_secret == rotated_before
    delivery.refresh_from_db()
    assert (delivery.next_attempt_at, delivery.status) == before
    assert Delivery.objects.count() == 1  # no test delivery, no replayed event


def test_the_same_answer_for_another_users_id_and_an_unknown_id(alice: Any, bob: Any) -> None:
    endpoint, delivery = _bobs_objects(bob)
    client = client_for(alice)
    for path in ("/endpoints/{}/", "/endpoints/{}/secret/", "/deliveries/{}/"):
        theirs = client.get(API + path.format(endpoint.pk if "endp" in path else delivery.pk))
        unknown = client.get(API + path.format(uuid.uuid4()))
        assert (theirs.status_code, theirs.json()) == (unknown.status_code, unknown.json())


def test_lists_show_only_the_users_own_objects(alice: Any, bob: Any) -> None:
    _bobs_objects(bob)
    mine = make_endpoint("https://example.com/alice", owner=alice)
    my_delivery = make_delivery(mine)
    make_endpoint("https://example.com/site-wide")  # the site's: nobody's through the API
    client = client_for(alice)

    endpoints = client.get(API + "/endpoints/").json()["results"]
    assert [e["id"] for e in endpoints] == [mine.public_id]
    deliveries = client.get(API + "/deliveries/").json()["results"]
    assert [d["id"] for d in deliveries] == [my_delivery.public_id]


@pytest.mark.parametrize("param", ["endpoint", "event"])
def test_filtering_by_another_users_object_matches_nothing(alice: Any, bob: Any,
                                                           param: str) -> None:
    _endpoint, delivery = _bobs_objects(bob)
    make_delivery(make_endpoint("https://example.com/alice", owner=alice))
    value = delivery.endpoint_id if param == "endpoint" else delivery.event.public_id
    unknown = uuid.uuid4() if param == "endpoint" else "evt_" + "0" * 26
    client = client_for(alice)
    theirs = client.get(API + "/deliveries/", {param: value})
    nothing = client.get(API + "/deliveries/", {param: unknown})
    assert theirs.status_code == nothing.status_code == 200
    assert theirs.json() == nothing.json() == {"next": None, "previous": None, "results": []}


def test_zapier_sample_shows_only_the_users_own_events(alice: Any, bob: Any) -> None:
    webhooks.send_event("invoice.paid", {"who": "bob"}, owner=bob)
    mine = webhooks.send_event("invoice.paid", {"who": "alice"}, owner=alice)
    samples = client_for(alice).get(API + "/zapier/hooks/sample/", {"event": "invoice.paid"})
    assert [s["data"] for s in samples.json()] == [{"who": "alice"}]
    assert samples.json()[0]["id"] == mine.public_id


def test_the_owner_is_never_writable(alice: Any, bob: Any) -> None:
    client = client_for(alice)
    created = client.post(API + "/endpoints/", new_endpoint_body(owner=bob.pk), format="json")
    assert created.status_code == 201
    endpoint = Endpoint.objects.get(pk=Endpoint.parse_id(created.json()["id"]))
    assert endpoint.owner == alice
    assert "owner" not in created.json()
    client.patch(API + f"/endpoints/{endpoint.pk}/", {"owner": bob.pk}, format="json")
    endpoint.refresh_from_db()
    assert endpoint.owner == alice


def test_staff_get_no_special_powers(bob: Any) -> None:
    admin = make_user("root")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    endpoint, delivery = _bobs_objects(bob)
    site_wide = make_endpoint("https://example.com/site-wide")
    client = client_for(admin)
    assert client.get(API + "/endpoints/").json()["results"] == []
    assert client.get(API + "/deliveries/").json()["results"] == []
    for path in (f"/endpoints/{endpoint.pk}/", f"/endpoints/{site_wide.pk}/secret/",
                 f"/deliveries/{delivery.pk}/"):
        assert client.get(API + path).status_code == 404


def test_anonymous_requests_are_refused_on_every_route() -> None:
    client = APIClient()
    some_id = uuid.uuid4()
    for method, path, _body in [*ROUTES_ON_OBJECTS, ("get", "/endpoints/", None),
                                ("post", "/endpoints/", None), ("get", "/deliveries/", None),
                                ("get", "/event-types/", None),
                                ("post", "/zapier/hooks/", None),
                                ("get", "/zapier/hooks/sample/", None)]:
        url = API + path.format(endpoint=some_id, delivery=some_id)
        assert getattr(client, method)(url).status_code in (401, 403), (method, path)


def test_permission_classes_come_from_settings(alice: Any) -> None:
    client = client_for(alice)
    with override_webhooks(API_PERMISSION_CLASSES=["rest_framework.permissions.IsAdminUser"]):
        assert client.get(API + "/endpoints/").status_code == 403
    # Even with no permission class at all, an anonymous user gets nothing.
    with override_webhooks(API_PERMISSION_CLASSES=[]):
        assert client.get(API + "/endpoints/").status_code == 200
        assert APIClient().get(API + "/endpoints/").status_code in (401, 403)


def test_authentication_is_the_sites(alice: Any) -> None:
    """The test settings keep DRF's default authentication: session and basic both work."""
    basic = APIClient()
    basic.credentials(HTTP_AUTHORIZATION="Basic YWxpY2U6cHc=")  # alice:pw
    assert basic.get(API + "/endpoints/").status_code == 200
    session = APIClient(enforce_csrf_checks=True)
    assert session.login(username="alice", password="pw")
    assert session.get(API + "/endpoints/").status_code == 200
    # Session authentication keeps its CSRF protection for writes.
    assert session.post(API + "/endpoints/", new_endpoint_body(),
                        format="json").status_code == 403


# --- endpoints --------------------------------------------------------------------------------


def test_create_read_update_delete(alice: Any) -> None:
    client = client_for(alice)
    created = client.post(API + "/endpoints/", {
        "url": "https://example.com/hook", "description": "orders",
        "events": ["order.created", "invoice.paid", "order.created"],
        "headers": {"Authorization": "Bearer t0k3n"}, "rate_limit": 5,
    }, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert set(body) == {"id", "url", "description", "events", "payload_fields", "is_active",
                         "headers", "rate_limit", "max_concurrency", "paused_until",
                         "pause_reason", "created_at", "disabled_reason", "disabled_by",
                         "disabled_at", "last_success_at", "last_failure_at",
                         "signature_scheme", "body_format"}
    assert body["payload_fields"] == {}
    assert re.fullmatch(r"ep_[0-9A-Z]{26}", body["id"])
    assert Endpoint.parse_id(body["id"]).version == 7  # not sequential, not guessable
    assert body["events"] == ["invoice.paid", "order.created"]
    assert body["headers"] == {"Authorization": "Bearer t0k3n"}
    assert (body["rate_limit"], body["is_active"], body["description"]) == (5, True, "orders")
    url = API + f"/endpoints/{body['id']}/"
    assert client.get(url).json() == body

    changed = client.patch(url, {"events": ["*"], "rate_limit": None}, format="json")
    assert changed.status_code == 200
    assert (changed.json()["events"], changed.json()["rate_limit"]) == (["*"], None)
    assert list(Subscription.objects.values_list("event_type", flat=True)) == ["*"]

    replaced = client.put(url, {"url": "https://hooks.example.com/new", "events": ["ping.sent"]},
                          format="json")
    assert replaced.status_code == 200
    assert replaced.json()["headers"] == {} and replaced.json()["description"] == ""

    assert client.delete(url).status_code == 204
    assert not Endpoint.objects.exists() and not Subscription.objects.exists()


def test_switching_an_endpoint_off_and_on(alice: Any) -> None:
    endpoint = make_endpoint("https://example.com/h", owner=alice, is_active=False,
                             disabled_reason="The endpoint answered 410 Gone.",
                             disabled_at=timezone.now(), consecutive_failures=12,
                             failing_since=timezone.now())
    url = API + f"/endpoints/{endpoint.pk}/"
    client = client_for(alice)
    assert client.get(url).json()["disabled_reason"] == "The endpoint answered 410 Gone."
    on = client.patch(url, {"is_active": True}, format="json").json()
    assert (on["is_active"], on["disabled_reason"], on["disabled_at"]) == (True, "", None)
    endpoint.refresh_from_db()
    assert (endpoint.consecutive_failures, endpoint.failing_since) == (0, None)
    off = client.patch(url, {"is_active": False}, format="json").json()
    assert (off["is_active"], off["disabled_reason"]) == (False, "Disabled by its owner.")
    assert off["disabled_at"] is not None


def test_the_owner_cannot_lift_a_staff_disable(alice: Any, admin_client: Any,
                                               receiver: Receiver) -> None:
    """Staff switch an endpoint off for good: its owner cannot switch it back on, staff can.
    The owner's own disables and the automatic ones (410, sustained failure) the owner may
    lift: that is how an endpoint recovers (issue 14, finding 7)."""
    endpoint = make_endpoint(receiver.url("/h"), "invoice.paid", owner=alice)
    url = API + f"/endpoints/{endpoint.pk}/"
    client = client_for(alice)
    admin_client.post("/admin/webhooks/endpoint/", {
        "action": "disable", "_selected_action": [str(endpoint.pk)]})
    refused = client.patch(url, {"is_active": True}, format="json")
    assert refused.status_code == 400
    assert "staff" in " ".join(refused.json()["is_active"])
    shown = client.get(url).json()
    assert (shown["is_active"], shown["disabled_by"]) == (False, "staff")
    assert client.put(url, {"url": endpoint.url, "events": ["invoice.paid"]},
                      format="json").status_code == 400  # is_active defaults to true
    endpoint.refresh_from_db()
    assert (endpoint.is_active, endpoint.disabled_by) == (False, "staff")
    # Everything else stays the owner's to change.
    changed = client.patch(url, {"description": "paused by support"}, format="json")
    assert changed.status_code == 200 and changed.json()["is_active"] is False
    # Staff lift it (the admin's action), and the owner may switch it off and on again.
    admin_client.post("/admin/webhooks/endpoint/", {
        "action": "enable", "_selected_action": [str(endpoint.pk)]})
    assert client.get(url).json()["disabled_by"] is None
    off = client.patch(url, {"is_active": False}, format="json").json()
    assert (off["is_active"], off["disabled_by"]) == (False, "owner")
    assert client.patch(url, {"is_active": True}, format="json").json()["is_active"] is True
    # An automatic disable (the receiver answered 410) is the owner's to lift.
    receiver.script("/h", Reply(410, b"gone"))
    webhooks.send_event("invoice.paid", {"n": 1}, owner=alice)
    fan_out()
    drain()
    assert client.get(url).json()["disabled_by"] == "system"
    on = client.patch(url, {"is_active": True}, format="json")
    assert on.status_code == 200 and on.json()["is_active"] is True


def test_the_migration_says_who_disabled_the_endpoints_already_off(alice: Any) -> None:
    """Endpoints off before ``disabled_by`` existed: automatic and owner's reasons are
    recognised, anything else is staff's (the owner must ask them)."""
    import importlib
    from types import SimpleNamespace

    from django.apps import apps

    migration = importlib.import_module("webhooks.migrations.0011_endpoint_disabled_by")
    reasons = {"The endpoint answered 410 Gone.": "system",
               "Every delivery failed for 5 day(s) (10+ attempts in a row).": "system",
               "Disabled by its owner.": "owner", "": "owner",
               "Disabled by staff.": "staff", "Désactivé par l'équipe.": "staff"}
    for n, reason in enumerate(reasons):
        make_endpoint(f"https://example.com/{n}", owner=alice, is_active=False,
                      disabled_reason=reason)
    active = make_endpoint("https://example.com/on", owner=alice)
    migration.classify_disabled(apps, SimpleNamespace(connection=connection))
    assert dict(Endpoint.objects.filter(is_active=False).values_list(
        "disabled_reason", "disabled_by")) == reasons
    active.refresh_from_db()
    assert active.disabled_by == ""


def test_an_update_leaves_the_health_fields_to_the_engine(alice: Any) -> None:
    endpoint = make_endpoint("https://example.com/h", owner=alice)
    # The engine records a failure between the moment the view reads the row and its save.
    stale = Endpoint.objects.get(pk=endpoint.pk)
    Endpoint.objects.filter(pk=endpoint.pk).update(consecutive_failures=3,
                                                   last_failure_at=timezone.now())
    from webhooks.api.serializers import EndpointSerializer

    serializer = EndpointSerializer(stale, data={"description": "new"}, partial=True)
    assert serializer.is_valid()
    serializer.save()
    endpoint.refresh_from_db()
    assert (endpoint.description, endpoint.consecutive_failures) == ("new", 3)
    assert endpoint.last_failure_at is not None


def test_secret_and_rotation(alice: Any) -> None:
    endpoint = make_endpoint("https://example.com/h", owner=alice)
    client = client_for(alice)
    response = client.get(API + f"/endpoints/{endpoint.pk}/secret/")
    assert response.json() == {"secret": endpoint.secret}
    assert response.json()["secret"].startswith("whsec_")
    assert response["Cache-Control"] == "no-store"

    rotated = client.post(API + f"/endpoints/{endpoint.pk}/rotate-secret/",
                          {"grace_period": 3600}, format="json")
    assert rotated.status_code == 200
    old = endpoint.secret
    endpoint.refresh_from_db()
    assert rotated.json()["secret"] == endpoint.secret != old
    assert endpoint.signing_secrets() == [endpoint.secret, old]
    expires = endpoint.previous_secret_expires_at
    assert expires is not None
    assert abs((expires - timezone.now()).total_seconds() - 3600) < 60

    default = client.post(API + f"/endpoints/{endpoint.pk}/rotate-secret/")
    assert default.status_code == 200
    none = client.post(API + f"/endpoints/{endpoint.pk}/rotate-secret/", {"grace_period": 0},
                       format="json")
    assert none.json()["previous_secret_expires_at"] is None


def test_test_event_reaches_the_receiver_signed(alice: Any, receiver: Receiver,
                                                django_capture_on_commit_callbacks: Any) -> None:
    endpoint = make_endpoint(receiver.url(), "invoice.paid", owner=alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(alice).post(API + f"/endpoints/{endpoint.pk}/test/")
    assert response.status_code == 202
    assert response.json()["event"]["type"] == "webhook.test"
    (request,) = receiver.received()
    body = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert body["type"] == "webhook.test"
    assert body["data"]["endpoint_id"] == endpoint.public_id
    delivery = client_for(alice).get(API + f"/deliveries/{response.json()['id']}/").json()
    assert delivery["status"] == "succeeded"
    assert [a["status_code"] for a in delivery["attempt_log"]] == [200]


def test_test_event_to_a_disabled_endpoint_is_a_409(alice: Any) -> None:
    endpoint = make_endpoint("https://example.com/h", owner=alice, is_active=False)
    response = client_for(alice).post(API + f"/endpoints/{endpoint.pk}/test/")
    assert response.status_code == 409
    assert not Delivery.objects.exists()


def test_replay(alice: Any, enqueued: list[Any]) -> None:
    endpoint = make_endpoint("https://example.com/h", "invoice.paid", owner=alice)
    failed = make_delivery(endpoint, attempts=3)
    missed = webhooks.send_event("invoice.paid", {"n": 2}, owner=alice)
    Event.objects.filter(pk=missed.pk).update(dispatched_at=timezone.now())
    since = (timezone.now() - timedelta(hours=1)).isoformat()
    response = client_for(alice).post(API + f"/endpoints/{endpoint.pk}/replay/",
                                      {"since": since}, format="json")
    assert response.status_code == 202
    assert response.json() == {"retried": 1, "added": 1}
    failed.refresh_from_db()
    assert failed.status == "pending"
    assert Delivery.objects.filter(event=missed, endpoint=endpoint).exists()


def test_retry(alice: Any) -> None:
    endpoint = make_endpoint("https://example.com/h", owner=alice)
    delivery = make_delivery(endpoint, attempts=8)
    client = client_for(alice)
    response = client.post(API + f"/deliveries/{delivery.pk}/retry/")
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.next_attempt_at is not None

    Delivery.objects.filter(pk=delivery.pk).update(claim_token=uuid.uuid4())
    assert client.post(API + f"/deliveries/{delivery.pk}/retry/").status_code == 409
    Delivery.objects.filter(pk=delivery.pk).update(claim_token=None, status="failed")
    Endpoint.objects.filter(pk=endpoint.pk).update(is_active=False)
    response = client.post(API + f"/deliveries/{delivery.pk}/retry/")
    assert response.status_code == 409
    assert response.json()["detail"].startswith("The endpoint is disabled")


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"url": "ftp://example.com/x"}, "url", "must start with http"),
    ({"url": "not a url"}, "url", "valid URL"),
    ({"url": "https://10.0.0.5/x"}, "url", "private"),
    ({"url": "http://169.254.169.254/latest"}, "url", "private"),
    ({"url": "https://user:pw@example.com/x"}, "url", "user name or password"),
    ({"url": "https://example.com/" + "a" * 2100}, "url", "no more than 2048"),
    ({"events": ["nope.never"]}, "events", "not an event type of this site"),
    ({"events": ["webhook.test"]}, "events", "not an event type of this site"),
    ({"events": []}, "events", "not be empty"),
    ({"events": "invoice.paid"}, "events", "list"),
    ({"headers": {"webhook-signature": "x"}}, "headers", "cannot be replaced"),
    ({"headers": {"X-A": "a\r\nX-B: b"}}, "headers", "control character"),
    ({"headers": {"bad name": "x"}}, "headers", "not a valid header name"),
    ({"headers": ["X-A"]}, "headers", "must be an object"),
    ({"headers": {"X-A": 1}}, "headers", "must be a string"),
    ({"rate_limit": 0}, "rate_limit", "greater than or equal to 1"),
    ({"description": "x" * 300}, "description", "no more than 255"),
])
def test_invalid_endpoints_are_400_with_field_messages(alice: Any, body: dict[str, Any],
                                                       field: str, message: str) -> None:
    response = client_for(alice).post(API + "/endpoints/", new_endpoint_body(**body),
                                      format="json")
    assert response.status_code == 400
    assert set(response.json()) == {field}
    assert message in str(response.json()[field])
    assert not Endpoint.objects.exists()


@override_webhooks(REQUIRE_HTTPS=True)
def test_https_can_be_required(alice: Any) -> None:
    response = client_for(alice).post(API + "/endpoints/",
                                      new_endpoint_body(url="http://example.com/x"),
                                      format="json")
    assert response.status_code == 400
    assert "https://" in response.json()["url"][0]


@override_webhooks(MAX_ENDPOINTS_PER_OWNER=2)
def test_too_many_endpoints(alice: Any, bob: Any) -> None:
    client = client_for(alice)
    for _ in range(2):
        assert client.post(API + "/endpoints/", new_endpoint_body(),
                           format="json").status_code == 201
    response = client.post(API + "/endpoints/", new_endpoint_body(), format="json")
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": [
        "This owner already has 2 endpoints, the most allowed."]}
    zapier = client.post(API + "/zapier/hooks/", {"target_url": "https://example.com/z",
                                                 "event": "invoice.paid"}, format="json")
    assert zapier.status_code == 400
    assert client_for(bob).post(API + "/endpoints/", new_endpoint_body(),
                                format="json").status_code == 201
    assert Endpoint.objects.filter(owner=alice).count() == 2


def test_replay_window(alice: Any) -> None:
    endpoint = make_endpoint("https://example.com/h", owner=alice)
    client = client_for(alice)
    url = API + f"/endpoints/{endpoint.pk}/replay/"
    too_old = (timezone.now() - timedelta(days=15)).isoformat()
    response = client.post(url, {"since": too_old}, format="json")
    assert response.status_code == 400
    assert "hours at most" in response.json()["since"][0]
    assert client.post(url, {}, format="json").json() == {"since": ["This field is required."]}
    assert client.post(url, {"since": "yesterday"}, format="json").status_code == 400
    Endpoint.objects.filter(pk=endpoint.pk).update(is_active=False)
    assert client.post(url, {"since": timezone.now().isoformat()},
                       format="json").status_code == 409


def test_rotate_grace_is_bounded(alice: Any) -> None:
    endpoint = make_endpoint("https://example.com/h", owner=alice)
    url = API + f"/endpoints/{endpoint.pk}/rotate-secret/"
    for grace in (-1, 8 * 24 * 3600, "soon"):
        response = client_for(alice).post(url, {"grace_period": grace}, format="json")
        assert response.status_code == 400
        assert set(response.json()) == {"grace_period"}


@pytest.mark.parametrize(("params", "field"), [
    ({"endpoint": "42"}, "endpoint"),
    ({"status": "lost"}, "status"),
    ({"created_after": "last week"}, "created_after"),
    ({"event": "dlv_01"}, "event"),
])
def test_invalid_filters_are_400(alice: Any, params: dict[str, str], field: str) -> None:
    response = client_for(alice).get(API + "/deliveries/", params)
    assert response.status_code == 400
    assert set(response.json()) == {field}


# --- the delivery log -------------------------------------------------------------------------


def test_delivery_filters(alice: Any) -> None:
    one = make_endpoint("https://example.com/1", owner=alice)
    two = make_endpoint("https://example.com/2", owner=alice)
    paid = make_delivery(one, "invoice.paid", status="failed")
    ping = make_delivery(two, "ping.sent", status="succeeded")
    old = make_delivery(two, "invoice.paid", status="pending")
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    client = client_for(alice)

    def ids(**params: Any) -> set[str]:
        response = client.get(API + "/deliveries/", params)
        assert response.status_code == 200, response.content
        return {d["id"] for d in response.json()["results"]}

    paid_id, ping_id, old_id = paid.public_id, ping.public_id, old.public_id
    assert ids() == {paid_id, ping_id, old_id}
    assert ids(endpoint=two.public_id) == {ping_id, old_id}
    assert ids(endpoint=two.pk) == {ping_id, old_id}  # the bare UUID is accepted too
    assert ids(status="failed") == {paid_id}
    assert ids(event_type="invoice.paid") == {paid_id, old_id}
    assert ids(event=ping.event.public_id) == {ping_id}
    assert ids(event=ping.event.pk) == {ping_id}
    day_ago = (timezone.now() - timedelta(days=1)).isoformat()
    assert ids(created_after=day_ago) == {paid_id, ping_id}
    assert ids(created_before=day_ago) == {old_id}
    assert ids(endpoint=two.public_id, event_type="invoice.paid", status="pending") == {old_id}


def test_delivery_detail_has_the_body_and_the_attempts(alice: Any) -> None:
    endpoint = make_endpoint("https://example.com/h", owner=alice)
    delivery = make_delivery(endpoint, data={"n": 1}, attempts=3, attempt_status=500,
                             response_body="boom")
    Delivery.objects.filter(pk=delivery.pk).update(attempts=3, last_status_code=500)
    body = client_for(alice).get(API + f"/deliveries/{delivery.pk}/").json()
    assert body["id"] == delivery.public_id and body["endpoint"] == endpoint.public_id
    assert body["event"]["id"] == delivery.event.public_id
    assert body["payload"]["data"] == {"n": 1}
    assert body["payload"]["id"] == delivery.event.public_id
    assert [a["number"] for a in body["attempt_log"]] == [1, 2, 3]
    assert body["attempt_log"][0]["response_body"] == "boom"
    assert body["attempt_log"][0]["succeeded"] is False


def test_delivery_detail_shows_the_latest_attempts_and_links_to_all(alice: Any) -> None:
    """However many attempts a delivery has, its detail shows the latest ten (oldest first)
    with their count, and ``attempts/`` pages through all of them, newest first."""
    from webhooks.api.serializers import ATTEMPT_LOG_LIMIT

    endpoint = make_endpoint("https://example.com/h", owner=alice)
    delivery = make_delivery(endpoint, attempts=25, attempt_status=500)
    client = client_for(alice)
    body = client.get(API + f"/deliveries/{delivery.pk}/").json()
    assert ATTEMPT_LOG_LIMIT == 10
    assert [a["number"] for a in body["attempt_log"]] == list(range(16, 26))
    assert body["attempt_log_count"] == 25
    assert body["attempts_url"] == (
        f"http://testserver{API}/deliveries/{delivery.public_id}/attempts/")
    numbers: list[int] = []
    url: str | None = body["attempts_url"] + "?page_size=10"
    while url:
        page = client.get(url).json()
        numbers += [a["number"] for a in page["results"]]
        url = page["next"]
    assert numbers == list(range(25, 0, -1))
    few = make_delivery(endpoint, attempts=2)
    body = client.get(API + f"/deliveries/{few.pk}/").json()
    assert [a["number"] for a in body["attempt_log"]] == [1, 2]
    assert body["attempt_log_count"] == 2


# --- one id per object: the public id (ep_…, dlv_…, att_…, evt_…), the bare UUID accepted ----


def test_every_object_is_answered_by_its_public_id_and_reached_by_either_form(
        alice: Any) -> None:
    endpoint = make_endpoint("https://example.com/h", "invoice.paid", owner=alice)
    delivery = make_delivery(endpoint, attempts=1, status="failed")
    attempt = delivery.attempt_log.get()
    client = client_for(alice)
    for key in (endpoint.public_id, str(endpoint.pk), str(endpoint.pk).replace("-", ""),
                endpoint.public_id.lower()):
        response = client.get(API + f"/endpoints/{key}/")
        assert response.status_code == 200, key
        assert response.json()["id"] == endpoint.public_id
    for key in (delivery.public_id, str(delivery.pk)):
        body = client.get(API + f"/deliveries/{key}/").json()
        assert (body["id"], body["endpoint"], body["event"]["id"]) == (
            delivery.public_id, endpoint.public_id, delivery.event.public_id)
        assert [a["id"] for a in body["attempt_log"]] == [attempt.public_id]
        attempts = client.get(API + f"/deliveries/{key}/attempts/").json()
        assert [a["id"] for a in attempts["results"]] == [attempt.public_id]
    assert re.fullmatch(r"att_[0-9A-Z]{26}", attempt.public_id)
    retried = client.post(API + f"/deliveries/{delivery.public_id}/retry/")
    assert (retried.status_code, retried.json()["id"]) == (202, delivery.public_id)
    test = client.post(API + f"/endpoints/{endpoint.public_id}/test/")
    assert test.status_code == 202
    assert test.json()["id"].startswith("dlv_") and test.json()["endpoint"] == endpoint.public_id
    assert client.get(API + "/deliveries/", {"event": test.json()["event"]["id"]}).json()[
        "results"][0]["id"] == test.json()["id"]


@pytest.mark.parametrize("key", [
    "dlv_{delivery}",  # another kind of object's id
    "evt_{event}",
    "ep_0000",  # too short
    "ep_ZZZZZZZZZZZZZZZZZZZZZZZZZZ",  # beyond 128 bits
    "ep_{endpoint}x",
    "not-an-id",
])
def test_ids_of_the_wrong_kind_or_shape_are_a_404(alice: Any, key: str) -> None:
    endpoint = make_endpoint("https://example.com/h", owner=alice)
    delivery = make_delivery(endpoint)
    tails = {name: obj.public_id.partition("_")[2] for name, obj in (
        ("endpoint", endpoint), ("delivery", delivery), ("event", delivery.event))}
    response = client_for(alice).get(API + f"/endpoints/{key.format(**tails)}/")
    assert response.status_code == 404
    assert response.json() == {"detail": "No Endpoint matches the given query."}


def test_zapier_unsubscribe_takes_either_form_of_the_id(alice: Any) -> None:
    client = client_for(alice)
    for form in ("public", "uuid"):
        created = client.post(API + "/zapier/hooks/", {
            "target_url": f"https://hooks.example.com/{form}", "event": "invoice.paid"},
                              format="json").json()
        assert created["id"].startswith("ep_")
        key = created["id"] if form == "public" else str(Endpoint.parse_id(created["id"]))
        response = client.post(API + "/zapier/hooks/unsubscribe/", {"id": key}, format="json")
        assert response.status_code == 204
    assert not Endpoint.objects.exists()
    response = client.post(API + "/zapier/hooks/unsubscribe/", {"id": "dlv_x"}, format="json")
    assert response.status_code == 400 and "id" in response.json()


def test_delivery_attempts_of_another_owner_are_a_404(alice: Any, bob: Any) -> None:
    delivery = make_delivery(make_endpoint("https://example.com/b", owner=bob), attempts=1)
    response = client_for(alice).get(API + f"/deliveries/{delivery.pk}/attempts/")
    assert response.status_code == 404
    response = client_for(alice).get(API + "/deliveries/not-an-id/attempts/")
    assert response.status_code == 404


def test_deliveries_are_paginated_newest_first(alice: Any) -> None:
    endpoint = make_endpoint("https://example.com/h", owner=alice)
    made = [make_delivery(endpoint) for _ in range(5)]
    client = client_for(alice)
    seen: list[str] = []
    url: str | None = API + "/deliveries/?page_size=2"
    while url:
        page = client.get(url).json()
        assert len(page["results"]) <= 2
        seen += [d["id"] for d in page["results"]]
        url = page["next"]
    assert seen == [d.public_id for d in reversed(made)]


def test_list_queries_do_not_grow_with_rows(alice: Any) -> None:
    client = client_for(alice)

    def count(path: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(API + path).status_code == 200
        return len(queries)

    endpoint = make_endpoint("https://example.com/0", "invoice.paid", "ping.sent", owner=alice)
    make_delivery(endpoint, attempts=2)
    few = {path: count(path) for path in ("/endpoints/", "/deliveries/", "/event-types/")}
    for n in range(1, 12):
        more = make_endpoint(f"https://example.com/{n}", "invoice.paid", "ping.sent",
                             owner=alice)
        make_delivery(more, attempts=2)
    many = {path: count(path) for path in few}
    assert many == few
    assert few["/endpoints/"] <= 3  # the page, the subscriptions (a session query at most)
    assert few["/deliveries/"] <= 2


def test_detail_queries_do_not_grow_with_attempts(alice: Any) -> None:
    endpoint = make_endpoint("https://example.com/h", owner=alice)
    few, many = make_delivery(endpoint, attempts=1), make_delivery(endpoint, attempts=8)
    client = client_for(alice)
    counts = []
    for delivery in (few, many):
        with CaptureQueriesContext(connection) as queries:
            client.get(API + f"/deliveries/{delivery.pk}/")
        counts.append(len(queries))
    # The delivery with its event, its attempts, its subscription's payload allowlist.
    assert counts[0] == counts[1] <= 3


# --- the event type catalog -------------------------------------------------------------------


def test_event_types_with_examples_built_from_the_serializers(alice: Any) -> None:
    response = client_for(alice).get(API + "/event-types/")
    assert response.status_code == 200
    catalog = {t["type"]: t for t in response.json()}
    assert set(catalog) == {"webhook.test", "order.created", "order.updated", "order.deleted",
                            "product.created", "line_item.created", "invoice.paid",
                            "ping.sent"}
    assert catalog["invoice.paid"]["description"] == "An invoice was paid."
    product = catalog["product.created"]["example"]
    assert set(product) == {"id", "type", "timestamp", "sequence", "data"}
    assert "sequence" not in catalog["invoice.paid"]["example"]  # custom: only with a key
    assert product["type"] == "product.created" and product["id"].startswith("evt_")
    # The example has exactly the keys the configured serializer writes.
    assert list(product["data"]) == list(ProductSerializer().fields)
    assert product["data"]["price"] == "10.00"
    # A model without a serializer: the default one, every field.
    assert set(catalog["order.created"]["example"]["data"]) == {
        "id", "customer", "organization", "status", "total", "created_at"}


def test_the_example_keys_match_a_real_payload(alice: Any) -> None:
    from tests.testapp.models import Product

    Product.objects.create(name="Pen", price="2.50")
    real = Event.objects.get(type="product.created").data
    example = {t["type"]: t for t in client_for(alice).get(API + "/event-types/").json()}
    assert set(example["product.created"]["example"]["data"]) == set(real)


@override_webhooks(EVENT_EXAMPLES={"invoice.paid": {"invoice": "in_123", "amount": 42}})
def test_custom_events_can_declare_an_example(alice: Any) -> None:
    catalog = {t["type"]: t for t in client_for(alice).get(API + "/event-types/").json()}
    assert catalog["invoice.paid"]["example"]["data"] == {"invoice": "in_123", "amount": 42}
    assert catalog["ping.sent"]["example"]["data"] == {}


@pytest.mark.parametrize(("key", "value"), [
    ("API_PERMISSION_CLASSES", "rest_framework.permissions.IsAuthenticated"),
    ("API_PERMISSION_CLASSES", [1]),
    ("EVENT_EXAMPLES", ["invoice.paid"]),
])
def test_new_settings_are_checked(key: str, value: Any) -> None:
    with override_webhooks(**{key: value}):
        assert "webhooks.E003" in [m.id for m in check_settings()]


# --- Zapier REST Hooks ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["target_url", "hookUrl"])
def test_zapier_subscribe_and_unsubscribe(alice: Any, name: str) -> None:
    client = client_for(alice)
    response = client.post(API + "/zapier/hooks/", {
        name: "https://hooks.example.com/zap/123", "event": "order.created"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body == {"id": body["id"], "target_url": "https://hooks.example.com/zap/123",
                    "event": "order.created"}
    endpoint = Endpoint.objects.get(pk=Endpoint.parse_id(body["id"]))
    assert (endpoint.owner, endpoint.event_types, endpoint.is_active) == (
        alice, ["order.created"], True)

    assert client.delete(API + f"/zapier/hooks/{body['id']}/").status_code == 204
    assert not Endpoint.objects.exists()
    assert client.delete(API + f"/zapier/hooks/{body['id']}/").status_code == 404


def test_zapier_unsubscribe_by_target_url(alice: Any) -> None:
    client = client_for(alice)
    client.post(API + "/zapier/hooks/", {"hookUrl": "https://hooks.example.com/zap/9",
                                         "event": "invoice.paid"}, format="json")
    response = client.post(API + "/zapier/hooks/unsubscribe/",
                           {"hookUrl": "https://hooks.example.com/zap/9"}, format="json")
    assert response.status_code == 204
    assert not Endpoint.objects.exists()
    assert client.post(API + "/zapier/hooks/unsubscribe/", {},
                       format="json").status_code == 400


@pytest.mark.parametrize(("body", "field"), [
    ({"event": "invoice.paid"}, "target_url"),
    ({"target_url": "https://example.com/a", "hookUrl": "https://example.com/b",
      "event": "invoice.paid"}, "target_url"),
    ({"target_url": "https://example.com/a", "event": "nope.never"}, "event"),
    ({"target_url": "https://example.com/a", "event": "*"}, "event"),
    ({"target_url": "https://10.0.0.5/a", "event": "invoice.paid"}, "target_url"),
])
def test_zapier_subscribe_validation(alice: Any, body: dict[str, str], field: str) -> None:
    response = client_for(alice).post(API + "/zapier/hooks/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_zapier_gone_removes_the_hook_and_frees_its_place(alice: Any,
                                                          receiver: Receiver) -> None:
    """REST Hooks: a 410 from a hook's URL removes the subscription. The hook subscribed
    through the Zapier route is deleted and stops counting towards the owner's limit; an
    endpoint created otherwise that answers 410 is disabled (and its owner told), as before."""
    receiver.script("/zap", Reply(410, b"gone"))
    receiver.script("/plain", Reply(410, b"gone"))
    client = client_for(alice)
    disabled: list[Any] = []
    endpoint_disabled.connect(lambda **kw: disabled.append(kw["endpoint"].pk), weak=False,
                              dispatch_uid="t-zapier-disabled")
    try:
        with override_webhooks(MAX_ENDPOINTS_PER_OWNER=2):
            plain = client.post(API + "/endpoints/", new_endpoint_body(
                url=receiver.url("/plain")), format="json")
            hook = client.post(API + "/zapier/hooks/", {
                "target_url": receiver.url("/zap"), "event": "invoice.paid"}, format="json")
            assert (plain.status_code, hook.status_code) == (201, 201)
            hook_pk, plain_pk = (Endpoint.parse_id(r.json()["id"]) for r in (hook, plain))
            assert Endpoint.objects.get(pk=hook_pk).rest_hook is True
            assert Endpoint.objects.get(pk=plain_pk).rest_hook is False
            third = new_endpoint_body(url="https://example.com/third")
            assert client.post(API + "/endpoints/", third, format="json").status_code == 400

            webhooks.send_event("invoice.paid", {"n": 1}, owner=alice)
            fan_out()
            drain()

            assert len(receiver.received("/zap")) == 1
            assert len(receiver.received("/plain")) == 1
            assert not Endpoint.objects.filter(pk=hook_pk).exists()
            assert not Delivery.objects.filter(endpoint_id=hook_pk).exists()
            assert Endpoint.objects.filter(owner=alice).count() == 1
            listed = client.get(API + "/endpoints/").json()["results"]
            assert [e["id"] for e in listed] == [plain.json()["id"]]
            assert client.delete(API + f"/zapier/hooks/{hook.json()['id']}/").status_code == 404
            # Its place is free again.
            assert client.post(API + "/endpoints/", third, format="json").status_code == 201
    finally:
        endpoint_disabled.disconnect(dispatch_uid="t-zapier-disabled")
    kept = Endpoint.objects.get(pk=plain_pk)
    assert kept.is_active is False
    assert "410" in kept.disabled_reason
    assert disabled == [kept.pk]  # the removed hook is no trouble to tell anyone about


def test_zapier_sample_falls_back_to_the_example(alice: Any) -> None:
    client = client_for(alice)
    samples = client.get(API + "/zapier/hooks/sample/", {"event": "product.created"}).json()
    assert len(samples) == 1 and samples[0]["type"] == "product.created"
    assert client.get(API + "/zapier/hooks/sample/").status_code == 400


# --- throttling -------------------------------------------------------------------------------


def test_the_webhooks_scope_throttles_per_user(alice: Any, bob: Any) -> None:
    with override_settings(REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": {"webhooks": "3/minute"}}):
        client = client_for(alice)
        assert [client.get(API + "/endpoints/").status_code for _ in range(4)] == [
            200, 200, 200, 429]
        assert client_for(bob).get(API + "/endpoints/").status_code == 200


def test_sending_has_a_stricter_scope(alice: Any) -> None:
    endpoint = make_endpoint("https://example.com/h", owner=alice)
    delivery = make_delivery(endpoint)
    rates = {"webhooks": "100/minute", "webhooks_send": "2/minute"}
    with override_settings(REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": rates}):
        client = client_for(alice)
        assert client.post(API + f"/endpoints/{endpoint.pk}/test/").status_code == 202
        assert client.post(API + f"/deliveries/{delivery.pk}/retry/").status_code == 202
        throttled = client.post(API + f"/endpoints/{endpoint.pk}/replay/",
                                {"since": timezone.now().isoformat()}, format="json")
        assert throttled.status_code == 429
        assert "Retry-After" in throttled
        assert client.get(API + "/endpoints/").status_code == 200  # reading still works


def test_default_rates_apply_when_the_site_names_none(alice: Any) -> None:
    endpoint = make_endpoint("https://example.com/h", owner=alice)
    client = client_for(alice)
    codes = [client.post(API + f"/endpoints/{endpoint.pk}/test/").status_code
             for _ in range(11)]
    assert codes == [202] * 10 + [429]  # webhooks_send: 10/minute by default


def test_a_scope_can_be_switched_off(alice: Any) -> None:
    endpoint = make_endpoint("https://example.com/h", owner=alice)
    with override_settings(REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": {"webhooks_send": None}}):
        client = client_for(alice)
        assert {client.post(API + f"/endpoints/{endpoint.pk}/test/").status_code
                for _ in range(12)} == {202}
