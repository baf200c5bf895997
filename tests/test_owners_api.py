"""The REST API acts for the request's owner (``WEBHOOKS["API_OWNER"]``): the isolation battery.

Two owners, A and B. With organizations as owners (``tests.settings_org``) A has two members
and B one; with users as owners, A and B are users. Every route and method of the API is tried
by every actor (:data:`ROUTES` x :data:`ACTORS`) on A's objects:

- A's member, and A's fellow member (organizations only: there is no one to share a user
  with): they see and manage A's objects;
- B's member: 404 on every object of A, lists without A's objects, what they create is B's;
- a user who acts for no owner (no organization; with users as owners, an ``API_OWNER`` that
  finds none): 403 on every route;
- anonymous: 401 or 403 on every route.

Whatever the actor, what is created belongs to the actor's owner, and a request that must not
touch A's objects leaves them as they were and never shows them.

Marked ``owners``: this runs in both configurations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import make_delivery, make_endpoint, make_owner, make_user, organizations_own
from tests.helpers import override_webhooks
from webhooks import owners
from webhooks.models import Delivery, Endpoint

pytestmark = [pytest.mark.django_db, pytest.mark.owners,
              pytest.mark.usefixtures("fresh_throttles")]

API = "/api/webhooks"
A_URL = "https://example.com/acme"
B_URL = "https://example.com/globex"
NEW_URL = "https://hooks.example.com/new"


def no_owner(request: Any) -> None:
    """An ``API_OWNER`` that finds no owner for any request."""
    return None


@dataclass
class World:
    """Owners A and B, their members, and A's objects (B has objects of its own too)."""

    a: Any
    b: Any
    member: Any  # of A
    fellow: Any  # of A too (None with users as owners)
    other: Any  # of B
    ownerless: Any  # acts for no owner
    endpoint: Endpoint  # A's
    delivery: Delivery  # A's, failed
    b_endpoint: Endpoint
    b_delivery: Delivery

    def owner_of(self, actor: str) -> Any:
        """The owner ``actor`` acts for (``None``: none)."""
        return {"member": self.a, "fellow": self.a, "other": self.b}.get(actor)

    def a_identifiers(self) -> list[str]:
        """What must never appear in an answer to someone outside A."""
        return [self.endpoint.public_id, self.delivery.public_id, self.delivery.event.public_id,
                str(self.endpoint.pk), str(self.delivery.pk), self.endpoint.secret, A_URL,
                "acme"]


def user_with_key(username: str, pk: int) -> Any:
    """A user with password ``pw`` and primary key ``pk``."""
    return get_user_model().objects.create_user(username=username, password="pw", pk=pk)


@pytest.fixture
def world() -> World:
    if organizations_own():
        from tests.testapp.models import Membership, Organization

        # Crossed keys: A's member has B's key and B's member A's, so a view that took the
        # user's key for the owner's would hand each the other's objects.
        a = Organization.objects.create(pk=101, name="acme", email="acme@example.com")
        b = Organization.objects.create(pk=102, name="globex", email="globex@example.com")
        member, fellow, other = (user_with_key("ann", b.pk), user_with_key("andy", 103),
                                 user_with_key("bea", a.pk))
        for organization, user in ((a, member), (a, fellow), (b, other)):
            Membership.objects.create(organization=organization, user=user)
    else:
        a, b = make_owner("ann"), make_owner("bea")
        member, fellow, other = a, None, b
    endpoint = make_endpoint(A_URL, "invoice.paid", owner=a)
    b_endpoint = make_endpoint(B_URL, "invoice.paid", owner=b)
    return World(a=a, b=b, member=member, fellow=fellow, other=other,
                 ownerless=make_user("nobody"), endpoint=endpoint,
                 delivery=make_delivery(endpoint, data={"who": "acme"}, attempts=2),
                 b_endpoint=b_endpoint,
                 b_delivery=make_delivery(b_endpoint, data={"who": "globex"}))


# --- what a member of A's request did ---------------------------------------------------------


def listed_ids(response: Any) -> set[str]:
    body = response.json()
    return {item["id"] for item in (body["results"] if isinstance(body, dict) else body)}


def lists_endpoint(w: World, response: Any) -> None:
    assert listed_ids(response) == {w.endpoint.public_id}


def lists_delivery(w: World, response: Any) -> None:
    assert listed_ids(response) == {w.delivery.public_id}


