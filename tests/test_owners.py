"""Owners beyond a user: the owner model setting, owners given to send_event, owner paths of
model events, routing by owner. Marked ``owners``: these run with users as owners
(``tests.settings``) and with organizations (``tests.settings_org``)."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import override_settings

import webhooks
from tests.factories import make_endpoint, make_owner, make_user, organizations_own, owned_order
from tests.receiver import Receiver
from tests.testapp.models import LineItem, Note, Product
from webhooks import owners
from webhooks.checks import check_catalog, check_owner_model
from webhooks.delivery.fanout import fan_out
from webhooks.delivery.loop import drain
from webhooks.exceptions import InvalidOwner
from webhooks.models import Delivery, Endpoint, Event

pytestmark = [pytest.mark.django_db, pytest.mark.owners]


def override_webhooks(**changes: Any) -> Any:
    from django.conf import settings

    return override_settings(WEBHOOKS={**settings.WEBHOOKS, **changes})


def test_the_owner_model_follows_the_setting() -> None:
    model = owners.get_owner_model()
    expected = "testapp.Organization" if organizations_own() else "auth.User"
    assert model._meta.label == expected
    for field in (Endpoint._meta.get_field("owner"), Event._meta.get_field("owner")):
        assert field.related_model is model


def test_the_migrations_match_the_models_in_this_configuration() -> None:
    out = io.StringIO()
    call_command("makemigrations", "webhooks", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_the_columns_have_the_owner_keys_type() -> None:
    """The database was migrated for this configuration's owner model: an owner's key is
    stored and read back as that model's key."""
    owner = make_owner("acme")
    event = webhooks.send_event("invoice.paid", {"n": 1}, owner=owner)
    stored = Event.objects.get(pk=event.pk)
    assert stored.owner_id == owner.pk
    assert stored.owner == owner


# --- send_event(owner=...) ------------------------------------------------------------------


def test_send_event_takes_an_owner_or_its_primary_key() -> None:
    owner = make_owner("acme")
    assert webhooks.send_event("invoice.paid", {}, owner=owner).owner_id == owner.pk
    assert webhooks.send_event("invoice.paid", {}, owner=owner.pk).owner_id == owner.pk
    assert webhooks.send_event("invoice.paid", {}, owner=None).owner_id is None


@pytest.mark.parametrize("bad", [
    "1", "abc", "", 1.0, True, 2**63, -(2**63) - 1, [1], {"pk": 1}, uuid.UUID(int=1),
])
def test_send_event_refuses_a_key_of_the_wrong_type_before_any_query(bad: Any) -> None:
    """Today's integer keys: a string, a float, a bool, a number out of range… are refused at
    the call, on every database (no row written, no DataError later)."""
    before = Event.objects.count()
    with pytest.raises(InvalidOwner) as caught:
        webhooks.send_event("invoice.paid", {}, owner=bad)
    assert owners.get_owner_model()._meta.label in str(caught.value)
    assert Event.objects.count() == before


def test_send_event_refuses_an_instance_of_another_model() -> None:
    other = Note.objects.create(text="not an owner")
    with pytest.raises(InvalidOwner, match=r"not a testapp\.Note"):
        webhooks.send_event("invoice.paid", {}, owner=other)
    if organizations_own():  # a user is not an organization
        with pytest.raises(InvalidOwner, match=r"not a auth\.User"):
            webhooks.send_event("invoice.paid", {}, owner=make_user("bob"))


def test_send_event_refuses_an_unsaved_owner() -> None:
    with pytest.raises(InvalidOwner, match="unsaved"):
        webhooks.send_event("invoice.paid", {}, owner=owners.get_owner_model()())


def test_invalid_owner_is_a_value_error_of_ours() -> None:
    assert issubclass(InvalidOwner, ValueError)
    assert issubclass(InvalidOwner, webhooks.exceptions.WebhooksError)


# --- routing ----------------------------------------------------------------------------------


