"""The webhooks_* management commands."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.management.base import CommandError
from django.utils import timezone

import webhooks
from tests.factories import make_delivery, make_endpoint
from tests.helpers import run_command
from tests.receiver import Receiver, Reply
from webhooks.delivery.fanout import fan_out
from webhooks.delivery.loop import drain
from webhooks.management.commands._util import parse_when, progress
from webhooks.models import Delivery, DeliveryAttempt, Event

pytestmark = pytest.mark.django_db


def test_parse_when() -> None:
    assert abs((timezone.now() - parse_when("2h")).total_seconds() - 7200) < 5
    assert parse_when("2026-01-02T03:04:05").tzinfo is not None
    with pytest.raises(CommandError):
        parse_when("yesterday")
    assert progress(5, 10, width=10) == "[#####.....] 5/10"


def test_deliver_drains_in_the_foreground(receiver: Receiver, enqueued: list[Any]) -> None:
    make_endpoint(receiver.url())
    for _ in range(3):
        webhooks.send_event("invoice.paid", {})
    receiver.script("/hook", Reply(200), Reply(200), Reply(500))
    out = run_command("webhooks_deliver")
    assert "events dispatched: 3" in out and "succeeded: 2" in out and "retrying: 1" in out
    assert len(receiver.received()) == 3


@pytest.mark.django_db(transaction=True)
def test_send_test_waits_for_the_outcome(receiver: Receiver) -> None:
    endpoint = make_endpoint(receiver.url())
    out = run_command("webhooks_send_test", endpoint.public_id, "--wait", "5")
    assert "Queued test event evt_" in out and "HTTP 200" in out
    receiver.script("/hook", Reply(503))
    with pytest.raises(CommandError, match="http_status"):
        run_command("webhooks_send_test", str(endpoint.pk), "--wait", "5")  # its UUID works too
    for wrong in ("not-an-id", make_delivery(endpoint).public_id, "ep_" + "Z" * 26):
        with pytest.raises(CommandError, match=r"No endpoint with id .* \(ids look like ep_"):
            run_command("webhooks_send_test", wrong)


def test_stats_reports_health_and_the_oldest_due_delivery(receiver: Receiver) -> None:
    endpoint = make_endpoint(receiver.url())
    receiver.script("/hook", Reply(200), Reply(500))
    for _ in range(2):
        webhooks.send_event("invoice.paid", {})
    fan_out()
    drain()
    Delivery.objects.filter(status="pending").update(
        next_attempt_at=timezone.now() - timedelta(seconds=90))
    data = json.loads(run_command("webhooks_stats", "--json"))
    (row,) = data["endpoints"]
    assert row["endpoint"] == endpoint.public_id
    assert (row["attempts"], row["success_rate"], row["pending"]) == (2, 0.5, 1)
    assert row["median_latency_ms"] is not None
    assert 89 <= data["summary"]["oldest_due_seconds"] < 120
    text = run_command("webhooks_stats")
    assert "50.0" in text and "oldest due delivery: 9" in text


def test_replay_by_status_type_and_range(receiver: Receiver) -> None:
    endpoint = make_endpoint(receiver.url())
    receiver.script("/hook", *[Reply(410)])
    webhooks.send_event("invoice.paid", {})
    webhooks.send_event("ping.sent", {})
    fan_out()
    drain()  # the first gets 410: endpoint disabled, both deliveries failed
    assert Delivery.objects.filter(status="failed").count() == 2
    out = run_command("webhooks_replay", "--endpoint", endpoint.public_id, "--since", "1h",
              "--event-type", "ping.sent", "--dry-run")
    assert "1 delivery would be sent again" in out
    out = run_command("webhooks_replay", "--endpoint", str(endpoint.pk), "--since", "1h")
    assert "2 deliveries are due again" in out
    assert Delivery.objects.due().count() == 2
    with pytest.raises(CommandError, match="at most"):
        run_command("webhooks_replay", "--endpoint", str(endpoint.pk), "--since", "30d", "--missed")


def test_prune_deletes_old_finished_events_only(receiver: Receiver) -> None:
    make_endpoint(receiver.url())
    receiver.script("/hook", Reply(200), Reply(200), Reply(500))
    for _ in range(3):
        webhooks.send_event("invoice.paid", {})
    fan_out()
    drain()  # two succeeded, one pending a retry
    old = timezone.now() - timedelta(days=40)
    Event.objects.update(created_at=old)
    Delivery.objects.update(created_at=old, last_attempt_at=old)
    webhooks.send_event("invoice.paid", {"recent": True})
    fan_out()
    assert "events: 2\n" in run_command("webhooks_prune", "--dry-run")
    out = run_command("webhooks_prune", "--older-than", "30d", "--batch-size", "1")
    assert "2 deliveries (2 succeeded, 0 failed), 2 attempts, 2 events" in out and "2/2" in out
    assert Event.objects.count() == 2  # the pending one and the recent one stay
    assert DeliveryAttempt.objects.count() == 1


def test_dry_runs_change_nothing(receiver: Receiver) -> None:
    endpoint = make_endpoint(receiver.url())
    webhooks.send_event("invoice.paid", {})
    assert "1 event to dispatch, 0 deliveries due" in run_command("webhooks_deliver", "--dry-run")
    out = run_command("webhooks_send_test", str(endpoint.pk), "--dry-run")
    assert "Would POST a webhook.test event" in out and "signed with 1 secret." in out
    assert Event.objects.count() == 1 and not Delivery.objects.exists()
    assert receiver.received() == []
    bad = make_endpoint("http://10.0.0.5/hook")
    with pytest.raises(CommandError, match="private, loopback or reserved"):
        run_command("webhooks_send_test", str(bad.pk), "--dry-run")
