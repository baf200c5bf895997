"""Endpoint health for the admin: 24-hour success rate and median latency, and a small chart.

Everything here costs a constant number of queries, whatever the number of endpoints on a page
or attempts in the window: one windowed query for a page of endpoints, one grouped query for
one endpoint's chart. Both read the ``(endpoint, created_at)`` index of attempts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import (
    Avg,
    Case,
    Count,
    F,
    IntegerField,
    Q,
    Sum,
    Value,
    When,
    Window,
)
from django.db.models.functions import RowNumber, TruncHour
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from webhooks.models import DeliveryAttempt

#: How far back the health figures look.
WINDOW = timedelta(hours=24)

_OK = Q(status_code__gte=200, status_code__lt=300)


@dataclass
class Health:
    """What one endpoint's attempts in the window add up to."""

    attempts: int = 0
    succeeded: int = 0
    median_latency: float | None = None  # seconds, over attempts that got a response

    @property
    def success_rate(self) -> float | None:
        """Succeeded attempts over all of them; ``None`` without attempts."""
        return self.succeeded / self.attempts if self.attempts else None


def health_by_endpoint(endpoint_ids: Iterable[Any], now: datetime | None = None,
                       ) -> dict[Any, Health]:
    """Health of each endpoint in ``endpoint_ids`` over the last 24 hours, in one query.

    The median is computed by the database: attempts are ranked by duration within their
    endpoint (window functions, SQLite 3.25+ and PostgreSQL), and only the first row and the
    middle row(s) of each endpoint come back.
    """
    ids = list(endpoint_ids)
    if not ids:
        return {}
    since = (now or timezone.now()) - WINDOW
    by_endpoint = [F("endpoint_id")]
    ok = Case(When(_OK, then=Value(1)), default=Value(0), output_field=IntegerField())
    unanswered = Case(When(status_code__isnull=True, then=Value(1)), default=Value(0),
                      output_field=IntegerField())
    rows = (
        DeliveryAttempt.objects.filter(endpoint_id__in=ids, created_at__gte=since)
        .annotate(
            total=Window(Count("pk"), partition_by=by_endpoint),
            ok=Window(Sum(ok), partition_by=by_endpoint),
            answered=Window(Count("status_code"), partition_by=by_endpoint),
            rank=Window(RowNumber(), partition_by=by_endpoint,
                        order_by=[unanswered.asc(), F("duration").asc()]),
        )
        .filter(Q(rank=1) | Q(rank__gte=(F("answered") + 1) / 2,
                              rank__lte=(F("answered") + 2) / 2))
        .values_list("endpoint_id", "total", "ok", "answered", "rank", "duration")
        .order_by()
    )
    result: dict[Any, Health] = {}
    middles: dict[Any, list[float]] = {}
    for endpoint_id, total, succeeded, answered, rank, duration in rows:
        result[endpoint_id] = Health(attempts=total, succeeded=succeeded or 0)
        if answered and (answered + 1) // 2 <= rank <= (answered + 2) // 2:
            middles.setdefault(endpoint_id, []).append(duration)
    for endpoint_id, values in middles.items():
        result[endpoint_id].median_latency = sum(values) / len(values)
    return result


@dataclass
class Bucket:
    """One hour of one endpoint's attempts."""

    start: datetime
    succeeded: int = 0
    failed: int = 0
    latency: float | None = None  # mean seconds over attempts that got a response