def test_an_owners_objects_go_to_its_endpoints_and_the_sites_never_anothers(
        receiver: Receiver) -> None:
    """Order and line item events of A reach A's endpoints and site-wide ones; B's endpoint
    gets none of them, and a custom event of B reaches B's only (and the site's)."""
    a, b = make_owner("acme"), make_owner("globex")
    to_a = make_endpoint(receiver.url("/a"), owner=a)
    to_b = make_endpoint(receiver.url("/b"), owner=b)
    site = make_endpoint(receiver.url("/site"))
    order = owned_order(a, total=10)
    LineItem.objects.create(order=order, product=Product.objects.create(name="x"))
    webhooks.send_event("invoice.paid", {"n": 1}, owner=b.pk)
    while fan_out():
        pass
    got = {(d.endpoint_id, d.event.type) for d in Delivery.objects.select_related("event")}
    assert got == {
        (to_a.pk, "order.created"), (to_a.pk, "line_item.created"),
        (site.pk, "order.created"), (site.pk, "line_item.created"),
        (site.pk, "product.created"), (to_b.pk, "invoice.paid"), (site.pk, "invoice.paid"),
    }
    drain()
    assert len(receiver.received("/a")) == 2
    assert len(receiver.received("/b")) == 1
    assert len(receiver.received("/site")) == 4
    assert all(e.owner_id == a.pk for e in Event.objects.filter(type__startswith="order"))


# --- checks -----------------------------------------------------------------------------------


def test_an_owner_path_that_ends_elsewhere_is_refused_naming_the_model_reached() -> None:
    wrong = "customer" if organizations_own() else "organization"
    reached = "auth.User" if organizations_own() else "testapp.Organization"
    with override_webhooks(MODELS={"testapp.Order": {"owner": wrong}}):
        messages = check_catalog()
    assert [m.id for m in messages] == ["webhooks.E010"]
    assert f"reaches {reached}" in messages[0].msg
    assert owners.get_owner_model()._meta.label in messages[0].msg


def test_the_dotted_and_the_double_underscore_paths_are_the_same() -> None:
    path = "order.organization" if organizations_own() else "order.customer"
    with override_webhooks(MODELS={"testapp.LineItem": {"owner": path}}):
        assert check_catalog() == []
        owner = make_owner("acme")
        order = owned_order(owner)
        item = LineItem.objects.create(order=order, product=Product.objects.create(name="x"))
        event = Event.objects.get(type="line_item.created")
        assert event.owner_id == owner.pk and item.pk


@pytest.mark.parametrize(("label", "check_id"), [
    ("nope.Model", "webhooks.E070"),
    ("testapp", "webhooks.E070"),
    ("testapp.Missing", "webhooks.E070"),
])
def test_an_owner_model_that_does_not_exist_is_a_check_error(label: str, check_id: str) -> None:
    with override_settings(WEBHOOKS_OWNER_MODEL=label):
        assert [m.id for m in check_owner_model()] == [check_id]


def test_the_owner_model_checks_pass_as_configured() -> None:
    assert check_owner_model() == []


def test_api_owner_that_cannot_be_imported_is_a_check_error() -> None:
    with override_webhooks(API_OWNER="tests.nowhere.owner"):
        assert [m.id for m in check_owner_model()] == ["webhooks.E072"]


def test_other_owners_without_an_api_owner_get_a_warning() -> None:
    with override_settings(WEBHOOKS_OWNER_MODEL="testapp.Organization"), \
            override_webhooks(API_OWNER=None):
        assert [m.id for m in check_owner_model()] == ["webhooks.W070"]


def test_a_model_without_a_usable_primary_key_is_refused() -> None:
    from django.contrib.auth.models import AbstractUser

    from webhooks.checks import owner_model_problems

    assert owner_model_problems(Note) == []
    assert [m.id for m in owner_model_problems(AbstractUser)] == ["webhooks.E071"]


def test_the_owner_keys_are_read_on_this_database() -> None:
    """The same refusals hold whatever the backend (here: ``connection.vendor``)."""
    assert connection.vendor in {"sqlite", "postgresql"}
    with pytest.raises(InvalidOwner):
        webhooks.send_event("invoice.paid", {}, owner="12")
