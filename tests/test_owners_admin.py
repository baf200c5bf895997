"""The endpoint admin and the owner model: the owner in the list and its filter, searching
endpoints by owner, the owner field (autocomplete or raw id, decided for each request),
constant query counts with owners. Marked ``owners``: this runs with users as owners
(``tests.settings``, where django.contrib.auth's ``UserAdmin`` is the owner admin) and with
organizations (``tests.settings_org``, with ``tests.testapp.admin.OrganizationAdmin``)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import make_endpoint, make_owner, make_user, organizations_own
from webhooks.models import Endpoint
from webhooks.owners import get_owner_model

pytestmark = [pytest.mark.django_db, pytest.mark.owners]

CHANGELIST = "admin:webhooks_endpoint_changelist"


def changelist(client: Client, **query: str) -> str:
    response = client.get(reverse(CHANGELIST), query)
    assert response.status_code == 200
    return str(response.content.decode())


def change_page(client: Client, endpoint: Endpoint | None = None) -> str:
    url = (reverse("admin:webhooks_endpoint_add") if endpoint is None
           else reverse("admin:webhooks_endpoint_change", args=[endpoint.pk]))
    response = client.get(url)
    assert response.status_code == 200
    return str(response.content.decode())


def listed(html: str, *endpoints: Endpoint) -> set[str]:
    return {e.url for e in endpoints if e.url in html}


@pytest.fixture
def owners() -> tuple[Any, Any]:
    """Two owners: "acme" and "globex" (users, or organizations with a member each)."""
    return make_owner("acme"), make_owner("globex")


@pytest.fixture
def endpoints(owners: tuple[Any, Any]) -> tuple[Endpoint, Endpoint, Endpoint]:
    """An endpoint of each owner and a site-wide one; no URL names an owner."""
    a, b = owners
    return (make_endpoint("https://example.com/one", owner=a),
            make_endpoint("https://example.com/two", owner=b),
            make_endpoint("https://example.com/three"))


@pytest.fixture
def owner_admin() -> admin.ModelAdmin:
    """The owner model's admin (registered on the default site in both configurations)."""
    return admin.site.get_model_admin(get_owner_model())


