"""The test helpers sites use: ``capture_webhooks`` and the ``webhooks_outbox`` fixture."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from decimal import Decimal
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import transaction
from django.test import TestCase

import webhooks
from tests.helpers import make_endpoint, make_user
from tests.testapp.models import Order
from webhooks import dispatch
from webhooks.delivery.fanout import fan_out, match_endpoints
from webhooks.models import Delivery, DispatchToken, Event
from webhooks.pytest_plugin import webhooks_outbox  # the fixture, as a site gets it
from webhooks.services import retry_deliveries, send_test_event
from webhooks.testing import CapturedWebhooks, capture_webhooks

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db


def nothing_left_behind() -> None:
    """No dispatch token, no delivery: the worker side never started."""
    assert not DispatchToken.objects.exists()
    assert not Delivery.objects.exists()


# --- what is captured, and where it would go --------------------------------------------------


def test_model_and_custom_events_are_captured_with_their_endpoints(
    enqueued: list[Any], django_capture_on_commit_callbacks: Any,
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    site = make_endpoint("https://site.example.com/hook", "*")
    alices = make_endpoint("https://alice.example.com/hook", "order.created", owner=alice)
    bobs = make_endpoint("https://bob.example.com/hook", "order.created", owner=bob)
    make_endpoint("https://off.example.com/hook", "*", is_active=False)
    invoices = make_endpoint("https://billing.example.com/hook", "invoice.paid")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, \
            capture_webhooks() as captured:
        order = Order.objects.create(customer=alice, total="12.30")
        webhooks.send_event("invoice.paid", {"invoice": 7}, owner=bob)

    assert callbacks == []  # no on-commit hook was even registered
    assert enqueued == []
    nothing_left_behind()
    created, paid = captured.events
    assert (created.type, created.owner_id) == ("order.created", alice.pk)
    assert created.data["id"] == order.pk and created.data["total"] == "12.30"
    assert set(created.endpoints) == {site, alices}  # not Bob's, not the inactive one
    assert bobs not in created.endpoints
    assert created.id.startswith("evt_") and created.id == Event.objects.get(pk=created.pk
                                                                              ).public_id
    assert created.payload == Event.objects.get(pk=created.pk).payload
    assert (paid.type, paid.owner_id, paid.data) == ("invoice.paid", bob.pk, {"invoice": 7})
    assert set(paid.endpoint_ids) == {site.pk, invoices.pk}
    assert captured.types == ["order.created", "invoice.paid"]
    assert len(captured) == 2 and captured[1] == paid and list(captured) == [created, paid]


def test_endpoints_match_exactly_as_the_fan_out_does() -> None:
    alice = make_user("alice")
    make_endpoint("https://a.example.com/hook", "order.created", owner=alice)
    make_endpoint("https://b.example.com/hook", "*")
    make_endpoint("https://c.example.com/hook", "order.updated")
    make_endpoint("https://d.example.com/hook", "*", owner=make_user("bob"))
    with capture_webhooks() as captured:
        Order.objects.create(customer=alice)
        Order.objects.create()
        webhooks.send_event("ping.sent", {}, owner=alice)
    predicted = {e.pk: e.endpoint_ids for e in captured.events}
    fan_out()
    actual: dict[Any, list[Any]] = {pk: [] for pk in predicted}
    for event_id, endpoint_id in Delivery.objects.values_list("event_id", "endpoint_id"):
        actual[event_id].append(endpoint_id)
    assert predicted == {pk: sorted(ids) for pk, ids in actual.items()}
    assert [len(ids) for ids in predicted.values()] == [2, 1, 1]


def test_match_endpoints_is_pure_and_applies_every_rule() -> None:
    events = [SimpleNamespace(id=1, type="order.created", owner_id=10),
              SimpleNamespace(id=2, type="order.created", owner_id=None),
              SimpleNamespace(id=3, type="invoice.paid", owner_id=20)]
    subscriptions = [
        ("site-all", "*", None), ("site-orders", "order.created", None),
        ("u10-orders", "order.created", 10), ("u20-all", "*", 20),
        ("u20-orders", "order.created", 20), ("site-all", "order.created", None),
    ]
    assert match_endpoints(events, subscriptions) == {  # type: ignore[arg-type]
        1: ["site-all", "site-orders", "u10-orders"],
        2: ["site-all", "site-orders"],
        3: ["site-all", "u20-all"],
    }
    assert match_endpoints(events[:1], []) == {1: []}  # type: ignore[arg-type]


def test_rolled_back_events_are_not_listed() -> None:
    with capture_webhooks() as captured, transaction.atomic():
        kept = Order.objects.create(total="1")
        with pytest.raises(RuntimeError), transaction.atomic():
            Order.objects.create(total="2")
            raise RuntimeError("payment declined")
    assert [e.data["id"] for e in captured.events] == [kept.pk]


def test_events_with_a_payload_error_are_captured_with_it(monkeypatch: pytest.MonkeyPatch,
                                                          ) -> None:
    from webhooks.events.catalog import ModelEvents

    def broken(self: Any, instance: Any) -> Any:
        raise ValueError("no serializer for you")

    monkeypatch.setattr(ModelEvents, "serialize", broken)
    make_endpoint("https://site.example.com/hook")
    with capture_webhooks() as captured:
        Order.objects.create()
    (event,) = captured.events
    assert event.data is None and event.payload == ""
    assert "no serializer for you" in event.error
    assert "no serializer for you" in event.describe()


def test_a_test_event_goes_to_its_one_endpoint_and_no_task_is_queued(
    enqueued: list[Any], django_capture_on_commit_callbacks: Any,
) -> None:
    target = make_endpoint("https://one.example.com/hook", "order.created")
    make_endpoint("https://other.example.com/hook", "*")
    # The capture must still be active when the hooks run (documented): outermost here.
    with capture_webhooks() as captured, django_capture_on_commit_callbacks(execute=True) as \
            callbacks:
        send_test_event(target)
        retry_deliveries(Delivery.objects.all())
    assert len(callbacks) == 2  # both asked for a drain; neither reached django-q2
    (event,) = captured.events
    assert event.type == "webhook.test"
    assert event.endpoints == (target,)
    assert enqueued == []


# --- committed data and the patches ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_committed_data_is_captured_and_nothing_dispatched(enqueued: list[Any]) -> None:
    endpoint = make_endpoint("https://site.example.com/hook", "order.created")
    with capture_webhooks() as captured:
        Order.objects.create(total="5")  # autocommit: production would enqueue right here
        with transaction.atomic():
            Order.objects.create(total="6")
    assert enqueued == []
    nothing_left_behind()
    assert [e.data["total"] for e in captured.events] == ["5.00", "6.00"]
    assert Event.objects.undispatched().count() == 2  # the outbox rows stay, as documented
    captured.assert_sent("order.created", endpoint=endpoint, count=2)


@pytest.mark.django_db(transaction=True)
def test_dispatch_works_again_after_the_capture(enqueued: list[Any]) -> None:
    originals = dispatch.active_dispatcher()
    with capture_webhooks() as captured:
        assert dispatch.active_dispatcher() != originals
    assert dispatch.active_dispatcher() == originals
    Order.objects.create()
    assert enqueued == [("dispatch", ())]
    assert captured.events == []  # written after the capture ended


def test_the_patches_are_undone_when_the_code_under_test_raises() -> None:
    originals = dispatch.active_dispatcher()
    with pytest.raises(ZeroDivisionError), capture_webhooks():
        1 / 0  # noqa: B018
    assert dispatch.active_dispatcher() == originals


def test_captures_nest_and_each_sees_its_own_window(enqueued: list[Any]) -> None:
    originals = dispatch.active_dispatcher()
    with capture_webhooks() as outer:
        Order.objects.create(total="1")
        with capture_webhooks() as inner:
            Order.objects.create(total="2")
        assert dispatch.active_dispatcher() != originals  # outer still active
        Order.objects.create(total="3")
    assert [e.data["total"] for e in outer.events] == ["1.00", "2.00", "3.00"]
    assert [e.data["total"] for e in inner.events] == ["2.00"]
    assert dispatch.active_dispatcher() == originals
    assert enqueued == []


def test_clear_forgets_what_was_captured() -> None:
    with capture_webhooks() as captured:
        Order.objects.create()
        captured.clear()
        Order.objects.create(status="paid")
    assert [e.data["status"] for e in captured.events] == ["paid"]


# --- assertions ------------------------------------------------------------------------------


def test_assert_sent_filters_and_returns_the_matches() -> None:
    alice = make_user("alice")
    endpoint = make_endpoint("https://alice.example.com/hook", owner=alice)
    with capture_webhooks() as captured:
        order = Order.objects.create(customer=alice, total=Decimal("12.30"))
        Order.objects.create(total="1")
        webhooks.send_event("invoice.paid", {"invoice": {"number": 7, "lines": [1, 2]},
                                             "paid": True})

    (match,) = captured.assert_sent("order.created", owner=alice,
                                    data_contains={"total": Decimal("12.30")})
    assert match.data["id"] == order.pk
    assert captured.assert_sent("order.created", owner=alice.pk, endpoint=endpoint) == [match]
    (site_order,) = captured.assert_sent("order.created", owner=None)
    assert site_order.owner_id is None
    captured.assert_sent("order.created", count=2)
    captured.assert_sent("invoice.paid", data_contains={"invoice": {"number": 7}})
    captured.assert_sent("invoice.paid",
                         data={"invoice": {"number": 7, "lines": [1, 2]}, "paid": True})
    assert captured.of_type("order.created", "invoice.paid") == captured.events
    assert captured.for_endpoint(endpoint) == [match]
    captured.assert_not_sent("order.deleted")
    captured.assert_not_sent("invoice.paid", data_contains={"paid": False})
    captured.assert_not_sent("order.created", owner=make_user("bob"))


def test_assertion_messages_show_what_was_captured() -> None:
    alice = make_user("alice")
    endpoint = make_endpoint("https://site.example.com/hook")
    with capture_webhooks() as captured:
        Order.objects.create(customer=alice, total="3")
    with pytest.raises(AssertionError) as missing:
        captured.assert_sent("order.created", data_contains={"total": "4.00"})
    message = str(missing.value)
    assert "Expected at least one 'order.created' webhook with data_contains=" in message
    assert "found 0" in message
    assert "order.created evt_" in message and f"owner={alice.pk!r}" in message
    assert endpoint.public_id in message and '"total":"3.00"' not in message
    assert '"total": "3.00"' in message

    with pytest.raises(AssertionError, match=r"exactly 2 'order.created'.*found 1"):
        captured.assert_sent("order.created", count=2)
    with pytest.raises(AssertionError, match=re.escape("at least one 'order.created' "
                                                       "webhook with owner=None, found 0")):
        captured.assert_sent("order.created", owner=None)
    with pytest.raises(AssertionError, match=re.escape(f"Expected no 'order.created' "
                                                       f"webhook with owner={alice.pk!r}, "
                                                       "found 1")):
        captured.assert_not_sent("order.created", owner=alice)
    with pytest.raises(AssertionError, match="Expected no webhook, found 1"):
        captured.assert_not_sent()


def test_an_empty_capture_says_so() -> None:
    with capture_webhooks() as captured:
        pass
    with pytest.raises(AssertionError, match="No webhook was captured"):
        captured.assert_sent("order.created")
    captured.assert_not_sent()
    assert repr(captured) == "<CapturedWebhooks: 0 event(s) written>"


# --- as a decorator --------------------------------------------------------------------------


def test_as_a_function_decorator_with_a_keyword_argument(enqueued: list[Any]) -> None:
    seen: list[CapturedWebhooks] = []

    @capture_webhooks(kwarg_name="outbox")
    def checkout(*, outbox: CapturedWebhooks) -> None:
        Order.objects.create(total="9")
        seen.append(outbox)

    checkout()  # type: ignore[call-arg]
    checkout()  # type: ignore[call-arg]
    first, second = seen
    assert first is not second  # a fresh capture on every call
    assert len(first.events) == 1 and len(second.events) == 1
    assert first.events[0].pk != second.events[0].pk
    assert enqueued == []


@capture_webhooks(attr_name="webhooks")
class CaptureOnATestCase(TestCase):
    """A site's ``django.test.TestCase`` (on-commit hooks never run here)."""

    webhooks: CapturedWebhooks

    def test_the_capture_is_an_attribute(self) -> None:
        endpoint = make_endpoint("https://site.example.com/hook", "order.created")
        Order.objects.create(total="2")
        self.webhooks.assert_sent("order.created", data_contains={"total": "2.00"},
                                  endpoint=endpoint)
        self.assertFalse(DispatchToken.objects.exists())

    def test_each_test_gets_a_fresh_capture(self) -> None:
        self.webhooks.assert_not_sent()
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            Order.objects.create()
        self.assertEqual(callbacks, [])
        self.assertEqual(len(self.webhooks.of_type("order.created")), 1)


