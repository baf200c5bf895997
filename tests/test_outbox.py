"""Events are written in the caller's transaction and dispatched only after it commits."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.core import serializers as django_serializers
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import webhooks
from tests.helpers import make_endpoint, make_user, override_webhooks
from tests.testapp.models import LineItem, Note, Order, Product
from tests.testapp.serializers import Opaque
from webhooks.delivery.fanout import fan_out
from webhooks.exceptions import PayloadError, UnknownEventType
from webhooks.models import Delivery, DispatchToken, Event, ObjectSequence

pytestmark = pytest.mark.django_db


def test_a_save_writes_one_event_and_enqueues_nothing_before_commit(
    django_capture_on_commit_callbacks: Any, enqueued: list[Any]
) -> None:
    user = make_user()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        order = Order.objects.create(customer=user, total="12.30")
        assert enqueued == []
        (event,) = Event.objects.all()
    assert len(callbacks) == 1
    assert event.type == "order.created"
    assert event.owner_id == user.pk
    assert event.dispatched_at is None
    assert event.data["id"] == order.pk
    assert event.data["total"] == "12.30"
    assert enqueued == [("dispatch", ())]


def test_rolled_back_changes_emit_nothing(
    django_capture_on_commit_callbacks: Any, enqueued: list[Any]
) -> None:
    with (django_capture_on_commit_callbacks(execute=True) as callbacks,
          pytest.raises(RuntimeError), transaction.atomic()):
        Order.objects.create(total="1")
        raise RuntimeError("checkout failed")
    assert not Event.objects.exists()
    assert callbacks == []
    assert enqueued == []


def test_one_transaction_enqueues_one_task_for_all_its_events(
    django_capture_on_commit_callbacks: Any, enqueued: list[Any]
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        for _ in range(100):
            Order.objects.create(total="1")
    assert len(callbacks) == 1
    assert enqueued == [("dispatch", ())]
    assert Event.objects.undispatched().count() == 100


def test_a_rolled_back_savepoint_drops_its_events_and_later_ones_still_go(
    django_capture_on_commit_callbacks: Any, enqueued: list[Any]
) -> None:
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        before = Order.objects.create(total="1")
        with pytest.raises(RuntimeError), transaction.atomic():
            Order.objects.create(total="2")
            raise RuntimeError
        after = Order.objects.create(total="3")
    kept = sorted(e.data["id"] for e in Event.objects.all())
    assert kept == [before.pk, after.pk]
    assert enqueued == [("dispatch", ())]


def test_fixture_loading_emits_nothing(enqueued: list[Any]) -> None:
    product = Product(pk=7, name="Fixture", price="1.00")
    data = django_serializers.serialize("json", [product])
    for obj in django_serializers.deserialize("json", data):
        obj.save()  # raw=True, as loaddata does
    assert Product.objects.filter(pk=7).exists()
    assert not Event.objects.exists()


def test_models_not_declared_emit_nothing() -> None:
    Note.objects.create(text="hello")
    assert not Event.objects.exists()


def test_update_and_delete_events(django_capture_on_commit_callbacks: Any,
                                  enqueued: list[Any]) -> None:
    order = Order.objects.create(total="1")
    order.status = "paid"
    order.save()
    pk = order.pk
    order.delete()
    types = list(Event.objects.order_by("created_at").values_list("type", flat=True))
    assert types == ["order.created", "order.updated", "order.deleted"]
    deleted = Event.objects.get(type="order.deleted")
    assert deleted.data["id"] == pk
    assert Event.objects.get(type="order.updated").data["status"] == "paid"


def test_configured_actions_only() -> None:
    product = Product.objects.create(name="A", price="2.50")
    product.name = "B"
    product.save()
    product.delete()
    assert list(Event.objects.values_list("type", flat=True)) == ["product.created"]


def test_configured_serializer_shapes_data() -> None:
    product = Product.objects.create(name="A", price="2.50")
    assert Event.objects.get().data == {"id": product.pk, "name": "A", "price": "2.50"}


def test_owner_path_over_two_hops() -> None:
    user = make_user()
    order = Order.objects.create(customer=user)
    product = Product.objects.create(name="A")
    LineItem.objects.create(order=order, product=product)
    assert Event.objects.get(type="line_item.created").owner_id == user.pk


def test_no_owner_means_site_wide() -> None:
    Order.objects.create(customer=None)
    assert Event.objects.get().owner_id is None


def test_the_cost_of_a_save_does_not_grow_with_subscribers(
    django_capture_on_commit_callbacks: Any, enqueued: list[Any]
) -> None:
    def queries_for_one_save() -> int:
        DispatchToken.objects.all().delete()  # as if the queued dispatch had started
        with (django_capture_on_commit_callbacks(execute=True),
              CaptureQueriesContext(connection) as ctx, transaction.atomic()):
            Order.objects.create(total="1")
        return len(ctx.captured_queries)

    queries_for_one_save()  # once per process: PostgreSQL's outbox looks up its function
    alone = queries_for_one_save()
    for i in range(50):
        make_endpoint(f"https://example.com/{i}", "order.created")
    assert queries_for_one_save() == alone
    assert enqueued == [("dispatch", ())] * 3
    # savepoint, order insert, event insert (with its sequence number on PostgreSQL; drawn by
    # a statement of its own elsewhere, where the dispatch token is also taken before the
    # commit, not after), release
    assert alone <= (4 if connection.vendor == "postgresql" else 6)


@override_webhooks(MODELS={"testapp.Product": {
    "serializer": "tests.testapp.serializers.BrokenSerializer"}})
def test_unserializable_field_keeps_the_event_with_a_clear_error() -> None:
    endpoint = make_endpoint("https://example.com/h", "product.created")
    product = Product.objects.create(name="A")  # must not raise
    event = Event.objects.get()
    assert product.pk
    assert event.payload == ""
    assert "not JSON-serializable" in event.error
    assert "Opaque" in event.error
    fan_out([str(event.id)])
    delivery = Delivery.objects.get(endpoint=endpoint)
    assert delivery.status == "failed"
    assert delivery.last_error.startswith("payload_error:")
    assert delivery.next_attempt_at is None


@override_webhooks(MODELS={"testapp.Product": {
    "serializer": "tests.testapp.serializers.RaisingSerializer"}})
def test_a_serializer_that_raises_does_not_break_the_save() -> None:
    Product.objects.create(name="A")
    assert Event.objects.get().error == "RuntimeError: the serializer exploded"


def test_send_event_records_a_custom_event(django_capture_on_commit_callbacks: Any,
                                           enqueued: list[Any]) -> None:
    user = make_user()
    with django_capture_on_commit_callbacks(execute=True):
        event = webhooks.send_event("invoice.paid", {"invoice": 42, "amount": "9.99"},
                                    owner=user)
    assert event.owner_id == user.pk
    body = json.loads(event.payload)
    assert body["id"] == event.public_id
    assert body["type"] == "invoice.paid"
    assert body["timestamp"].endswith("Z")
    assert body["data"] == {"invoice": 42, "amount": "9.99"}
    assert enqueued == [("dispatch", ())]


def test_commits_share_one_queued_dispatch_until_it_starts(
    django_capture_on_commit_callbacks: Any, enqueued: list[Any]
) -> None:
    from webhooks import tasks

    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            Order.objects.create(total="1")
    assert enqueued == [("dispatch", ())]  # one task is queued: the others rely on it
    assert DispatchToken.objects.count() == 1
    tasks.dispatch()  # the task starts: it gives the token back, then fans out
    assert DispatchToken.objects.count() == 0
    assert not Event.objects.undispatched().exists()
    with django_capture_on_commit_callbacks(execute=True):
        Order.objects.create(total="1")
    assert enqueued == [("dispatch", ()), ("dispatch", ())]


def test_send_event_rejects_unknown_types_and_bad_data() -> None:
    with pytest.raises(UnknownEventType, match="not in the event catalog"):
        webhooks.send_event("invoice.lost", {})
    with pytest.raises(PayloadError, match="not JSON-serializable"):
        webhooks.send_event("invoice.paid", {"x": object()})
    with pytest.raises(PayloadError):
        webhooks.send_event("invoice.paid", {"x": float("nan")})
    assert not Event.objects.exists()


def test_broker_failure_after_commit_is_not_the_callers_problem(
    django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr("webhooks.tasks.enqueue", broken)
    with django_capture_on_commit_callbacks(execute=True):
        Order.objects.create(total="1")
    assert Event.objects.undispatched().count() == 1  # the sweep will find it
    # No token is left behind: the next commit tries the broker again.
    assert not DispatchToken.objects.exists()


def test_the_dispatch_token_is_taken_in_the_transaction_on_sqlite_only(
    django_capture_on_commit_callbacks: Any, enqueued: list[Any]
) -> None:
    """SQLite has one writer at a time: the token goes in with the events (no write of its own
    after the commit). Elsewhere it is taken after the commit, so that concurrent
    transactions never wait for each other on it."""
    in_transaction = connection.vendor == "sqlite"
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            Order.objects.create(total="1")
            assert DispatchToken.objects.exists() is in_transaction
            raise RuntimeError("rolled back")
        assert not DispatchToken.objects.exists()  # rolled back with the events
        with transaction.atomic():
            Order.objects.create(total="1")
            assert DispatchToken.objects.exists() is in_transaction
    assert DispatchToken.objects.count() == 1
    assert enqueued == [("dispatch", ())]


def test_event_statements_show_up_where_the_callers_do() -> None:
    """The outbox keeps a cursor between events; queries logged while it is kept (a test's
    CaptureQueriesContext, DEBUG) still list the event's INSERT."""
    Order.objects.create(total="1")  # the cursor is made while nothing logs
    with CaptureQueriesContext(connection) as ctx:
        Order.objects.create(total="2")
    # The INSERT, or on PostgreSQL the call of webhooks_insert_event (migration 0014).
    assert any("webhooks_event" in q["sql"] or "webhooks_insert_event" in q["sql"]
               for q in ctx.captured_queries)
    Order.objects.create(total="3")  # and after: a new one, not logging
    assert Event.objects.count() == 3