def created_for_a(w: World, response: Any) -> None:
    assert Endpoint.objects.get(pk=Endpoint.parse_id(response.json()["id"])).owner == w.a


def reads_endpoint(w: World, response: Any) -> None:
    assert response.json()["id"] == w.endpoint.public_id


def replaced(w: World, response: Any) -> None:
    w.endpoint.refresh_from_db()
    assert w.endpoint.url == NEW_URL


def described(w: World, response: Any) -> None:
    w.endpoint.refresh_from_db()
    assert w.endpoint.description == "changed"


def deleted(w: World, response: Any) -> None:
    assert not Endpoint.objects.filter(pk=w.endpoint.pk).exists()
    assert Endpoint.objects.filter(pk=w.b_endpoint.pk).exists()


def reads_secret(w: World, response: Any) -> None:
    assert response.json() == {"secret": w.endpoint.secret}


def rotated(w: World, response: Any) -> None:
    old = w.endpoint.secret
    w.endpoint.refresh_from_db()
    assert response.json()["secret"] == w.endpoint.secret != old


def sent_test(w: World, response: Any) -> None:
    test = Delivery.objects.get(pk=Delivery.parse_id(response.json()["id"]))
    assert (test.endpoint_id, test.event.type, test.event.owner_id) == (
        w.endpoint.pk, "webhook.test", w.a.pk)


def delivery_due(w: World, response: Any) -> None:
    w.delivery.refresh_from_db()
    assert w.delivery.status == Delivery.Status.PENDING
    w.b_delivery.refresh_from_db()
    assert w.b_delivery.status == Delivery.Status.FAILED


def replayed(w: World, response: Any) -> None:
    assert response.json()["retried"] == 1
    delivery_due(w, response)


def reads_delivery(w: World, response: Any) -> None:
    assert response.json()["id"] == w.delivery.public_id


def lists_attempts(w: World, response: Any) -> None:
    assert [a["number"] for a in response.json()["results"]] == [2, 1]


def lists_catalog(w: World, response: Any) -> None:
    assert "invoice.paid" in {t["type"] for t in response.json()}


def lists_subscribed_types(w: World, response: Any) -> None:
    (entry,) = response.json()  # A's endpoint receives invoice.paid only
    assert entry["type"] == "invoice.paid"
    assert entry["schema"]["properties"]["type"] == {"const": "invoice.paid"}


def samples_a(w: World, response: Any) -> None:
    assert [s["id"] for s in response.json()] == [w.delivery.event.public_id]
    assert response.json()[0]["data"] == {"who": "acme"}


class Route(NamedTuple):
    """One route and method, tried on A's objects (``{endpoint}``, ``{delivery}``,
    ``{since}`` in the path and body are filled in)."""

    name: str
    method: str
    path: str
    body: dict[str, Any] | None
    #: The answer to A's members, and what their request did or showed.
    ok: int
    check: Callable[[World, Any], None]
    #: The answer to B's member (404: A's object is not theirs; 200/201: their own list,
    #: catalog or new object).
    stranger: int