def hourly_buckets(endpoint_id: Any, now: datetime | None = None) -> list[Bucket]:
    """One endpoint's attempts over the last 24 hours, per hour (24 buckets), in one query."""
    now = timezone.localtime(now or timezone.now())
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    buckets = [Bucket(first + timedelta(hours=i)) for i in range(24)]
    rows = (
        DeliveryAttempt.objects.filter(endpoint_id=endpoint_id, created_at__gte=first)
        .annotate(hour=TruncHour("created_at"))
        .values("hour")
        .annotate(total=Count("pk"), ok=Count("pk", filter=_OK),
                  latency=Avg("duration", filter=Q(status_code__isnull=False)))
        .order_by("hour")
    )
    for row in rows:
        index = int((row["hour"] - first).total_seconds() // 3600)
        if 0 <= index < len(buckets):
            bucket = buckets[index]
            bucket.succeeded = row["ok"]
            bucket.failed = row["total"] - row["ok"]
            bucket.latency = row["latency"]
    return buckets


def format_latency(seconds: float | None) -> str:
    """Seconds as ``850 ms`` or ``1.25 s``; ``—`` for none."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


# Colours of the admin's own palette (success green, error red, link blue), so the chart looks
# at home in light and dark themes alike.
_GREEN, _RED, _BLUE, _GREY = "#70bf2b", "#ba2121", "#417690", "#999"


def _n(value: float) -> str:
    return f"{value:.1f}"


def chart_svg(buckets: list[Bucket]) -> SafeString:
    """An inline SVG: stacked bars of succeeded/failed attempts per hour, a latency line.

    Plain markup (native ``<title>`` tooltips), no script and nothing loaded from elsewhere.
    """
    width, height, left, right, top, bottom = 720, 170, 40, 56, 12, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / max(len(buckets), 1)
    most = max((b.succeeded + b.failed for b in buckets), default=0) or 1
    slowest = max((b.latency or 0 for b in buckets), default=0) or 1
    parts: list[SafeString] = []

    def y_of(count: float) -> float:
        return top + plot_h - plot_h * count / most

    for i, bucket in enumerate(buckets):
        x = left + i * slot + 1
        ok_top, failed_top = y_of(bucket.succeeded), y_of(bucket.succeeded + bucket.failed)
        label = _("%(hour)s: %(ok)d succeeded, %(failed)d failed, latency %(latency)s") % {
            "hour": timezone.localtime(bucket.start).strftime("%H:00"),
            "ok": bucket.succeeded, "failed": bucket.failed,
            "latency": format_latency(bucket.latency),
        }
        parts.append(format_html(
            '<g><title>{}</title>'
            '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
            '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/></g>',
            label, _n(x), _n(ok_top), _n(slot - 2), _n(top + plot_h - ok_top), _GREEN,
            _n(x), _n(failed_top), _n(slot - 2), _n(ok_top - failed_top), _RED,
        ))
        if i % 6 == 0:
            parts.append(format_html(
                '<text x="{}" y="{}" font-size="10" fill="currentColor">{}</text>',
                _n(x), height - 8, timezone.localtime(bucket.start).strftime("%H:00")))
    points = [
        f"{left + (i + 0.5) * slot:.1f},{top + plot_h - plot_h * b.latency / slowest:.1f}"
        for i, b in enumerate(buckets) if b.latency is not None
    ]
    if points:
        parts.append(format_html(
            '<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>',
            " ".join(points), _BLUE))
    axes = format_html(
        '<line x1="{l}" y1="{b}" x2="{r}" y2="{b}" stroke="{g}"/>'
        '<text x="{tx}" y="{ty}" font-size="10" text-anchor="end" fill="currentColor">{most}'
        '</text><text x="{tx}" y="{b}" font-size="10" text-anchor="end" '
        'fill="currentColor">0</text>'
        '<text x="{rx}" y="{ty}" font-size="10" fill="{blue}">{slow}</text>',
        l=left, r=width - right, b=top + plot_h, g=_GREY, tx=left - 4, ty=top + 8,
        most=most, rx=width - right + 4, blue=_BLUE, slow=format_latency(slowest),
    )
    legend = format_html(
        '<p class="webhooks-chart-legend">'
        '<span style="color:{}">■</span> {} <span style="color:{}">■</span> {} '
        '<span style="color:{}">━</span> {}</p>',
        _GREEN, _("succeeded"), _RED, _("failed"), _BLUE, _("mean latency"))
    svg = format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="webhooks-chart" role="img" '
        'viewBox="0 0 {w} {h}" width="{w}" height="{h}" style="max-width:100%;height:auto">'
        '<title>{title}</title>{axes}{body}</svg>',
        w=width, h=height, title=_("Attempts per hour over the last 24 hours"), axes=axes,
        body=mark_safe("".join(parts)),  # noqa: S308 - every part went through format_html
    )
    return format_html("{}{}", svg, legend)


def summary_html(health: Health) -> SafeString:
    """One line: success rate, attempts and median latency."""
    if not health.attempts:
        return format_html("{}", _("No attempts in the last 24 hours."))
    rate = health.success_rate or 0.0
    return format_html_join(" · ", "{}", [
        (_("%(rate).1f%% succeeded") % {"rate": rate * 100},),
        (ngettext("%(count)d attempt", "%(count)d attempts", health.attempts)
         % {"count": health.attempts},),
        (_("median latency %(latency)s") % {"latency": format_latency(health.median_latency)},),
    ])