def test_a_tool_that_wraps_cursors_sees_the_event_statements(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """django-debug-toolbar and the like replace ``connection.cursor`` on the connection."""
    Order.objects.create(total="1")  # a cursor is kept before the tool wraps the connection
    seen: list[str] = []
    plain_cursor = connection.cursor

    class Recording:
        def __init__(self, cursor: Any) -> None:
            self.cursor = cursor

        def execute(self, sql: str, params: Any = None) -> Any:
            seen.append(sql)
            return self.cursor.execute(sql, params)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.cursor, name)

    monkeypatch.setattr(connection, "cursor", lambda: Recording(plain_cursor()))
    webhooks.send_event("ping.sent", {})
    assert any("webhooks_event" in sql for sql in seen)


@pytest.mark.parametrize("model", [Order, LineItem, Product, "auth.User"])
def test_the_default_serializer_writes_what_a_plain_model_serializer_writes(
    model: Any,
) -> None:
    from django.apps import apps
    from rest_framework import serializers

    from webhooks.events.catalog import default_serializer_for

    user = make_user()
    order = Order.objects.create(customer=user, total="12.30")
    instances = {
        Order: [order, Order.objects.create(customer=None),
                Order.objects.only("id", "status").get(pk=order.pk)],  # deferred columns
        LineItem: [LineItem.objects.create(order=order, product=Product.objects.create(
            name="Pen", price="2.50"), quantity=3)],
        Product: [Product.objects.create(name="Cup")],
        "auth.User": [user],  # many-to-many fields, a password, booleans
    }[model]
    model = apps.get_model(model) if isinstance(model, str) else model
    meta = type("Meta", (), {"model": model, "fields": "__all__"})
    plain = type("Plain", (serializers.ModelSerializer,), {"Meta": meta})()
    ours = default_serializer_for(model)()
    for instance in instances:
        expected = plain.to_representation(instance)
        assert ours.to_representation(instance) == expected
        assert list(ours.to_representation(instance)) == list(expected)


