"""Admin pages at scale (not part of the test suite).

    python bench/admin.py [--rows 1000000] [--endpoints 100] [--repeat 5] [--reuse]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_webhooks_admin python bench/admin.py

Builds a fresh bench database (SQLite ``var/bench-admin.sqlite3`` unless ``DATABASE_URL`` names
a PostgreSQL database whose name starts with ``bench_``; it is dropped and recreated) holding
``--rows`` delivery attempts, one delivery per 10 attempts, one event per delivery, spread over
30 days across ``--endpoints`` endpoints and four event types (half of them
``order.created``; 80% of deliveries succeeded, 15% failed, 5% pending),
written with raw multi-row inserts. Then it times every admin list and change page with the
Django test client, logged in as a superuser, and prints the median milliseconds and the query
count of each. ``--reuse`` keeps a database an earlier run built (same ``--rows``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

DAYS = 30
ATTEMPTS_PER_DELIVERY = 10
CHUNK = 5000
#: Event types of the data set: the first is half of all events, the last a tenth.
EVENT_TYPES = ["order.created", "order.updated", "order.created", "invoice.paid",
               "order.created", "order.updated", "order.created", "invoice.paid",
               "order.deleted", "order.created"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="django-webhooks admin pages at scale")
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="delivery attempts to create (default 1,000,000; deliveries and "
                             "events are a tenth of that)")
    parser.add_argument("--endpoints", type=int, default=100, help="endpoints (default 100)")
    parser.add_argument("--repeat", type=int, default=5, help="timed requests per page (5)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the database an earlier run with the same --rows built")
    return parser.parse_args(argv)


def uuid7_at(moment: datetime, rng: random.Random) -> uuid.UUID:
    """A UUIDv7 for ``moment`` (ids sort like creation times, as in production)."""
    ms = int(moment.timestamp() * 1000)
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | rng.getrandbits(12) << 64
    value |= 0b10 << 62 | rng.getrandbits(62)
    return uuid.UUID(int=value)


def fresh_database(reuse: bool) -> None:
    from django.conf import settings

    db = settings.DATABASES["default"]
    if reuse:
        return
    if db["ENGINE"].endswith("sqlite3"):
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{db['NAME']}{suffix}").unlink(missing_ok=True)
        return
    import psycopg
    from psycopg import sql

    name = db["NAME"]
    if not name.startswith("bench_"):
        raise SystemExit(f"refusing to drop {name!r}: bench databases are named bench_*")
    with psycopg.connect(host=db.get("HOST") or "127.0.0.1", port=int(db.get("PORT") or 5432),
                         user=db.get("USER") or None, password=db.get("PASSWORD") or None,
                         dbname="postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def insert(cursor: Any, table: str, columns: list[str], rows: list[tuple[Any, ...]],
           casts: dict[str, str] | None = None) -> None:
    from django.db import connection

    quote = connection.ops.quote_name
    casts = casts or {}
    one = "(" + ", ".join("%s" + casts.get(c, "") for c in columns) + ")"
    for start in range(0, len(rows), CHUNK // 5 if len(columns) > 8 else CHUNK):
        batch = rows[start:start + (CHUNK // 5 if len(columns) > 8 else CHUNK)]
        sql = (f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608
               f"VALUES {', '.join([one] * len(batch))}")
        cursor.execute(sql, [value for row in batch for value in row])


def build(rows: int, endpoint_count: int) -> dict[str, Any]:
    """Write the data set; returns ids the timed pages need."""
    from django.db import connection, transaction

    from webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event, Subscription

    rng = random.Random(42)
    sqlite = connection.vendor == "sqlite"
    now = datetime.now(UTC)
    start = now - timedelta(days=DAYS)

    def u(value: uuid.UUID) -> Any:
        return value.hex if sqlite else value

    def dt(value: datetime) -> Any:
        return value.replace(tzinfo=None).isoformat(" ") if sqlite else value

    jsonb = {} if sqlite else {"request_headers": "::jsonb", "response_headers": "::jsonb"}
    endpoints = [Endpoint.objects.create(url=f"https://hooks{i}.example.com/webhooks")
                 for i in range(endpoint_count)]
    Subscription.objects.bulk_create(Subscription(endpoint=e, event_type="*")
                                     for e in endpoints)
    deliveries_n = max(rows // ATTEMPTS_PER_DELIVERY, 1)
    span = (now - start).total_seconds()
    statuses = ["succeeded"] * 16 + ["failed"] * 3 + ["pending"]
    request_headers = json.dumps({"Content-Type": "application/json",
                                  "User-Agent": "django-webhooks/bench",
                                  "webhook-id": "evt_bench", "webhook-timestamp": "0",
                                  "webhook-signature": "v1,bench"})
    response_headers = json.dumps({"Content-Type": "text/plain", "Content-Length": "2"})
    attempts_left = rows
    first_failed = None
    with transaction.atomic(), connection.cursor() as cursor:
        for chunk_start in range(0, deliveries_n, CHUNK):
            events, deliveries, attempts = [], [], []
            for i in range(chunk_start, min(chunk_start + CHUNK, deliveries_n)):
                created = start + timedelta(seconds=span * i / deliveries_n)
                event_id, delivery_id = uuid7_at(created, rng), uuid7_at(created, rng)
                endpoint = endpoints[i % endpoint_count]
                status = statuses[rng.randrange(len(statuses))]
                event_type = EVENT_TYPES[i % len(EVENT_TYPES)]
                payload = json.dumps({"id": "evt", "type": event_type,
                                      "data": {"order": i, "total": "12.50"}})
                events.append((u(event_id), event_type, dt(created), payload, "",
                               dt(created)))
                share = min(ATTEMPTS_PER_DELIVERY, attempts_left)
                attempts_left -= share
                last_code = 200 if status == "succeeded" else 500
                deliveries.append((u(delivery_id), u(event_id), u(endpoint.pk), status, share,
                                   dt(created + timedelta(minutes=5))
                                   if status == "pending" else None,
                                   dt(created), last_code if share else None,
                                   "" if status == "succeeded" else "http_status: HTTP 500",
                                   dt(created)))
                if status == "failed" and first_failed is None:
                    first_failed = delivery_id
                for n in range(share):
                    at = created + timedelta(seconds=n * 30)
                    # A succeeded delivery's attempts all succeeded (as if replayed), a
                    # failed one's failed: 24-hour success rates then look like a real site's.
                    ok = status == "succeeded"
                    code = 200 if ok else (None if n % 4 == 3 else 500)
                    attempts.append((
                        u(uuid7_at(at, rng)), u(delivery_id), u(endpoint.pk), n + 1, dt(at),
                        endpoint.url, request_headers, code, response_headers,
                        "ok" if code else "", round(rng.uniform(0.02, 0.6), 4),
                        "" if ok else ("timeout" if code is None else "http_status"),
                        "" if ok else ("timed out" if code is None else "HTTP 500"),
                    ))
            insert(cursor, Event._meta.db_table, ["id", "type", "created_at", "payload",
                                                  "error", "dispatched_at"], events)
            insert(cursor, Delivery._meta.db_table,
                   ["id", "event_id", "endpoint_id", "status", "attempts", "next_attempt_at",
                    "last_attempt_at", "last_status_code", "last_error", "created_at"],
                   deliveries)
            insert(cursor, DeliveryAttempt._meta.db_table,
                   ["id", "delivery_id", "endpoint_id", "number", "created_at", "url",
                    "request_headers", "status_code", "response_headers", "response_body",
                    "duration", "error_class", "error"], attempts, casts=jsonb)
    if sqlite:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return {"endpoint": endpoints[0].pk}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    os.environ.setdefault("BENCH_SQLITE_PATH", str(REPO_DIR / "var" / "bench-admin.sqlite3"))
    os.environ.setdefault("BENCH_Q_NAME", "bench-admin")
    import django
    from django.conf import settings

    fresh_database(args.reuse)
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0, interactive=False)
    started = time.perf_counter()
    if not (args.reuse and DeliveryAttempt.objects.exists()):
        build(args.rows, args.endpoints)
        print(f"built {args.rows:,} attempts in {time.perf_counter() - started:.1f} s "
              f"({connection.vendor})")
    user_model = get_user_model()
    user = user_model.objects.filter(username="bench-admin").first() or \
        user_model.objects.create_superuser("bench-admin", "bench@example.com", "pw")
    client = Client()
    client.force_login(user)
    endpoint = Endpoint.objects.order_by("url").first()
    delivery = Delivery.objects.filter(status="failed").order_by("-created_at").first()
    assert endpoint is not None and delivery is not None
    event = Event.objects.get(pk=delivery.event_id)
    attempt = DeliveryAttempt.objects.filter(delivery=delivery).first()
    assert attempt is not None
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day = f"created_at__gte={today:%Y-%m-%d}+00:00:00%2B00:00"
    last_page = max(1, min(50, Delivery.objects.count() // 100))
    pages = {
        "index": reverse("admin:index"),
        "endpoints list": reverse("admin:webhooks_endpoint_changelist"),
        "endpoint change (health+chart)": reverse("admin:webhooks_endpoint_change",
                                                  args=[endpoint.pk]),
        "events list": reverse("admin:webhooks_event_changelist"),
        "events search evt_ id": reverse("admin:webhooks_event_changelist")
        + f"?q={event.public_id}",
        "events by type": reverse("admin:webhooks_event_changelist")
        + "?event_type=order.created",
        "event change": reverse("admin:webhooks_event_change", args=[event.pk]),
        "deliveries list": reverse("admin:webhooks_delivery_changelist"),
        f"deliveries page {last_page}": reverse("admin:webhooks_delivery_changelist")
        + f"?p={last_page}",
        "deliveries status=failed": reverse("admin:webhooks_delivery_changelist")
        + "?status=failed",
        "deliveries by endpoint": reverse("admin:webhooks_delivery_changelist")
        + f"?endpoint={endpoint.pk}",
        "deliveries by event type": reverse("admin:webhooks_delivery_changelist")
        + "?event_type=order.created",
        "deliveries today": reverse("admin:webhooks_delivery_changelist") + f"?{day}",
        "delivery change (attempts)": reverse("admin:webhooks_delivery_change",
                                              args=[delivery.pk]),
        "failed deliveries list": reverse("admin:webhooks_faileddelivery_changelist"),
        "attempts list": reverse("admin:webhooks_deliveryattempt_changelist"),
        "attempts no response": reverse("admin:webhooks_deliveryattempt_changelist")
        + "?outcome=error",
        "attempts by endpoint": reverse("admin:webhooks_deliveryattempt_changelist")
        + f"?endpoint={endpoint.pk}",
        "attempt change": reverse("admin:webhooks_deliveryattempt_change", args=[attempt.pk]),
    }
    print(f"{'page':34} {'median ms':>10} {'max ms':>8} {'queries':>8}")
    worst = 0.0
    for name, url in pages.items():
        client.get(url)  # warm-up
        timings = []
        queries = 0
        for _ in range(args.repeat):
            with CaptureQueriesContext(connection) as captured:
                t0 = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - t0) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"{name}: HTTP {response.status_code}")
            queries = len(captured)
        median = statistics.median(timings)
        worst = max(worst, median)
        print(f"{name:34} {median:10.1f} {max(timings):8.1f} {queries:8d}")
    print(f"ADMIN rows={args.rows} vendor={connection.vendor} worst_median_ms={worst:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