# --- the pytest plugin -----------------------------------------------------------------------


def test_the_fixture(webhooks_outbox: CapturedWebhooks, enqueued: list[Any]) -> None:
    endpoint = make_endpoint("https://site.example.com/hook", "invoice.paid")
    webhooks.send_event("invoice.paid", {"amount": "1.00"})
    webhooks_outbox.assert_sent("invoice.paid", data={"amount": "1.00"}, endpoint=endpoint)
    assert enqueued == []


def test_the_plugin_is_registered_as_a_pytest_entry_point() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    module = project["entry-points"]["pytest11"]["webhooks"]
    assert module == "webhooks.pytest_plugin"
    plugin = __import__(module, fromlist=["webhooks_outbox"])
    assert plugin.webhooks_outbox is webhooks_outbox


def test_a_site_test_suite_gets_the_fixture_without_configuration(tmp_path: Path) -> None:
    """A separate pytest run, with no conftest: the fixture comes from the installed entry
    point, or (package not installed, as in this checkout) from ``-p``, which is what the
    entry point does."""
    (tmp_path / "test_site.py").write_text(textwrap.dedent("""
        import pytest
        import webhooks
        from webhooks.models import Endpoint, Subscription

        @pytest.mark.django_db
        def test_checkout(webhooks_outbox):
            endpoint = Endpoint.objects.create(url="https://shop.example.com/hook")
            Subscription.objects.create(endpoint=endpoint, event_type="*")
            webhooks.send_event("invoice.paid", {"invoice": 1})
            webhooks_outbox.assert_sent("invoice.paid", endpoint=endpoint)
            webhooks_outbox.assert_not_sent("order.created")
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "tests.settings",
           "TEST_DB_SUFFIX": os.environ.get("TEST_DB_SUFFIX", "") + "_site"}
    installed = any(ep.value == "webhooks.pytest_plugin"
                    for ep in entry_points(group="pytest11"))
    load = [] if installed else ["-p", "webhooks.pytest_plugin"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *load, "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