def test_a_stale_dispatch_token_is_taken_over(django_capture_on_commit_callbacks: Any,
                                               enqueued: list[Any]) -> None:
    """A token whose task was lost (worker killed, database down when it started) does not
    hold commits back until the sweep: one older than TASK_TIME_LIMIT is taken over."""
    with django_capture_on_commit_callbacks(execute=True):
        Order.objects.create(total="1")
    assert enqueued == [("dispatch", ())]
    with django_capture_on_commit_callbacks(execute=True):
        Order.objects.create(total="2")
    assert len(enqueued) == 1  # the token is fresh: its task will see this event too
    DispatchToken.objects.update(created_at=timezone.now() - timedelta(seconds=11))
    with django_capture_on_commit_callbacks(execute=True):
        Order.objects.create(total="3")
    assert len(enqueued) == 2  # stale (TASK_TIME_LIMIT is 5 s here): taken over, enqueued
    token = DispatchToken.objects.get()
    assert (timezone.now() - token.created_at).total_seconds() < 5
    assert DispatchToken.take("default") is False  # and fresh again


# --- errors a user can act on (issue 15) --------------------------------------------------------


@pytest.mark.parametrize("data,where,why", [
    ({"items": [{"price": 1}, {"price": 2}, {"price": Opaque()}]}, 'data["items"][2]["price"]',
     "Object of type Opaque is not JSON serializable"),
    ({"total": float("nan")}, 'data["total"]', "Out of range float values"),
    ({"a": {("x", 1): 1}}, 'data["a"]', "keys must be str, int, float, bool or None"),
    ({"tags": ({"é": {1, 2}},)}, 'data["tags"][0]["é"]', "Object of type set"),
])
def test_payload_errors_name_the_key_path(data: Any, where: str, why: str) -> None:
    with pytest.raises(PayloadError) as caught:
        webhooks.send_event("invoice.paid", data)
    assert f"{where}: {why}" in str(caught.value)
    assert caught.value.path == where
    assert not Event.objects.exists()


