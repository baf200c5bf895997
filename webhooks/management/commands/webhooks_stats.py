"""Per-endpoint health: success rate, latency, backlog, and the oldest due delivery."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count, Min, Q
from django.utils import timezone

from webhooks.models import Delivery, DeliveryAttempt, Endpoint


class Command(BaseCommand):
    help = (
        "Print per-endpoint success rate and median latency over a window (24 h by default), "
        "backlog (pending deliveries) and the age of the oldest due delivery: the number to "
        "alert on."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hours", type=float, default=24,
                            help="The window for rates and latency (default 24).")
        parser.add_argument("--json", action="store_true", help="Print JSON instead.")

    def handle(self, *args: Any, hours: float = 24, json: bool = False, **options: Any) -> None:
        now = timezone.now()
        since = now - timedelta(hours=hours)
        attempts = (DeliveryAttempt.objects.filter(created_at__gte=since)
                    .values("delivery__endpoint_id")
                    .annotate(total=Count("id"),
                              ok=Count("id", filter=Q(status_code__gte=200, status_code__lt=300))))
        by_endpoint = {row["delivery__endpoint_id"]: row for row in attempts}
        backlog: dict[Any, dict[str, Any]] = {
            row["endpoint_id"]: dict(row) for row in Delivery.objects.pending()
                   .values("endpoint_id")
                   .annotate(pending=Count("id"),
                             oldest_due=Min("next_attempt_at", filter=Q(next_attempt_at__lte=now)))
        }
        rows = []
        for endpoint in Endpoint.objects.order_by("created_at"):
            window = by_endpoint.get(endpoint.pk, {"total": 0, "ok": 0})
            pending = backlog.get(endpoint.pk, {"pending": 0, "oldest_due": None})
            oldest = pending["oldest_due"]
            rows.append({
                "endpoint": endpoint.public_id,
                "url": endpoint.url,
                "active": endpoint.is_active,
                "attempts": window["total"],
                "success_rate": window["ok"] / window["total"] if window["total"] else None,
                "median_latency_ms": _median_ms(endpoint.pk, since, window["total"]),
                "pending": pending["pending"],
                "oldest_due_seconds": (now - oldest).total_seconds() if oldest else 0.0,
                "consecutive_failures": endpoint.consecutive_failures,
                "disabled_reason": endpoint.disabled_reason,
            })
        due = Delivery.objects.due(now).aggregate(oldest=Min("next_attempt_at"), n=Count("id"))
        summary = {
            "window_hours": hours,
            "due": due["n"],
            "oldest_due_seconds": (now - due["oldest"]).total_seconds() if due["oldest"] else 0.0,
            "undispatched_events": _undispatched(),
        }
        if json:
            self.stdout.write(_dumps({"endpoints": rows, "summary": summary}))
            return
        self.stdout.write(f"{'endpoint':<31} {'ok %':>6} {'p50 ms':>7} {'tries':>6} "
                          f"{'pending':>7} {'oldest due':>10}  url")
        for row in rows:
            rate = "-" if row["success_rate"] is None else f"{row['success_rate'] * 100:.1f}"
            p50 = "-" if row["median_latency_ms"] is None else f"{row['median_latency_ms']:.0f}"
            flag = "" if row["active"] else f"  [disabled: {row['disabled_reason']}]"
            self.stdout.write(f"{row['endpoint']:<31} {rate:>6} {p50:>7} {row['attempts']:>6} "
                              f"{row['pending']:>7} {row['oldest_due_seconds']:>9.0f}s  "
                              f"{row['url']}{flag}")
        self.stdout.write(f"due now: {summary['due']}; oldest due delivery: "
                          f"{summary['oldest_due_seconds']:.0f}s; undispatched events: "
                          f"{summary['undispatched_events']}")


def _median_ms(endpoint_id: Any, since: Any, count: int) -> float | None:
    if not count:
        return None
    middle = (DeliveryAttempt.objects
              .filter(delivery__endpoint_id=endpoint_id, created_at__gte=since)
              .order_by("duration").values_list("duration", flat=True)[count // 2:count // 2 + 1])
    values = list(middle)
    return values[0] * 1000 if values else None


def _undispatched() -> int:
    from webhooks.models import Event

    return Event.objects.undispatched().count()


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
