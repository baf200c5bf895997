"""Prometheus metrics: delivery attempts (counters, latency histogram) and the backlog (gauges).

Optional: ``pip install "django-webhooks[metrics]"`` (``prometheus-client``) and
``WEBHOOKS = {"METRICS": True}``. Then:

``webhooks_delivery_attempts_total{outcome, error_class}``
    HTTP attempts, by ``outcome`` (``succeeded``, ``retrying``: a retry follows, ``failed``: the
    delivery failed for good) and ``error_class`` (``none`` on success, else the attempt's:
    ``http_status``, ``redirect``, ``gone``, ``rate_limited``, or one of
    ``webhooks.http.ERROR_CLASSES`` such as ``connection_refused`` or ``read_timeout``; the
    full list is in ``docs/observability.md``).
``webhooks_delivery_attempt_duration_seconds{outcome}``
    A histogram of how long attempts took.
``webhooks_due_deliveries`` and ``webhooks_oldest_due_delivery_age_seconds``
    The backlog, computed when scraped with one query on the due-deliveries index. The age of
    the oldest due delivery is the number to alert on.

Counters are recorded where deliveries are made (the django-q2 workers), from the
``delivery_attempted`` signal; the backlog is read from the database by whichever process is
scraped. :func:`metrics_view` serves them all (and, with ``PROMETHEUS_MULTIPROC_DIR`` set,
every process's counters). The multiprocess story: ``docs/observability.md``.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core import checks
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from webhooks.conf import webhooks_settings
from webhooks.signals import delivery_attempted

if TYPE_CHECKING:  # pragma: no cover
    from prometheus_client import Counter, Histogram
    from prometheus_client.registry import Collector

logger = logging.getLogger("webhooks")

#: Attempt latency buckets, in seconds (``TIMEOUT`` is 15 by default).
DURATION_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)
OUTCOMES = ("succeeded", "retrying", "failed")


def available() -> bool:
    """Whether ``prometheus_client`` can be imported."""
    return importlib.util.find_spec("prometheus_client") is not None


@dataclass(frozen=True)
class Instruments:
    attempts: Counter
    duration: Histogram


@functools.cache
def instruments() -> Instruments:
    """The counters and histogram, created (and registered) once per process."""
    from prometheus_client import Counter, Histogram

    result = Instruments(
        attempts=Counter(
            "webhooks_delivery_attempts",
            "HTTP attempts to deliver a webhook, by outcome (succeeded, retrying, failed) and "
            "error class.",
            ["outcome", "error_class"],
        ),
        duration=Histogram(
            "webhooks_delivery_attempt_duration_seconds",
            "How long webhook delivery attempts took, by outcome.",
            ["outcome"],
            buckets=DURATION_BUCKETS,
        ),
    )
    # Series that exist from the start, so that rate() and ratios work before the first one.
    result.attempts.labels(outcome="succeeded", error_class="none")
    for outcome in OUTCOMES:
        result.duration.labels(outcome=outcome)
    return result


def record_attempt(sender: Any, attempt: Any, succeeded: bool, final: bool,
                   **kwargs: Any) -> None:
    """``delivery_attempted`` receiver: count the attempt and time it (only with METRICS on)."""
    if not webhooks_settings.METRICS:
        return
    outcome = "succeeded" if succeeded else "failed" if final else "retrying"
    meters = instruments()
    meters.attempts.labels(outcome=outcome,
                           error_class=attempt.error_class or "none").inc()
    meters.duration.labels(outcome=outcome).observe(max(0.0, float(attempt.duration)))


class BacklogCollector:
    """The backlog gauges, read from the database at scrape time: one query on the partial
    index ``webhooks_delivery_due``. Yields nothing while ``METRICS`` is off."""

    def describe(self) -> Iterator[Any]:
        # Without describe(), registering would call collect(): a query in AppConfig.ready().
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily("webhooks_due_deliveries", _DUE_HELP)
        yield GaugeMetricFamily("webhooks_oldest_due_delivery_age_seconds", _AGE_HELP)

    def collect(self) -> Iterator[Any]:
        if not webhooks_settings.METRICS:
            return
        from django.db import DatabaseError
        from prometheus_client.core import GaugeMetricFamily

        try:
            due, age = backlog()
        except DatabaseError:
            logger.warning("Could not read the webhooks backlog for metrics.", exc_info=True)
            return
        yield GaugeMetricFamily("webhooks_due_deliveries", _DUE_HELP, value=due)
        yield GaugeMetricFamily("webhooks_oldest_due_delivery_age_seconds", _AGE_HELP,
                                value=age)


_DUE_HELP = "Deliveries due now (pending, next attempt time passed), waiting for a worker."
_AGE_HELP = "Seconds since the oldest due delivery came due; 0 when nothing is due."


def backlog() -> tuple[int, float]:
    """``(due deliveries, age in seconds of the oldest one)``, in one query."""
    from django.db.models import Count, Min

    from webhooks.models import Delivery

    now = timezone.now()
    row = Delivery.objects.due(now).aggregate(oldest=Min("next_attempt_at"), due=Count("pk"))
    oldest = row["oldest"]
    return int(row["due"]), max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


backlog_collector = BacklogCollector()
_registered: list[Collector] = []


def connect() -> bool:
    """Called from ``AppConfig.ready()``. Registers the system check and, when
    ``prometheus_client`` is importable, connects :func:`record_attempt` and registers the
    backlog collector in the default registry. Both do nothing while ``METRICS`` is off
    (settings are read at use time). Never touches the database. Returns whether connected.
    """
    checks.register(check_metrics, "webhooks")
    if not available():
        return False
    from prometheus_client import REGISTRY

    instruments()
    delivery_attempted.connect(record_attempt, dispatch_uid="webhooks.metrics.record_attempt")
    if not _registered:
        REGISTRY.register(backlog_collector)
        _registered.append(backlog_collector)
    return True


def check_metrics(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E040: ``METRICS`` is on but ``prometheus_client`` is not installed."""
    if webhooks_settings.METRICS is True and not available():
        return [checks.Error(
            "WEBHOOKS['METRICS'] is True but prometheus_client is not installed.",
            id="webhooks.E040", hint='pip install "django-webhooks[metrics]"')]
    return []


def multiprocess_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR`` when prometheus_client's multiprocess mode is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus' text format (or OpenMetrics, if the scraper asks for it).

    ``path("metrics/webhooks", webhooks.metrics.metrics_view)``; a 404 while ``METRICS`` is
    off. In multiprocess mode it aggregates every process that writes to
    ``PROMETHEUS_MULTIPROC_DIR`` (web and workers on this machine) plus the backlog;
    otherwise it serves this process's default registry (with the backlog). It is not
    protected: mount it where only the scraper can reach it, or wrap it.
    """
    if not webhooks_settings.METRICS or not available():
        raise Http404("Metrics are off.")
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.exposition import choose_encoder

    registry = REGISTRY
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(backlog_collector)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry), content_type=content_type)