def test_a_payload_that_holds_itself_is_an_error_with_its_path() -> None:
    loop: dict[str, Any] = {"id": 1}
    loop["children"] = [loop]
    with pytest.raises(PayloadError, match=r'data\["children"\]\[0\]: circular reference'):
        webhooks.send_event("invoice.paid", loop)


@pytest.mark.parametrize("data", [[1, 2], "paid", 42, 1.5, True, None, ("a", "b")])
def test_send_event_data_must_be_a_json_object(data: Any) -> None:
    with pytest.raises(PayloadError, match="must be a JSON object") as caught:
        webhooks.send_event("invoice.paid", data)
    assert type(data).__name__ in str(caught.value)
    assert not Event.objects.exists()


@override_webhooks(MODELS={"testapp.Product": {
    "serializer": "tests.testapp.serializers.BrokenSerializer"}})
def test_a_model_event_error_names_the_field() -> None:
    Product.objects.create(name="A")  # must not raise
    assert 'data["extra"]: Object of type Opaque is not JSON serializable' in (
        Event.objects.get().error)


# --- what a commit costs: the dispatch token and the task (issue 16) -----------------------------


@pytest.mark.django_db(transaction=True)
def test_with_the_orm_broker_the_task_row_commits_with_the_events_on_sqlite(
    async_broker: None,
) -> None:
    """SQLite + django-q2's ORM broker on the same database: the token and the task row are
    written in the saving transaction, so the commit is the only write transaction; a rollback
    takes all three back."""
    from django_q.conf import Conf
    from django_q.models import OrmQ

    if connection.vendor != "sqlite" or Conf.ORM != "default":
        pytest.skip("SQLite with the ORM broker only")
    with pytest.raises(RuntimeError), transaction.atomic():
        Order.objects.create(total="1")
        assert OrmQ.objects.count() == 1  # in the transaction, before the commit
        raise RuntimeError("rolled back")
    assert not OrmQ.objects.exists() and not DispatchToken.objects.exists()
    assert not Event.objects.exists()
    with transaction.atomic():
        Order.objects.create(total="1")
        Order.objects.create(total="2")
    assert OrmQ.objects.count() == 1 and DispatchToken.objects.count() == 1
    Order.objects.create(total="3")  # autocommit: the pending dispatch will see it
    assert OrmQ.objects.count() == 1
    DispatchToken.objects.all().delete()  # as if the task had started
    Order.objects.create(total="4")  # autocommit too: event, token and task in one transaction
    assert OrmQ.objects.count() == 2 and DispatchToken.objects.count() == 1
    assert Event.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_autocommit_writes_the_event_in_one_transaction(
    enqueued: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a transaction the counter, the event (and on SQLite the token) go in together:
    a failure in the middle leaves none of them, and the dispatch is asked for once it
    committed."""
    from webhooks import dispatch

    Order.objects.create(total="1")
    assert Event.objects.get().sequence == 1
    assert enqueued == [("dispatch", ())]

    def refused(using: str) -> None:
        raise DatabaseError("the disk is full")

    monkeypatch.setattr(dispatch.TASK_QUEUE, "schedule", refused)
    with pytest.raises(DatabaseError):
        webhooks.send_event("ping.sent", {}, sequence_key="k")
    assert Event.objects.count() == 1  # the event and its counter went back together
    assert not ObjectSequence.objects.filter(key="k").exists()


def _redis_broker() -> Any:
    from django_q.conf import Conf

    if not Conf.REDIS:
        pytest.skip("the Redis broker is not in use (set REDIS_URL)")


@pytest.mark.django_db(transaction=True)
def test_with_the_redis_broker_the_token_is_a_key_in_redis(async_broker: None,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            ) -> None:
    """PostgreSQL + Redis: no database write after the commit; the token is ``SET NX PX`` in
    Redis, one round trip, and it expires after TASK_TIME_LIMIT like a stale database token."""
    from webhooks import tasks

    _redis_broker()
    pushed: list[str] = []
    monkeypatch.setattr(tasks, "enqueue", lambda task, *args: pushed.append(task))
    queue = tasks._redis_queue(None)
    assert queue is not None
    client, key = queue
    assert key.startswith("django_q:") and key.endswith(tasks.QUEUE_TOKEN_SUFFIX)
    if connection.vendor == "sqlite":
        pytest.skip("on SQLite the token is taken in the transaction, in the database")
    with transaction.atomic():
        Order.objects.create(total="1")
    Order.objects.create(total="2")
    assert pushed == ["dispatch"]  # the second commit found the token held
    assert not DispatchToken.objects.exists()
    ttl = client.pttl(key)
    assert 0 < ttl <= 5000  # TASK_TIME_LIMIT is 5 s in the test settings
    tasks.release_queue_token()  # what a dispatch task does first
    Order.objects.create(total="3")
    assert pushed == ["dispatch", "dispatch"]
    client.delete(key)


@pytest.mark.django_db(transaction=True)
def test_a_failed_enqueue_gives_the_redis_token_back(async_broker: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from webhooks import tasks

    _redis_broker()
    if connection.vendor == "sqlite":
        pytest.skip("on SQLite the token is taken in the transaction, in the database")

    def broken(*args: Any) -> None:
        raise ConnectionError("the broker refused the task")

    monkeypatch.setattr(tasks, "enqueue", broken)
    Order.objects.create(total="1")
    assert tasks.take_queue_token() is True  # given back: the next commit tries again
    tasks.release_queue_token()
    assert Event.objects.undispatched().count() == 1  # the sweep's, if no commit follows


def test_the_task_package_is_the_one_django_q2_would_queue(monkeypatch: pytest.MonkeyPatch,
                                                           ) -> None:
    """``tasks._package`` skips ``async_task`` (and its log line per task) on the commit path:
    what it queues must be what ``async_task`` queues, member for member."""
    from django_q.conf import Conf
    from django_q.signals import pre_enqueue
    from django_q.signing import SignedPackage
    from django_q.tasks import async_task

    from webhooks import tasks

    monkeypatch.setattr(Conf, "SYNC", False)
    pushed: list[str] = []

    class Broker:
        list_key = "test"

        def enqueue(self, package: str) -> int:
            pushed.append(package)
            return 1

    options = {**tasks._task_options("dispatch"), "broker": Broker()}
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
        seen.append(dict(task))

    pre_enqueue.connect(receiver, weak=False)
    try:
        async_task("webhooks.tasks.dispatch", q_options=dict(options))
        ours = SignedPackage.loads(tasks._package("dispatch", (), options))
    finally:
        pre_enqueue.disconnect(receiver)
    theirs = SignedPackage.loads(pushed[0])
    assert len(seen) == 2  # both announce the task
    assert set(ours) == set(theirs)
    for key in set(theirs) - {"id", "started"}:
        assert ours[key] == theirs[key], key


def test_the_outbox_statements_raise_djangos_errors() -> None:
    """Straight to the driver, but a failing statement still raises Django's exception (and
    the transaction is still Django's to roll back)."""
    from django.db import IntegrityError

    from webhooks.cursors import run

    sql = "INSERT INTO webhooks_objectsequence (key, value) VALUES (%s, 1)"
    run(connection, sql, ["twice"])
    with pytest.raises(IntegrityError), transaction.atomic():
        run(connection, sql, ["twice"])
    assert ObjectSequence.objects.get(key="twice").value == 1


def _prepared_event_statements() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements "
                       "WHERE statement LIKE '%%webhooks%%event%%'")
        return int(cursor.fetchone()[0])