@pytest.fixture
def unsearchable_owners(owner_admin: admin.ModelAdmin,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The owner admin has no ``search_fields`` (Django's autocomplete needs some)."""
    monkeypatch.setattr(owner_admin, "search_fields", ())


@pytest.fixture
def unregistered_owners(monkeypatch: pytest.MonkeyPatch) -> None:
    """No admin for the owner model."""
    monkeypatch.delitem(admin.site._registry, get_owner_model())


# --- the list ---------------------------------------------------------------------------------


def test_the_list_shows_the_owners_str(admin_client: Client,
                                      endpoints: tuple[Endpoint, ...]) -> None:
    """Under each endpoint's URL: its owner (nothing for a site-wide endpoint)."""
    cells = re.findall(r'<th class="field-endpoint[^"]*">(.*?)</th>', changelist(admin_client))
    owners = [re.findall(r'<span class="webhooks-quiet">([^<]*)</span>', c) for c in cells]
    assert sorted(owners) == sorted([[str(endpoints[0].owner)], [str(endpoints[1].owner)], []])


def test_the_owner_filter_says_owner(admin_client: Client,
                                     endpoints: tuple[Endpoint, ...]) -> None:
    one, two, site = endpoints
    html = changelist(admin_client)
    assert "Site-wide (no owner)" in html and "An owner&#x27;s" in html
    assert "user&#x27;s" not in html.lower()
    assert listed(changelist(admin_client, owned="owner"), *endpoints) == {one.url, two.url}
    assert listed(changelist(admin_client, owned="site"), *endpoints) == {site.url}


def test_endpoints_are_searched_by_the_owner_admins_search_fields(
        admin_client: Client, endpoints: tuple[Endpoint, ...]) -> None:
    one, two, _site = endpoints
    assert listed(changelist(admin_client, q="acme"), *endpoints) == {one.url}
    assert listed(changelist(admin_client, q="glob"), *endpoints) == {two.url}
    if organizations_own():  # OrganizationAdmin: "=email", an exact match
        assert listed(changelist(admin_client, q="acme@example.com"), *endpoints) == {one.url}
        assert listed(changelist(admin_client, q="acme@example"), *endpoints) == set()
    assert listed(changelist(admin_client, q="example.com/one"), *endpoints) == {one.url}


@pytest.mark.usefixtures("unregistered_owners")
def test_without_an_owner_admin_users_are_searched_by_username(
        admin_client: Client, endpoints: tuple[Endpoint, ...]) -> None:
    """With users as owners the username still finds them; an organization without an admin
    is not searchable (the endpoint's own fields still are)."""
    one, _two, _site = endpoints
    expected = set() if organizations_own() else {one.url}
    assert listed(changelist(admin_client, q="acme"), *endpoints) == expected
    assert listed(changelist(admin_client, q="example.com/one"), *endpoints) == {one.url}


# --- the owner field --------------------------------------------------------------------------


AUTOCOMPLETE = 'class="admin-autocomplete'
#: The raw id widget: a text input (with a lookup link when the owner model has an admin).
RAW_ID = '<input type="text" name="owner"'


def test_the_owner_field_autocompletes_when_the_owner_admin_is_searchable(
        admin_client: Client, endpoints: tuple[Endpoint, ...]) -> None:
    one = endpoints[0]
    for html in (change_page(admin_client), change_page(admin_client, one)):
        owner_field = html[html.index('name="owner"') - 300:html.index('name="owner"') + 300]
        assert AUTOCOMPLETE in owner_field and RAW_ID not in owner_field
    assert f'<option value="{one.owner_id}" selected>{one.owner}</option>' in change_page(
        admin_client, one)
    found = admin_client.get(reverse("admin:autocomplete"), {
        "app_label": "webhooks", "model_name": "endpoint", "field_name": "owner",
        "term": "acm"})
    assert found.status_code == 200
    assert [r["text"] for r in found.json()["results"]] == [str(one.owner)]


@pytest.mark.parametrize("why", ["unsearchable_owners", "unregistered_owners"])
def test_the_owner_field_is_a_raw_id_otherwise(admin_client: Client,
                                               endpoints: tuple[Endpoint, ...],
                                               request: pytest.FixtureRequest,
                                               why: str) -> None:
    """Decided for each request: the same admin switches once the owner admin changes."""
    one = endpoints[0]
    assert AUTOCOMPLETE in change_page(admin_client, one)
    request.getfixturevalue(why)
    for html in (change_page(admin_client), change_page(admin_client, one)):
        assert RAW_ID in html and AUTOCOMPLETE not in html
    assert f'value="{one.owner_id}"' in change_page(admin_client, one)


def test_staff_who_cannot_view_owners_get_a_raw_id(endpoints: tuple[Endpoint, ...]) -> None:
    """Django's autocomplete view refuses staff without the view permission on the owner
    model: they type the owner's id instead."""
    staff = make_user("editor")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_endpoint", "change_endpoint", "add_endpoint"]))
    client = Client()
    client.force_login(staff)
    html = change_page(client, endpoints[0])
    assert RAW_ID in html and AUTOCOMPLETE not in html


@pytest.mark.parametrize("widget", ["autocomplete", "raw id"])
def test_the_owner_is_saved_from_either_widget(admin_client: Client, owners: tuple[Any, Any],
                                               request: pytest.FixtureRequest,
                                               widget: str) -> None:
    if widget == "raw id":
        request.getfixturevalue("unsearchable_owners")
    _a, b = owners
    response = admin_client.post(reverse("admin:webhooks_endpoint_add"), {
        "url": "https://example.com/new", "description": "", "owner": str(b.pk),
        "is_active": "on", "events": ["*"], "payload_fields": "{}", "headers": "{}",
        "rate_limit": "", "max_concurrency": ""})
    assert response.status_code == 302, response.content
    assert Endpoint.objects.get(url="https://example.com/new").owner == b


# --- query counts ---------------------------------------------------------------------------


def test_query_counts_do_not_grow_with_owners(admin_client: Client) -> None:
    """The owner column reads each owner in the page's query (list_select_related), and the
    change page's owner widget reads its one owner."""

    def seed(n: int, offset: int) -> dict[str, str]:
        made = [make_endpoint(f"https://example.com/{offset + i}",
                              owner=make_owner(f"owner{offset + i}")) for i in range(n)]
        return {"list": reverse(CHANGELIST),
                "search": reverse(CHANGELIST) + "?q=owner",
                "owned": reverse(CHANGELIST) + "?owned=owner",
                "change": reverse("admin:webhooks_endpoint_change", args=[made[0].pk])}

    def counts(urls: dict[str, str]) -> dict[str, int]:
        result = {}
        for name, url in urls.items():
            with CaptureQueriesContext(connection) as queries:
                assert admin_client.get(url).status_code == 200
            result[name] = len(queries)
        return result

    admin_client.get(reverse(CHANGELIST))  # warm the session and content type caches
    small = counts(seed(3, 0))
    Endpoint.objects.all().delete()
    large = counts(seed(30, 100))
    assert small == large
    assert max(large.values()) <= 12, large