ROUTES = [
    Route("endpoints list", "get", "/endpoints/", None, 200, lists_endpoint, 200),
    Route("endpoints create", "post", "/endpoints/",
          {"url": NEW_URL, "events": ["invoice.paid"]}, 201, created_for_a, 201),
    Route("endpoint read", "get", "/endpoints/{endpoint}/", None, 200, reads_endpoint, 404),
    Route("endpoint update", "put", "/endpoints/{endpoint}/",
          {"url": NEW_URL, "events": ["invoice.paid"]}, 200, replaced, 404),
    Route("endpoint partial update", "patch", "/endpoints/{endpoint}/",
          {"description": "changed"}, 200, described, 404),
    Route("endpoint delete", "delete", "/endpoints/{endpoint}/", None, 204, deleted, 404),
    Route("secret", "get", "/endpoints/{endpoint}/secret/", None, 200, reads_secret, 404),
    Route("rotate-secret", "post", "/endpoints/{endpoint}/rotate-secret/", {}, 200, rotated,
          404),
    Route("test", "post", "/endpoints/{endpoint}/test/", None, 202, sent_test, 404),
    Route("endpoint event-types", "get", "/endpoints/{endpoint}/event-types/", None, 200,
          lists_subscribed_types, 404),
    Route("replay", "post", "/endpoints/{endpoint}/replay/", {"since": "{since}"}, 202,
          replayed, 404),
    Route("deliveries list", "get", "/deliveries/", None, 200, lists_delivery, 200),
    Route("deliveries list by endpoint", "get", "/deliveries/?endpoint={endpoint}", None, 200,
          lists_delivery, 200),
    Route("delivery detail", "get", "/deliveries/{delivery}/", None, 200, reads_delivery, 404),
    Route("delivery attempts", "get", "/deliveries/{delivery}/attempts/", None, 200,
          lists_attempts, 404),
    Route("delivery retry", "post", "/deliveries/{delivery}/retry/", None, 202, delivery_due,
          404),
    Route("event-types", "get", "/event-types/", None, 200, lists_catalog, 200),
    Route("zapier subscribe", "post", "/zapier/hooks/",
          {"hookUrl": NEW_URL, "event": "invoice.paid"}, 201, created_for_a, 201),
    Route("zapier unsubscribe (DELETE by id)", "delete", "/zapier/hooks/{endpoint}/", None,
          204, deleted, 404),
    Route("zapier unsubscribe (POST id)", "post", "/zapier/hooks/unsubscribe/",
          {"id": "{endpoint}"}, 204, deleted, 404),
    Route("zapier unsubscribe (POST target_url)", "post", "/zapier/hooks/unsubscribe/",
          {"target_url": A_URL}, 204, deleted, 404),
    Route("zapier sample", "get", "/zapier/hooks/sample/?event=invoice.paid", None, 200,
          samples_a, 200),
]

ACTORS = ["member", "fellow", "other", "ownerless", "anonymous"]


def a_state(w: World) -> tuple[list[Any], list[Any]]:
    """A's endpoints and deliveries, every column a request could change."""
    endpoints = Endpoint.objects.filter(owner=w.a).order_by("pk")
    deliveries = Delivery.objects.filter(endpoint__owner=w.a).order_by("pk")
    return ([(e.pk, e.url, e.description, e.secret, e.previous_secret, e.is_active,
              sorted(e.event_types)) for e in endpoints],
            list(deliveries.values_list("pk", "status", "next_attempt_at", "attempts")))


def request_as(w: World, actor: str, route: Route) -> Any:
    client = APIClient()
    user = getattr(w, actor, None)
    if user is not None:
        client.force_authenticate(user)
    values = {"endpoint": w.endpoint.pk, "delivery": w.delivery.pk,
              "since": (timezone.now() - timedelta(hours=1)).isoformat()}
    body = route.body and {key: value.format(**values) if isinstance(value, str) else value
                           for key, value in route.body.items()}
    return getattr(client, route.method)(API + route.path.format(**values), body,
                                         format="json")


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
def test_isolation(world: World, route: Route, actor: str) -> None:
    if actor == "fellow" and not organizations_own():
        pytest.skip("users as owners: nobody shares a user's endpoints")
    before, endpoints_before = a_state(world), set(Endpoint.objects.values_list("pk", flat=True))

    if actor == "ownerless" and not organizations_own():
        with override_webhooks(API_OWNER="tests.test_owners_api.no_owner"):
            response = request_as(world, actor, route)
    else:
        response = request_as(world, actor, route)

    created = Endpoint.objects.exclude(pk__in=endpoints_before)
    owner = world.owner_of(actor)
    assert all(e.owner_id == owner.pk for e in created) if owner else not created.exists()
    if owner == world.a:  # a member of A, or a fellow member
        assert response.status_code == route.ok, response.content
        route.check(world, response)
        return
    if actor == "other":
        assert response.status_code == route.stranger, response.content
    elif actor == "ownerless":
        assert response.status_code == 403, response.content
        assert "do not act for any owner" in response.json()["detail"]
    else:
        assert response.status_code in (401, 403), response.content
    assert a_state(world) == before
    text = response.content.decode()
    assert not [value for value in world.a_identifiers() if value in text]


def test_the_battery_covers_every_operation_of_the_schema() -> None:
    from tests.test_api_schema import ROUTES as OPERATIONS

    tried = {(route.path.split("?")[0].replace("{endpoint}", "{id}")
              .replace("{delivery}", "{id}"), route.method) for route in ROUTES}
    expected = {(path.removeprefix(API), method) for path, methods in OPERATIONS.items()
                for method in methods}
    assert tried == expected


# --- choosing the owner ------------------------------------------------------------------------