def test_postgresql_plans_the_event_insert_once_per_connection(
    postgres: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the site enabled prepared statements (``OPTIONS["prepare_threshold"]``; Django
    leaves them off by default), the server parses and plans the outbox's INSERT once per
    connection, not once per event."""
    connection.ensure_connection()
    monkeypatch.setattr(connection.connection, "prepare_threshold", 5)
    connection._webhooks_prepared = None  # type: ignore[attr-defined]  # a cache
    for _ in range(3):
        Order.objects.create(total="1")
    assert _prepared_event_statements() >= 1
    assert Event.objects.count() == 3
    connection._webhooks_prepared = None  # type: ignore[attr-defined]  # the next tests' own


def test_no_prepared_statements_behind_a_transaction_pooler(
    postgres: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A site behind PgBouncer in transaction mode sets DISABLE_SERVER_SIDE_CURSORS (or
    ``prepare_threshold: None``): a prepared statement would not survive there."""
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    monkeypatch.setattr(connection.connection, "prepare_threshold", 5)
    monkeypatch.setitem(connection.settings_dict, "DISABLE_SERVER_SIDE_CURSORS", True)
    connection._webhooks_prepared = None  # type: ignore[attr-defined]  # a cache
    for _ in range(8):  # more than the prepare_threshold
        Order.objects.create(total="1")
    assert _prepared_event_statements() == 0
    assert Event.objects.count() == 8
    # And by default (Django's prepare_threshold None), none either.
    monkeypatch.setattr(connection.connection, "prepare_threshold", None)
    monkeypatch.delitem(connection.settings_dict, "DISABLE_SERVER_SIDE_CURSORS")
    connection._webhooks_prepared = None  # type: ignore[attr-defined]  # a cache
    Order.objects.create(total="1")
    assert _prepared_event_statements() == 0


@pytest.mark.parametrize("function", [True, False])
def test_postgresql_draws_the_number_through_the_function_or_the_statement(
    postgres: None, monkeypatch: pytest.MonkeyPatch, function: bool
) -> None:
    """Migration 0014's ``webhooks_insert_event`` (plans kept per session) and the ``WITH …
    INSERT`` the outbox falls back to (a database set up without migrations) write the same
    rows."""
    from webhooks import outbox

    monkeypatch.setitem(outbox._FUNCTION_EXISTS, connection.alias, function)
    with CaptureQueriesContext(connection) as ctx:
        first = webhooks.send_event("invoice.paid", {"n": 1}, sequence_key="inv:1")
    webhooks.send_event("invoice.paid", {"n": 2}, sequence_key="inv:1")
    sql = " ".join(q["sql"] for q in ctx.captured_queries)
    assert ("webhooks_insert_event" in sql) is function
    events = list(Event.objects.order_by("sequence"))
    assert [e.sequence for e in events] == [1, 2]
    assert [json.loads(e.payload)["sequence"] for e in events] == [1, 2]
    assert events[0].payload == first.payload
    assert ObjectSequence.objects.get(key="inv:1").value == 2


def test_migrate_creates_the_event_function_on_postgresql(postgres: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regproc('webhooks_insert_event') IS NOT NULL")
        assert cursor.fetchone()[0] is True


@pytest.mark.django_db(transaction=True)
def test_the_orm_broker_needs_no_redis_package(async_broker: None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A site on django-q2's ORM broker may not have ``redis`` installed: queueing a task
    and asking for a dispatch must never import django-q2's Redis broker."""
    import sys

    from django_q.conf import Conf
    from django_q.models import OrmQ

    from webhooks import dispatch, tasks

    if not Conf.ORM:
        pytest.skip("the ORM broker is not in use")
    # As if the package were missing: importing the module raises ImportError.
    monkeypatch.setitem(sys.modules, "django_q.brokers.redis_broker", None)
    monkeypatch.setitem(sys.modules, "redis", None)
    tasks.enqueue("drain")
    assert tasks.take_queue_token() is None
    dispatch.request_dispatch("default")  # the database's token, then the task
    assert OrmQ.objects.count() == 2
