"""The optional Prometheus exporter: attempt counters, latency, the backlog gauges, the view."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

prometheus_client = pytest.importorskip("prometheus_client")

from django.core import checks  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import Http404  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

import webhooks  # noqa: E402
from tests.factories import make_due, make_endpoint, publish  # noqa: E402
from tests.helpers import override_webhooks  # noqa: E402
from tests.receiver import Receiver, Reply  # noqa: E402
from webhooks import metrics  # noqa: E402
from webhooks.delivery.loop import drain  # noqa: E402
from webhooks.models import Delivery  # noqa: E402
from webhooks.signals import delivery_attempted  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = prometheus_client.REGISTRY

pytestmark = pytest.mark.django_db


def attempts(outcome: str, error_class: str = "none") -> float:
    value = REGISTRY.get_sample_value("webhooks_delivery_attempts_total",
                                      {"outcome": outcome, "error_class": error_class})
    return value or 0.0


def timed(outcome: str) -> float:
    value = REGISTRY.get_sample_value("webhooks_delivery_attempt_duration_seconds_count",
                                      {"outcome": outcome})
    return value or 0.0


def publish_and_drain() -> None:
    publish()
    drain()


# --- attempts --------------------------------------------------------------------------------


def test_real_attempts_are_counted_by_outcome_and_timed(receiver: Receiver) -> None:
    """The receiver was connected by AppConfig.ready(): the test never calls connect()."""
    receiver.script("/hook", Reply(200), Reply(500), Reply(503), Reply(500))
    make_endpoint(receiver.url())
    before = {o: attempts(o) for o in ("succeeded", "retrying", "failed")}
    before_status = {o: attempts(o, "http_status") for o in ("retrying", "failed")}
    before_timed = {o: timed(o) for o in ("succeeded", "retrying", "failed")}
    with override_webhooks(METRICS=True):
        publish_and_drain()  # 200
        publish_and_drain()  # 500, then (RETRY_SCHEDULE has 2 entries) 503, 500: failed
        make_due()
        drain()
        make_due()
        drain()
    assert attempts("succeeded") - before["succeeded"] == 1
    assert attempts("retrying", "http_status") - before_status["retrying"] == 2
    assert attempts("failed", "http_status") - before_status["failed"] == 1
    assert attempts("retrying") == before["retrying"]  # no "none" error class on failures
    assert {o: timed(o) - before_timed[o] for o in before_timed} == {
        "succeeded": 1, "retrying": 2, "failed": 1}
    assert Delivery.objects.filter(status="failed").count() == 1


def test_nothing_is_counted_while_metrics_are_off(receiver: Receiver) -> None:
    make_endpoint(receiver.url())
    before = attempts("succeeded"), timed("succeeded")
    publish_and_drain()  # the test settings leave METRICS at its default, False
    assert len(receiver.received()) == 1
    assert (attempts("succeeded"), timed("succeeded")) == before


def test_error_classes_and_latency_buckets() -> None:
    class Attempt:
        error_class = "timeout"
        duration = 15.2

    before = attempts("retrying", "timeout")
    bucket = {"outcome": "retrying", "le": "10.0"}
    slow_before = REGISTRY.get_sample_value(
        "webhooks_delivery_attempt_duration_seconds_bucket", bucket)
    with override_webhooks(METRICS=True):
        delivery_attempted.send(sender=Delivery, delivery=None, attempt=Attempt(),
                                succeeded=False, final=False)
    assert attempts("retrying", "timeout") == before + 1
    assert REGISTRY.get_sample_value(
        "webhooks_delivery_attempt_duration_seconds_bucket", bucket) == slow_before


# --- the backlog -----------------------------------------------------------------------------


def collect_backlog() -> dict[str, float]:
    return {family.name: family.samples[0].value
            for family in metrics.backlog_collector.collect()}


def test_the_backlog_gauges_cost_one_query_per_scrape() -> None:
    endpoint = make_endpoint("https://site.example.com/hook")
    now = timezone.now()
    for seconds in (120, 30):
        event = webhooks.send_event("invoice.paid", {})
        Delivery.objects.create(event=event, endpoint=endpoint,
                                next_attempt_at=now - timedelta(seconds=seconds))
    event = webhooks.send_event("invoice.paid", {})
    Delivery.objects.create(event=event, endpoint=endpoint,  # not due yet
                            next_attempt_at=now + timedelta(minutes=5))
    event = webhooks.send_event("invoice.paid", {})
    Delivery.objects.create(event=event, endpoint=endpoint, status="failed",  # finished
                            next_attempt_at=now - timedelta(hours=3))
    with override_webhooks(METRICS=True), CaptureQueriesContext(connection) as queries:
        values = collect_backlog()
    assert len(queries) == 1
    assert values["webhooks_due_deliveries"] == 2
    assert 120 <= values["webhooks_oldest_due_delivery_age_seconds"] < 130


def test_the_backlog_query_can_use_the_due_index() -> None:
    with override_webhooks(METRICS=True), CaptureQueriesContext(connection) as queries:
        collect_backlog()
    (query,) = queries.captured_queries
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + query["sql"])
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + query["sql"])
        plan = " ".join(str(row) for row in cursor.fetchall())
    if connection.vendor == "postgresql":
        assert "webhooks_delivery_due" in plan
    else:  # SQLite's planner, without statistics, prefers the (status, created_at) index
        assert "USING INDEX webhooks_delivery_" in plan or \
            "USING COVERING INDEX webhooks_delivery_" in plan


def test_an_empty_backlog_is_zero_and_metrics_off_is_no_query() -> None:
    with override_webhooks(METRICS=True):
        assert collect_backlog() == {"webhooks_due_deliveries": 0,
                                     "webhooks_oldest_due_delivery_age_seconds": 0}
    with CaptureQueriesContext(connection) as queries:
        assert collect_backlog() == {}
    assert len(queries) == 0


def test_describe_never_queries() -> None:
    with override_webhooks(METRICS=True), CaptureQueriesContext(connection) as queries:
        names = [family.name for family in metrics.backlog_collector.describe()]
    assert names == ["webhooks_due_deliveries", "webhooks_oldest_due_delivery_age_seconds"]
    assert len(queries) == 0


# --- the view --------------------------------------------------------------------------------


def test_the_view_serves_counters_and_backlog() -> None:
    endpoint = make_endpoint("https://site.example.com/hook")
    event = webhooks.send_event("invoice.paid", {})
    Delivery.objects.create(event=event, endpoint=endpoint,
                            next_attempt_at=timezone.now() - timedelta(seconds=60))
    with override_webhooks(METRICS=True):
        response = metrics.metrics_view(RequestFactory().get("/metrics"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "no-cache" in response["Cache-Control"]
    text = response.content.decode()
    assert "webhooks_due_deliveries 1.0" in text
    assert "# TYPE webhooks_delivery_attempts_total counter" in text
    assert "# TYPE webhooks_delivery_attempt_duration_seconds histogram" in text
    age = next(line for line in text.splitlines()
               if line.startswith("webhooks_oldest_due_delivery_age_seconds "))
    assert 60 <= float(age.split()[1]) < 70


def test_the_view_speaks_openmetrics_when_asked() -> None:
    with override_webhooks(METRICS=True):
        response = metrics.metrics_view(RequestFactory().get(
            "/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0"))
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


def test_the_view_is_a_404_while_metrics_are_off() -> None:
    with pytest.raises(Http404):
        metrics.metrics_view(RequestFactory().get("/metrics"))


def test_multiprocess_mode_aggregates_worker_processes(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Two "worker" processes write to PROMETHEUS_MULTIPROC_DIR; the view (here, in this
    process) serves their sum, plus the backlog it reads from the database."""
    script = textwrap.dedent("""
        import django
        django.setup()
        from tests.helpers import override_webhooks
        from webhooks.signals import delivery_attempted

        class Attempt:
            error_class = "connection"
            duration = 0.2

        with override_webhooks(METRICS=True):
            for _ in range(3):
                delivery_attempted.send(sender=None, delivery=None, attempt=Attempt(),
                                        succeeded=False, final=False)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "tests.settings",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60,
                       cwd=ROOT)
    assert len(list(tmp_path.glob("counter_*.db"))) == 2  # one file per process
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with override_webhooks(METRICS=True):
        text = metrics.metrics_view(RequestFactory().get("/metrics")).content.decode()
    assert 'webhooks_delivery_attempts_total{error_class="connection",outcome="retrying"} 6.0' \
        in text
    assert 'webhooks_delivery_attempt_duration_seconds_count{outcome="retrying"} 6.0' in text
    assert "webhooks_due_deliveries 0.0" in text


# --- settings and wiring ---------------------------------------------------------------------


def test_connect_is_idempotent_and_registered_once() -> None:
    assert metrics.connect() is True
    assert metrics.connect() is True
    receivers = [r for r in delivery_attempted.receivers
                 if r[0][0] == "webhooks.metrics.record_attempt"]
    assert len(receivers) == 1
    assert metrics.backlog_collector in REGISTRY._collector_to_names


def test_metrics_setting_is_validated(settings: Any) -> None:
    from webhooks.checks import check_settings

    settings.WEBHOOKS = {**settings.WEBHOOKS, "METRICS": "yes"}
    (error,) = [e for e in check_settings() if e.id.startswith("webhooks.E")]
    assert error.id == "webhooks.E003" and "METRICS" in error.msg
    settings.WEBHOOKS = {**settings.WEBHOOKS, "METRICS": True}
    assert not [e for e in check_settings() if e.id.startswith("webhooks.E")]


def test_e040_when_prometheus_client_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "available", lambda: False)
    with override_webhooks(METRICS=True):
        assert [e.id for e in metrics.check_metrics()] == ["webhooks.E040"]
        assert "webhooks.E040" in [e.id for e in checks.run_checks(tags=["webhooks"])]
        with pytest.raises(Http404):
            metrics.metrics_view(RequestFactory().get("/metrics"))
    assert metrics.check_metrics() == []