def client_for(user: Any, organization: Any = None) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    if organization is not None:
        client.credentials(HTTP_X_ORGANIZATION=str(organization))
    return client


def test_a_user_who_acts_for_no_owner_gets_a_clear_403(world: World) -> None:
    """A user of no organization (with users as owners: an ``API_OWNER`` that finds none)."""
    if organizations_own():
        response = client_for(world.ownerless).get(API + "/endpoints/")
    else:
        with override_webhooks(API_OWNER="tests.test_owners_api.no_owner"):
            response = client_for(world.member).get(API + "/endpoints/")
    assert response.status_code == 403
    assert "do not act for any owner" in response.json()["detail"]


@pytest.mark.parametrize("route", [r for r in ROUTES if r.name in {
    "endpoints list", "endpoints create", "endpoint update", "replay", "delivery retry",
    "event-types", "zapier subscribe", "zapier sample"}], ids=lambda r: r.name)
def test_the_owner_is_resolved_once_per_request(world: World, route: Route,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Any] = []

    def counting(request: Any) -> Any:
        asked.append(request)
        return owners.api_owner(request)

    monkeypatch.setattr("webhooks.api.views.api_owner", counting)
    response = request_as(world, "member", route)
    assert response.status_code == route.ok
    assert len(asked) == 1


def test_the_organization_header_chooses_among_the_users_memberships(world: World) -> None:
    if not organizations_own():
        pytest.skip("organizations only")
    consultant = make_user("carl")
    world.a.members.add(consultant)
    world.b.members.add(consultant)

    def endpoint_urls(organization: Any = None) -> Any:
        response = client_for(consultant, organization).get(API + "/endpoints/")
        if response.status_code != 200:
            return response.status_code
        return [e["url"] for e in response.json()["results"]]

    assert endpoint_urls(world.a.pk) == [A_URL]
    assert endpoint_urls(world.b.pk) == [B_URL]
    assert endpoint_urls() == [A_URL]  # no header: the first organization
    created = client_for(consultant, world.b.pk).post(
        API + "/endpoints/", {"url": NEW_URL, "events": ["*"]}, format="json")
    assert Endpoint.objects.get(pk=Endpoint.parse_id(created.json()["id"])).owner == world.b


def test_the_organization_header_cannot_pick_an_organization_of_others(world: World) -> None:
    if not organizations_own():
        pytest.skip("organizations only")
    stranger = make_owner("initech")  # an organization ann is not a member of
    client = client_for(world.member, world.b.pk)
    for path in ("/endpoints/", "/deliveries/", f"/endpoints/{world.b_endpoint.pk}/",
                 f"/deliveries/{world.b_delivery.pk}/", "/event-types/"):
        response = client.get(API + path)
        assert response.status_code == 403, path
        assert B_URL not in response.content.decode()
    for header in (stranger.pk, 10**9, "abc", "-1"):
        assert client_for(world.member, header).get(API + "/endpoints/").status_code == 403
    before = Endpoint.objects.count()
    assert client.post(API + "/endpoints/", {"url": NEW_URL, "events": ["*"]},
                       format="json").status_code == 403
    assert Endpoint.objects.count() == before


@override_webhooks(MAX_ENDPOINTS_PER_OWNER=3)
def test_the_endpoint_limit_counts_the_owners_endpoints(world: World) -> None:
    """A has one endpoint already; its members share the limit, B's is its own, and Zapier
    subscriptions count too."""
    members = [world.member, world.fellow] if organizations_own() else [world.member]

    def create(user: Any, url: str) -> int:
        return int(client_for(user).post(API + "/endpoints/", {"url": url, "events": ["*"]},
                                         format="json").status_code)

    assert create(members[0], "https://example.com/2") == 201
    assert create(members[-1], "https://example.com/3") == 201
    for user in members:
        refused = client_for(user).post(API + "/endpoints/",
                                        {"url": "https://example.com/4", "events": ["*"]},
                                        format="json")
        assert refused.status_code == 400
        assert "3 endpoints" in str(refused.json())
        zapier = client_for(user).post(API + "/zapier/hooks/",
                                       {"hookUrl": "https://example.com/z", "event": "ping.sent"},
                                       format="json")
        assert zapier.status_code == 400
    assert Endpoint.objects.filter(owner=world.a).count() == 3
    assert create(world.other, "https://example.com/b2") == 201
    assert create(world.other, "https://example.com/b3") == 201
    assert create(world.other, "https://example.com/b4") == 400
