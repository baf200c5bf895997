"""The delivery loop's queries read the partial indexes meant for them (PostgreSQL's EXPLAIN),
also when the statistics say, after a long history of finished deliveries, that almost nothing
is pending: a claim must not read and sort the whole backlog."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import make_delivery, make_due, make_endpoint, publish
from webhooks.delivery.claims import claim
from webhooks.delivery.loop import next_attempt_time
from webhooks.models import Delivery

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner"),
]


def plan_of(sql: str) -> str:
    with connection.cursor() as cursor:
        # The tables are tiny: without this a sequential scan wins whatever the indexes.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql)
        return " ".join(str(row[0]) for row in cursor.fetchall())


@pytest.fixture
def history_then_backlog() -> Any:
    """Finished deliveries, analyzed (the statistics: nothing pending), then a backlog."""
    endpoint = make_endpoint("http://127.0.0.1:9/hook", "invoice.paid")
    for _ in range(30):
        make_delivery(endpoint, status="succeeded", age=20, attempts=1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE webhooks_delivery")
    publish("invoice.paid", count=5)
    make_due()
    return endpoint


def test_a_claim_reads_the_due_index_not_the_status_index(history_then_backlog: Any) -> None:
    with CaptureQueriesContext(connection) as queries:
        batch = claim()
    assert len(batch.deliveries) == 5
    reads = [q["sql"] for q in queries.captured_queries
             if q["sql"].startswith("SELECT") and 'FROM "webhooks_delivery"' in q["sql"]]
    # The candidates (FOR UPDATE SKIP LOCKED), with every column: a claim that takes all the
    # rows it chose reads them once.
    assert len(reads) == 1
    for sql in reads:
        plan = plan_of(sql)
        assert "webhooks_delivery_status" not in plan, plan
        assert "webhooks_delivery_due" in plan or "webhooks_delivery_inflight" in plan, plan


def test_the_next_wake_up_reads_the_due_index(history_then_backlog: Any) -> None:
    with CaptureQueriesContext(connection) as queries:
        assert next_attempt_time() is not None
    (query,) = queries.captured_queries
    assert "webhooks_delivery_due" in plan_of(query["sql"])


def test_finished_deliveries_by_status_still_have_their_index() -> None:
    """The admin's lists and retention read finished deliveries by status, newest or oldest
    first: the partial ``(status, created_at)`` index (it leaves out pending rows only)."""
    for status in ("succeeded", "failed"):
        sql = str(Delivery.objects.filter(status=status).order_by("-created_at")[:100].query)
        sql = sql.replace(f"= {status}", f"= '{status}'")
        assert "webhooks_delivery_status" in plan_of(sql)
