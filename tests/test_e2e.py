"""End to end: commits in this process, a real qcluster subprocess, a real loopback receiver.

The broker is django-q2's ORM broker on SQLite, or Redis when ``REDIS_URL`` is set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.db import transaction
from django_q.conf import Conf
from django_q.models import Schedule
from standardwebhooks import Webhook

import webhooks
from tests.cluster import Cluster, wait_until
from tests.helpers import make_endpoint, make_user
from tests.receiver import Receiver, Reply
from tests.testapp.models import Order
from webhooks.models import Delivery, DeliveryAttempt

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def cluster(async_broker: None) -> Iterator[Cluster]:
    # This process only enqueues; the subprocess does the work.
    with Cluster() as running:
        yield running


def test_model_changes_are_delivered_signed_by_a_real_cluster(
    cluster: Cluster, receiver: Receiver
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    mine = make_endpoint(receiver.url("/alice"), "order.created", "order.updated", owner=alice)
    make_endpoint(receiver.url("/bob"), "*", owner=bob)
    site = make_endpoint(receiver.url("/site"), "*")
    with transaction.atomic():
        orders = [Order.objects.create(customer=alice, total=f"{i}.00") for i in range(20)]
    orders[0].status = "paid"
    orders[0].save()
    received = receiver.wait_for(21, "/alice", timeout=60)
    receiver.wait_for(21, "/site", timeout=30)
    bodies = [Webhook(mine.secret).verify(r.body, r.headers) for r in received]
    assert sorted(b["data"]["id"] for b in bodies if b["type"] == "order.created") == \
        sorted(o.pk for o in orders)
    updated = [b for b in bodies if b["type"] == "order.updated"]
    assert len(updated) == 1 and updated[0]["data"]["status"] == "paid"
    for r in receiver.received("/site"):
        Webhook(site.secret).verify(r.body, r.headers)
    assert receiver.received("/bob") == []
    wait_until(lambda: Delivery.objects.filter(status="succeeded").count() == 42)
    assert DeliveryAttempt.objects.count() == 42


def test_failures_are_retried_by_the_cluster(cluster: Cluster, receiver: Receiver) -> None:
    receiver.script("/hook", Reply(503, headers={"Retry-After": "1"}), Reply(200))
    make_endpoint(receiver.url())
    event = webhooks.send_event("invoice.paid", {"invoice": 7})
    first = receiver.wait_for(1, timeout=30)[0]
    assert first.headers["webhook-id"] == event.public_id
    delivery = wait_until(lambda: Delivery.objects.filter(event=event, attempts=1,
                                                          claim_token=None).first())
    assert delivery.status == "pending"
    # Any drain picks up due retries (the sweep does every minute): here the next event's.
    wait_until(lambda: Delivery.objects.due().exists(), timeout=5)
    webhooks.send_event("ping.sent", {})
    wait_until(lambda: Delivery.objects.filter(event=event, status="succeeded").exists(),
               timeout=60)
    ids = [r.headers["webhook-id"] for r in receiver.received() if
           json.loads(r.body)["type"] == "invoice.paid"]
    assert ids == [event.public_id, event.public_id]


def test_migrate_sets_up_the_sweep_schedule() -> None:
    schedule = Schedule.objects.get(name="webhooks.sweep")
    assert schedule.func == "webhooks.tasks.sweep"
    assert schedule.schedule_type == Schedule.MINUTES
    assert schedule.repeats == -1


def test_two_clusters_never_send_the_same_delivery_twice(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    """Claims hold across processes: SKIP LOCKED on PostgreSQL, compare-and-set on SQLite."""
    monkeypatch.setattr(Conf, "SYNC", False)
    make_endpoint(receiver.url("/a"))
    make_endpoint(receiver.url("/b"))
    with transaction.atomic():  # a backlog first, so both clusters compete for it
        events = [webhooks.send_event("ping.sent", {"n": i}) for i in range(300)]
    with Cluster(WEBHOOKS_TEST_BATCH_SIZE="10"), Cluster(WEBHOOKS_TEST_BATCH_SIZE="10"):
        receiver.wait_for(600, timeout=90)
        wait_until(lambda: Delivery.objects.filter(status="succeeded").count() == 600)
    pairs = [(r.path, r.headers["webhook-id"]) for r in receiver.received()]
    assert len(pairs) == len(set(pairs)) == 600
    assert {p[1] for p in pairs} == {e.public_id for e in events}
    assert DeliveryAttempt.objects.count() == 600
