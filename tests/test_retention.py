"""Retention: per-status pruning in bounded batches, blanked responses, schedule, command."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from tests.factories import make_delivery, make_endpoint, make_event
from tests.helpers import override_webhooks, run_command
from webhooks import retention, tasks
from webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event

pytestmark = pytest.mark.django_db

HEADERS = {"content-type": "text/plain", "x-request-id": "abc"}


@pytest.fixture
def endpoint() -> Endpoint:
    return make_endpoint("https://example.com/hook")


def aged_delivery(endpoint: Endpoint, status: str, age: float, *, attempts: int = 1,
                  **options: Any) -> Delivery:
    """A delivery ``age`` days old whose ``attempts`` attempts stored a response (see
    :func:`tests.factories.make_delivery` for the options)."""
    return make_delivery(endpoint, status=status, age=age, attempts=attempts,
                         response_body="thanks", response_headers=HEADERS, **options)


def exists(obj: Any) -> bool:
    return type(obj).objects.filter(pk=obj.pk).exists()


@pytest.fixture
def statements() -> Iterator[list[tuple[str, str, int]]]:
    """Every DELETE and UPDATE run: (verb, table, rows it touched)."""
    seen: list[tuple[str, str, int]] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        match = re.match(r'\s*(DELETE FROM|UPDATE)\s+"?(\w+)"?', sql)
        if match:
            seen.append((match.group(1).split()[0], match.group(2),
                         context["cursor"].rowcount))
        return result

    with connection.execute_wrapper(wrapper):
        yield seen


@override_webhooks(RETENTION={"succeeded": 30, "failed": 90}, EVENT_RETENTION=30,
                   RESPONSE_RETENTION=None)
def test_each_status_is_kept_for_its_own_time_and_pending_forever(endpoint: Endpoint) -> None:
    old_success = aged_delivery(endpoint, "succeeded", 40)
    new_success = aged_delivery(endpoint, "succeeded", 10)
    old_failure = aged_delivery(endpoint, "failed", 40)
    older_failure = aged_delivery(endpoint, "failed", 100, attempts=3)
    retried_by_hand = aged_delivery(endpoint, "failed", 100, last_attempt=1)
    ancient_pending = aged_delivery(endpoint, "pending", 400, attempts=5)
    undispatched = make_event(age=400, dispatched=False)
    unmatched_old, unmatched_new = make_event(age=40), make_event(age=10)
    # An event goes only once all its deliveries have: this one keeps a pending one.
    shared = make_event(age=40)
    aged_delivery(endpoint, "succeeded", 40, event=shared)
    aged_delivery(make_endpoint("https://example.com/other"), "pending", 40, event=shared)

    planned = retention.estimate()
    result = retention.prune()

    assert result.complete
    assert result.counts == planned.counts == {
        "succeeded_deliveries": 2, "failed_deliveries": 1, "attempts": 5, "events": 3,
        "responses": 0,
    }
    for gone in (old_success, older_failure, old_success.event, older_failure.event,
                 unmatched_old):
        assert not exists(gone)
    for kept in (new_success, old_failure, retried_by_hand, ancient_pending, undispatched,
                 unmatched_new, shared, old_failure.event, ancient_pending.event):
        assert exists(kept)
    assert DeliveryAttempt.objects.filter(delivery=ancient_pending).count() == 5
    assert not DeliveryAttempt.objects.filter(delivery=older_failure).exists()
    assert retention.prune().total == 0  # nothing left to do


@override_webhooks(RETENTION={"failed": None}, EVENT_RETENTION=None)
def test_none_keeps_forever_and_unnamed_statuses_keep_their_default(endpoint: Endpoint) -> None:
    failure = aged_delivery(endpoint, "failed", 4000)
    success = aged_delivery(endpoint, "succeeded", 31)  # default: 30 days
    bare = make_event(age=4000)
    retention.prune()
    assert exists(failure) and exists(bare) and exists(success.event)
    assert not exists(success)


@override_webhooks(RESPONSE_RETENTION=7)
def test_old_responses_are_blanked_and_the_attempts_stay(endpoint: Endpoint) -> None:
    pending = aged_delivery(endpoint, "pending", 10, attempts=2)
    success = aged_delivery(endpoint, "succeeded", 8)
    recent = aged_delivery(endpoint, "succeeded", 3)
    assert retention.estimate().counts["responses"] == 3

    result = retention.prune()

    assert result.counts["responses"] == 3 and result.total == 3
    for delivery in (pending, success):
        for attempt in DeliveryAttempt.objects.filter(delivery=delivery):
            assert (attempt.response_body, attempt.response_headers) == ("", {})
            assert attempt.status_code == 200  # the rest of the record stays
    (kept,) = DeliveryAttempt.objects.filter(delivery=recent)
    assert (kept.response_body, kept.response_headers) == ("thanks", HEADERS)
    assert DeliveryAttempt.objects.count() == 4
    assert retention.prune().total == 0


@override_webhooks(PRUNE_BATCH_SIZE=10, RESPONSE_RETENTION=None)
def test_every_statement_touches_one_batch_at_most(
    endpoint: Endpoint, statements: list[tuple[str, str, int]],
) -> None:
    busy = aged_delivery(endpoint, "succeeded", 40, attempts=23)
    for _ in range(34):
        aged_delivery(endpoint, "succeeded", 40)

    result = retention.prune()

    assert not Delivery.objects.exists() and not Event.objects.exists()
    assert not DeliveryAttempt.objects.filter(delivery=busy).exists()
    assert result.counts["succeeded_deliveries"] == 35 and result.counts["attempts"] == 57
    by_table: dict[str, list[int]] = {}
    for verb, table, rows in statements:
        assert verb == "DELETE"
        by_table.setdefault(table, []).append(rows)
    assert by_table["webhooks_delivery"] == [10, 10, 10, 5]
    assert by_table["webhooks_event"] == [10, 10, 10, 5]
    # The busy delivery's 23 attempts were deleted 10 at a time, never all at once.
    assert sum(by_table["webhooks_deliveryattempt"]) == 57
    assert max(by_table["webhooks_deliveryattempt"]) == 10
    assert len(by_table["webhooks_deliveryattempt"]) >= 7
    assert result.batches == len(statements)


@override_webhooks(PRUNE_BATCH_SIZE=10, RESPONSE_RETENTION=7)
def test_blanking_is_batched_too(endpoint: Endpoint,
                                 statements: list[tuple[str, str, int]]) -> None:
    for _ in range(25):
        aged_delivery(endpoint, "pending", 8)
    retention.prune()
    assert statements == [("UPDATE", "webhooks_deliveryattempt", n) for n in (10, 10, 5)]


@override_webhooks(PRUNE_BATCH_SIZE=10)
def test_a_run_stops_at_its_time_budget_and_the_next_carries_on(endpoint: Endpoint) -> None:
    for _ in range(35):
        aged_delivery(endpoint, "succeeded", 40)
    clock = itertools.count().__next__  # one "second" per look at the clock

    first = retention.prune(time_limit=2.5, clock=clock)

    assert not first.complete
    assert first.counts["succeeded_deliveries"] == 20  # two batches, then out of time
    assert Delivery.objects.count() == 15 and Event.objects.count() == 35
    idle = retention.prune(time_limit=0)  # no time at all: nothing done
    assert not idle.complete and idle.total == 0 and Delivery.objects.count() == 15
    second = retention.prune()
    assert second.complete
    assert second.counts["succeeded_deliveries"] == 15 and second.counts["events"] == 35
    assert not Event.objects.exists()


def test_the_scheduled_task_prunes(endpoint: Endpoint) -> None:
    old = aged_delivery(endpoint, "succeeded", 40)
    tasks.prune()
    assert not exists(old) and not exists(old.event)


def test_nothing_pending_or_undispatched_is_ever_pruned(endpoint: Endpoint) -> None:
    pending = aged_delivery(endpoint, "pending", 1000, attempts=3)
    undispatched = make_event(age=1000, dispatched=False)
    everything = retention.Policy.older_than(timezone.now() + timedelta(days=1))
    result = retention.prune(everything)
    assert exists(pending) and exists(pending.event) and exists(undispatched)
    assert DeliveryAttempt.objects.filter(delivery=pending).count() == 3
    assert result.counts["responses"] == 3  # blanked, not deleted


def prune_schedule() -> Schedule | None:
    return Schedule.objects.filter(name=tasks.PRUNE_SCHEDULE_NAME).first()


@pytest.mark.django_db(transaction=True)
def test_migrate_sets_up_the_schedule_and_it_follows_the_setting() -> None:
    Schedule.objects.all().delete()
    call_command("migrate", verbosity=0)
    schedule = prune_schedule()
    assert schedule is not None
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        "webhooks.tasks.prune", Schedule.MINUTES, 60, -1)
    with override_webhooks(PRUNE_INTERVAL=15):
        tasks.ensure_schedule()
        tasks.ensure_schedule()
    assert Schedule.objects.filter(name=tasks.PRUNE_SCHEDULE_NAME).count() == 1
    assert prune_schedule().minutes == 15  # type: ignore[union-attr]
    for off in (None, 0):
        with override_webhooks(PRUNE_INTERVAL=off):
            call_command("migrate", verbosity=0)
        assert prune_schedule() is None
        assert Schedule.objects.filter(name=tasks.SWEEP_SCHEDULE_NAME).exists()
        tasks.ensure_schedule()  # back to the default
        assert prune_schedule() is not None


def prune_command(*args: str) -> str:
    return run_command("webhooks_prune", *args)


def test_the_command_counts_in_a_dry_run_and_changes_nothing(endpoint: Endpoint) -> None:
    aged_delivery(endpoint, "succeeded", 40, attempts=2)
    aged_delivery(endpoint, "failed", 40)
    aged_delivery(endpoint, "pending", 20)
    out = prune_command("--dry-run")
    assert "succeeded deliveries: 1\n" in out and "failed deliveries: 0\n" in out
    assert "attempts: 2\n" in out and "events: 1\n" in out
    assert "responses to blank: 2\n" in out  # pending 20 days and failed 40 days
    assert "Dry run" in out
    assert Delivery.objects.count() == 3 and DeliveryAttempt.objects.count() == 4
    assert "failed deliveries: 1\n" in prune_command("--dry-run", "--older-than", "30d")


def test_the_command_prunes_with_progress(endpoint: Endpoint) -> None:
    for _ in range(3):
        aged_delivery(endpoint, "succeeded", 40)
    failed = aged_delivery(endpoint, "failed", 40)
    out = prune_command("--batch-size", "2")
    assert "succeeded deliveries [" in out and "3/3" in out and "events [" in out
    assert ("Pruned 3 deliveries (3 succeeded, 0 failed), 3 attempts, 3 events; "
            "1 responses blanked") in out
    assert exists(failed)
    out = prune_command("--older-than", "30d")  # every status
    assert "Pruned 1 deliveries (0 succeeded, 1 failed), 1 attempts, 1 events" in out
    assert not Delivery.objects.exists()
    assert "Stopped at the time limit" in prune_command("--older-than", "1s", "--time-limit", "0")
    with pytest.raises(CommandError, match="batch-size"):
        prune_command("--batch-size", "0")


@override_webhooks(RETENTION={"succeeded": None, "failed": None}, EVENT_RETENTION=None,
                   RESPONSE_RETENTION=None)
def test_the_command_says_when_retention_is_off() -> None:
    assert "Retention is off" in prune_command()
