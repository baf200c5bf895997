"""The legs of the benchmark. Each runs in its own process, started by ``bench/run.py``.

``raw`` needs no database: it posts signed bodies with ``webhooks.http.post`` in a tight loop,
in one process and then in two forked processes at once. ``save``, ``drain`` (also the history
legs: ``history_rows`` old rows are inserted first) and ``latency`` set Django up with
``bench.settings`` (the environment names the database and the broker) on a fresh database;
``drain`` and ``latency`` start a real ``qcluster`` and sample its processes' RSS.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO_DIR = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --- helpers shared by the legs --------------------------------------------------------------


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it returns something truthy; ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class ReceiverClient:
    """Reads and resets the counters of ``bench/receiver.py`` over one kept-alive connection."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.conn: http.client.HTTPConnection | None = None

    def _get(self, path: str) -> bytes:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
            try:
                self.conn.request("GET", path)
                response = self.conn.getresponse()
                return response.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def stats(self) -> dict[str, dict[str, Any]]:
        return json.loads(self._get("/stats"))

    def reset(self) -> None:
        self._get("/reset")

    def unique(self, path: str) -> int:
        return int(self.stats().get(path, {}).get("unique", 0))

    def arrivals(self, path: str) -> dict[str, float]:
        """``{webhook-id: first arrival (time.monotonic())}`` of the requests to ``path``."""
        return json.loads(self._get("/arrivals" + path))


def event_data(seq: int) -> dict[str, Any]:
    """A custom event's ``data``: an order-like document, about 1 KB once in its envelope."""
    return {
        "seq": seq,
        "order": {
            "id": f"ord_{seq:010d}",
            "customer": {"id": f"cus_{seq % 977:08d}", "email": f"buyer{seq % 977}@example.com",
                         "name": "Ada Lovelace"},
            "currency": "EUR",
            "total": "123.45",
            "status": "paid",
            "items": [
                {"sku": f"SKU-{k:05d}", "name": f"Widget model {k}", "quantity": k + 1,
                 "unit_price": "9.99"}
                for k in range(7)
            ],
        },
        "note": "n" * 180,
    }


def raw_body(seq: int) -> bytes:
    """The same kind of body a ``ping.sent`` delivery carries (envelope included)."""
    return json.dumps(
        {"id": f"evt_RAW{seq:023d}", "type": "ping.sent", "timestamp": "2025-01-01T00:00:00.000Z",
         "data": event_data(seq)},
        separators=(",", ":"),
    ).encode()


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (``None`` once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()
    except OSError:
        return None


def group_cpu_seconds(pgid: int) -> float:
    """User+system CPU seconds of every live process in process group ``pgid`` (Linux)."""
    total = 0
    for pid in group_pids(pgid):
        fields = _stat_fields(pid)
        if fields is not None:
            total += sum(int(x) for x in fields[11:15])
    return total / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy since boot (``/proc/stat``)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def process_cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    if fields is None:
        return float("nan")
    return sum(int(x) for x in fields[11:13]) / CLK_TCK


def group_pids(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (Linux)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields is not None and int(fields[2]) == pgid:
                pids.append(int(entry))
    return pids


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


class RssSampler:
    """Samples the RSS of every process of a ``qcluster`` group in a thread (``/proc``).

    ``result(deliveries)`` gives the peak RSS of any one process (the cluster's processes
    are forks of one another: its 2 workers, the sentinel, pusher and monitor) and, for the
    processes alive from the first sample to the last, the largest start → end growth and
    the largest growth over the second half of the window (by time), per 1,000 deliveries
    (half the leg's deliveries: the rate is steady). A worker's first tasks cost it a
    one-off ~10 MiB (imports, caches): the second half shows whether it keeps growing.
    """

    def __init__(self, pgid: int, interval: float = 0.1) -> None:
        import threading

        self.pgid, self.interval = pgid, interval
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self.timeline: list[tuple[float, dict[int, int]]] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        now: dict[int, int] = {}
        for pid in group_pids(self.pgid):
            rss = rss_bytes(pid)
            if rss is None:
                continue
            now[pid] = rss
            self.first.setdefault(pid, rss)
            self.last[pid] = rss
            self.peak[pid] = max(rss, self.peak.get(pid, 0))
        self.timeline.append((time.monotonic(), now))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self.initial = set(self.first)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.final = set(group_pids(self.pgid))
        self.sample()

    def result(self, deliveries: int) -> dict[str, Any]:
        mib = 1024 * 1024
        stayed = self.initial & self.final
        growth = {pid: self.last[pid] - self.first[pid] for pid in stayed}
        worst = max(growth, key=lambda pid: growth[pid]) if growth else None
        grown = growth[worst] if worst is not None else float("nan")
        middle_t = (self.timeline[0][0] + self.timeline[-1][0]) / 2
        middle = min(self.timeline, key=lambda sample: abs(sample[0] - middle_t))[1]
        late = [self.last[pid] - middle[pid] for pid in stayed if pid in middle]
        late_grown = max(late) if late else float("nan")
        return {
            "samples": self.samples,
            "processes": len(self.peak),
            "processes_started_during_run": len(set(self.peak) - self.initial),
            "peak_rss_mib": max(self.peak.values()) / mib if self.peak else float("nan"),
            "start_rss_mib": max(self.first[p] for p in stayed) / mib if stayed
            else float("nan"),
            "max_growth_mib": grown / mib,
            "growth_kib_per_1000_deliveries": grown / 1024 / deliveries * 1000
            if deliveries else float("nan"),
            "second_half_growth_mib": late_grown / mib,
            "second_half_kib_per_1000_deliveries": late_grown / 1024 / (deliveries / 2) * 1000
            if deliveries else float("nan"),
            "per_process_mib": {str(pid): {"start": self.first[pid] / mib,
                                           "end": self.last[pid] / mib,
                                           "peak": self.peak[pid] / mib}
                                for pid in self.peak},
        }


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values``, linear interpolation; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --- raw sender baseline ---------------------------------------------------------------------


def client_options() -> dict[str, Any]:
    """The options ``webhooks.delivery.sending`` passes to ``http.post``, from the settings."""
    from webhooks import ssrf
    from webhooks.conf import webhooks_settings as conf

    return {
        "timeout": conf.TIMEOUT,
        "connect_timeout": conf.CONNECT_TIMEOUT,
        "read_timeout": conf.READ_TIMEOUT,
        "max_response_bytes": conf.MAX_RESPONSE_BYTES,
        "allowed_networks": ssrf.parse_networks(conf.ALLOWED_NETWORKS),
        "require_https": conf.REQUIRE_HTTPS,
        "ca_bundle": conf.CA_BUNDLE,
    }


def raw_poster(receiver: str, path: str) -> Callable[[int], None]:
    """A function posting the signed body number ``seq`` with ``webhooks.http.post`` and the
    options a delivery uses (the bench settings; no database is touched)."""
    from webhooks import http, signing

    options = client_options()
    url = receiver + path
    secret = signing.generate_secret()
    body = raw_body(0)

    def post(seq: int) -> None:
        timestamp = int(time.time())
        msg_id = f"evt_RAW{seq:023d}"
        headers = {
            "Content-Type": "application/json",
            "User-Agent": http.USER_AGENT,
            "Accept-Encoding": "identity",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.signature_header([secret], msg_id, timestamp, body),
        }
        result = http.post(url, body, headers, **options)
        if not result.ok:
            raise RuntimeError(f"raw POST failed: {result.status_code} {result.error_class} "
                               f"{result.error}")

    return post


RAW_WARM = 50


def _raw_child(receiver: str, path: str, first: int, n: int, barrier: Any, queue: Any) -> None:
    """One sender process of the 2-process baseline (forked: its own session and sockets)."""
    try:
        post = raw_poster(receiver, path)
        for seq in range(first, first + RAW_WARM):
            post(seq)
        barrier.wait(timeout=30)
        cpu0 = time.process_time()
        started = time.monotonic()
        for seq in range(first + RAW_WARM, first + RAW_WARM + n):
            post(seq)
        queue.put((started, time.monotonic(), time.process_time() - cpu0, None))
    except BaseException as exc:  # reported by the parent
        queue.put((0.0, 0.0, 0.0, f"{type(exc).__name__}: {exc}"))


def raw_parallel(receiver: str, processes: int, n: int, receiver_pid: int) -> dict[str, Any]:
    """``processes`` forked senders posting ``n`` requests in all, started together: requests
    over the time from the first start to the last finish."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    path = f"/raw-{processes}p"
    barrier, queue = ctx.Barrier(processes + 1), ctx.Queue()
    share = n // processes
    children = [ctx.Process(target=_raw_child,
                            args=(receiver, path, i * (share + RAW_WARM), share, barrier, queue),
                            daemon=True)
                for i in range(processes)]
    for child in children:
        child.start()
    try:
        barrier.wait(timeout=60)
        receiver_cpu0 = process_cpu_seconds(receiver_pid)
        reports = [queue.get(timeout=120) for _ in children]
        receiver_cpu = process_cpu_seconds(receiver_pid) - receiver_cpu0
    finally:
        for child in children:
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join(timeout=5)
    errors = [r[3] for r in reports if r[3]]
    if errors:
        raise RuntimeError(f"a raw sender failed: {errors[0]}")
    total = share * processes
    got = ReceiverClient(receiver).unique(path)
    if got != total + RAW_WARM * processes:
        raise RuntimeError(f"the receiver counted {got} raw requests on {path}, expected "
                           f"{total + RAW_WARM * processes}")
    elapsed = max(r[1] for r in reports) - min(r[0] for r in reports)
    return {"processes": processes, "requests": total, "seconds": elapsed,
            "per_second": total / elapsed,
            "sender_cpu_us_per_request": sum(r[2] for r in reports) / total * 1e6,
            "receiver_cpu_us_per_request": receiver_cpu / total * 1e6}


def leg_raw(cfg: dict[str, Any]) -> dict[str, Any]:
    """``webhooks.http.post`` (its kept-alive session) posting signed 1 KB bodies, 1 process
    and then 2 processes at once, with the options a delivery uses."""
    import django

    django.setup()
    client = ReceiverClient(cfg["receiver"])
    client.reset()
    post = raw_poster(cfg["receiver"], "/raw")
    body = raw_body(0)

    warm, n = RAW_WARM, cfg["raw_requests"]
    for seq in range(warm):
        post(seq)
    cpu0, receiver_cpu0 = time.process_time(), process_cpu_seconds(cfg["receiver_pid"])
    started = time.perf_counter()
    for seq in range(warm, warm + n):
        post(seq)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    receiver_cpu = process_cpu_seconds(cfg["receiver_pid"]) - receiver_cpu0
    got = client.unique("/raw")
    if got != warm + n:
        raise RuntimeError(f"the receiver counted {got} raw requests, expected {warm + n}")
    two = raw_parallel(cfg["receiver"], 2, n, cfg["receiver_pid"])
    return {
        "requests": n,
        "seconds": elapsed,
        "per_second": n / elapsed,
        "body_bytes": len(body),
        "sender_cpu_us_per_request": cpu / n * 1e6,
        "receiver_cpu_us_per_request": receiver_cpu / n * 1e6,
        "two_processes": two,
        "per_second_2p": two["per_second"],
        # For reference only (not in any ratio): a bare requests.Session, same bodies.
        "bare_requests_per_second": bare_requests_rate(cfg["receiver"] + "/bare", body, n),
    }


def bare_requests_rate(url: str, body: bytes, n: int) -> float:
    """Requests/s of a plain kept-alive ``requests.Session`` (no guard, no signing)."""
    import requests

    headers = {"Content-Type": "application/json", "webhook-id": "evt_bare"}
    with requests.Session() as session:
        session.trust_env = False
        for _ in range(50):
            session.post(url, data=body, headers=headers, timeout=5).close()
        started = time.perf_counter()
        for _ in range(n):
            response = session.post(url, data=body, headers=headers, timeout=5)
            response.raise_for_status()
            response.close()
        return n / (time.perf_counter() - started)


# --- Django set-up ---------------------------------------------------------------------------


def fresh_database() -> dict[str, Any]:
    """Drop and recreate the bench database, migrate it, remove the sweep schedule."""
    import django
    from django.conf import settings

    db = settings.DATABASES["default"]
    started = time.perf_counter()
    if db["ENGINE"].endswith("sqlite3"):
        path = Path(db["NAME"])
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        vendor = "sqlite"
    elif db["ENGINE"].endswith("postgresql"):
        import psycopg
        from psycopg import sql

        name = db["NAME"]
        if not name.startswith("bench_"):
            raise RuntimeError(f"refusing to drop {name!r}: bench databases are named bench_*")
        with psycopg.connect(
            host=db.get("HOST") or "127.0.0.1", port=int(db.get("PORT") or 5432),
            user=db.get("USER") or None, password=db.get("PASSWORD") or None,
            dbname="postgres", autocommit=True, connect_timeout=5,
        ) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        vendor = "postgresql"
    else:
        raise RuntimeError(f"unsupported database engine {db['ENGINE']}")
    django.setup()
    from django.core.management import call_command
    from django_q.models import Schedule

    from webhooks.tasks import PRUNE_SCHEDULE_NAME, SWEEP_SCHEDULE_NAME

    call_command("migrate", verbosity=0, interactive=False)
    # The sweep (and the prune) would run at once in the cluster (next_run is "now"): a
    # measured drain must only see the work the benchmark gives it.
    removed, _ = Schedule.objects.filter(name=SWEEP_SCHEDULE_NAME).delete()
    Schedule.objects.filter(name=PRUNE_SCHEDULE_NAME).delete()
    if Schedule.objects.exists():
        raise RuntimeError("unexpected django-q2 schedules in the bench database")
    return {"vendor": vendor, "migrate_seconds": time.perf_counter() - started,
            "sweep_schedule_removed": bool(removed)}


def broker_info() -> dict[str, Any]:
    from django_q.brokers import get_broker

    broker = get_broker()
    return {"broker": type(broker).__name__, "queue_size": broker.queue_size(),
            "list_key": broker.list_key}


def forget_redis_keys() -> None:
    """Delete this run's django-q2 keys (named after the run's unique cluster name)."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return
    import redis
    from django.conf import settings

    client = redis.from_url(url, socket_timeout=5)
    keys = list(client.scan_iter(match=f"django_q:{settings.Q_CLUSTER['name']}:*"))
    if keys:
        client.delete(*keys)


def make_endpoint(url: str, event_type: str) -> Any:
    from webhooks.models import Endpoint, Subscription

    endpoint = Endpoint.objects.create(url=url, description="bench")
    Subscription.objects.create(endpoint=endpoint, event_type=event_type)
    return endpoint


# --- save overhead ---------------------------------------------------------------------------


@contextlib.contextmanager
def model_signals(connected: bool) -> Iterator[None]:
    """With ``connected=False``, the app's model receivers are disconnected meanwhile."""
    from django.db.models.signals import post_delete, post_save

    from webhooks.events import capture

    if connected:
        yield
        return
    post_save.disconnect(dispatch_uid="webhooks.events.on_post_save")
    post_delete.disconnect(dispatch_uid="webhooks.events.on_post_delete")
    try:
        yield
    finally:
        capture.connect()


def leg_save(cfg: dict[str, Any]) -> dict[str, Any]:
    """µs per ``Order.objects.create`` with and without the app's receivers, tasks enqueued."""
    setup = fresh_database()
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.db.backends.signals import connection_created

    from tests.testapp.models import Order
    from webhooks import dispatch
    from webhooks.models import DispatchToken, Event

    opened = [0]

    def count_connection(**kwargs: Any) -> None:
        opened[0] += 1

    connection_created.connect(count_connection, weak=False)
    customer = get_user_model().objects.create_user(username="bench-customer")
    # Never reached: no cluster runs in this leg, tasks only wait in the broker.
    make_endpoint("http://127.0.0.1:9/never-called", "order.created")
    total = Decimal("123.45")

    def saves(count: int, per_transaction: int, free_token: bool = False,
              autocommit: bool = False) -> float:
        """Seconds spent in ``count`` saves. With ``free_token`` every transaction finds no
        dispatch pending (as if a worker had just taken it) and pays for an enqueue: the
        worst case. Without, a dispatch stays pending (no cluster runs here): the best case,
        which is what a busy site sees most of the time."""
        gc.collect()
        spent = 0.0
        for _ in range(count // per_transaction):
            if free_token:  # not timed
                dispatch.release_queue_token()
                DispatchToken.objects.all().delete()
            started = time.perf_counter()
            if autocommit:  # no transaction of the caller's: Django commits the save itself
                Order.objects.create(customer=customer, status="new", total=total)
            else:
                with transaction.atomic():
                    for _ in range(per_transaction):
                        Order.objects.create(customer=customer, status="new", total=total)
            spent += time.perf_counter() - started
        return spent

    results: dict[str, Any] = {"setup": setup}
    for label, per_transaction, free_token, autocommit in (
            ("alone", 1, False, False), ("alone_enqueue", 1, True, False),
            ("batch100", 100, True, False), ("autocommit_enqueue", 1, True, True)):
        per_round = max(per_transaction,
                        cfg["saves"] // cfg["rounds"] // per_transaction * per_transaction)
        for connected in (True, False):  # warm up both paths (catalog, serializer, broker)
            with model_signals(connected):
                saves(per_transaction * (20 if per_transaction == 1 else 1), per_transaction,
                      autocommit=autocommit)
        rounds: dict[str, list[float]] = {"plain": [], "webhooks": []}
        connections = {"plain": 0, "webhooks": 0}
        events_before = Event.objects.count()
        tasks_before = broker_info()["queue_size"]
        for i in range(cfg["rounds"]):
            # Alternate which mode goes first so drift on a shared machine hits both alike.
            order = (True, False) if i % 2 == 0 else (False, True)
            for connected in order:
                mode = "webhooks" if connected else "plain"
                opened_before = opened[0]
                with model_signals(connected):
                    seconds = saves(per_round, per_transaction, free_token, autocommit)
                connections[mode] += opened[0] - opened_before
                rounds[mode].append(seconds / per_round * 1e6)
        events = Event.objects.count() - events_before
        tasks = broker_info()["queue_size"] - tasks_before
        n = per_round * cfg["rounds"]
        if events != n:
            raise RuntimeError(f"{label}: expected {n} events with the receivers connected "
                               f"and none without, found {events}")
        plain, hooked = statistics.median(rounds["plain"]), statistics.median(rounds["webhooks"])
        results[label] = {
            "saves_per_mode": n,
            "saves_per_transaction": per_transaction,
            "dispatch_pending": not free_token,
            "autocommit": autocommit,
            "rounds": cfg["rounds"],
            "plain_us_per_save": plain,
            "webhooks_us_per_save": hooked,
            "overhead_us_per_save": hooked - plain,
            "ratio": hooked / plain,
            "round_us_per_save": rounds,
            "events_written": events,
            "tasks_enqueued": tasks,
            "db_connections_opened": connections,
        }
    results["broker"] = broker_info()
    forget_redis_keys()
    return results


# --- history ---------------------------------------------------------------------------------


HISTORY_SPAN_MS = 30 * 86_400_000  # old rows are spread over 30 days, ending 10 days ago


def fill_history(rows: int, endpoint_ids: list[Any]) -> dict[str, Any]:
    """Insert ``rows`` old succeeded deliveries, one attempt each, and their events (one event
    per ``len(endpoint_ids)`` deliveries), with set-based SQL: ``generate_series`` on
    PostgreSQL, a recursive CTE on SQLite. Ids are UUIDv7-like (time first), as the app makes.
    """
    from django.db import connection, transaction

    from webhooks.models import Delivery, DeliveryAttempt, Event

    started = time.perf_counter()
    fan = len(endpoint_ids)
    events = max(1, -(-rows // fan))
    step = max(1, HISTORY_SPAN_MS // events)
    ms0 = int(time.time() * 1000) - 40 * 86_400_000
    payload = json.dumps({"id": "evt_old", "type": "ping.sent",
                          "timestamp": "2025-01-01T00:00:00.000Z",
                          "data": {"note": "h" * 150}}, separators=(",", ":"))
    headers = json.dumps({"Content-Type": "application/json", "webhook-id": "evt_old",
                          "webhook-timestamp": "1735689600", "webhook-signature": "v1," + "s" * 44})
    tables = {m: connection.ops.quote_name(m._meta.db_table)
              for m in (Event, Delivery, DeliveryAttempt)}
    params = {"events": events, "fan": fan, "ms0": ms0, "step": step, "payload": payload,
              "headers": headers, "url": "http://127.0.0.1:9/old-endpoint"}
    if connection.vendor == "postgresql":
        series = "generate_series(0, %(events)s - 1) AS g"
        pairs = ("(SELECT n / %(fan)s AS g, n %% %(fan)s AS k "
                 "FROM generate_series(0, %(events)s * %(fan)s - 1) AS n) AS p")
        ms = "(%(ms0)s::bigint + g::bigint * %(step)s)"
        ts = f"to_timestamp({ms} / 1000.0)"

        def uid(tag: str, n: str) -> str:
            return f"(lpad(to_hex({ms}), 12, '0') || '7{tag}' || lpad(to_hex({n}), 16, '0'))::uuid"

        endpoint = "(%(endpoints)s::uuid[])[k + 1]" if _uuid_pk() else \
            "(%(endpoints)s::bigint[])[k + 1]"
        params["endpoints"] = [str(e) if _uuid_pk() else e for e in endpoint_ids]
        prefix = ""
        json_cast = "::jsonb"
    else:
        series = "(SELECT g FROM s WHERE g < %(events)s) AS gg"
        pairs = "(SELECT g / %(fan)s AS g, g %% %(fan)s AS k FROM s) AS p"
        ms = "(%(ms0)s + g * %(step)s)"
        ts = f"strftime('%%Y-%%m-%%d %%H:%%M:%%f', {ms} / 1000.0, 'unixepoch')"

        def uid(tag: str, n: str) -> str:
            return f"printf('%%012x7{tag}%%016x', {ms}, {n})"

        ids_json = json.dumps([e.hex if hasattr(e, "hex") else e for e in endpoint_ids])
        params["endpoints"] = ids_json
        endpoint = "json_extract(%(endpoints)s, '$[' || k || ']')"
        # SQLite: INSERT may follow a WITH clause.
        prefix = ("WITH RECURSIVE s(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM s "
                  "WHERE g + 1 < %(events)s * %(fan)s) ")
        json_cast = ""
    event_id = uid("000", "g")
    delivery_id = uid("001", f"g * {fan} + k")
    attempt_id = uid("002", f"g * {fan} + k")
    # Table names are quoted by the backend; every value is a parameter.
    statements = [" ".join(parts) for parts in (
        [prefix, "INSERT INTO", tables[Event],
         "(id, type, owner_id, created_at, payload, error, dispatched_at) SELECT",
         f"{event_id}, 'ping.sent', NULL, {ts}, %(payload)s, '', {ts} FROM {series}"],
        [prefix, "INSERT INTO", tables[Delivery],
         "(id, event_id, endpoint_id, status, attempts, next_attempt_at, claim_token,",
         "last_attempt_at, last_status_code, last_error, created_at) SELECT",
         f"{delivery_id}, {event_id}, {endpoint}, 'succeeded', 1, NULL, NULL, {ts}, 200,",
         f"'', {ts} FROM {pairs}"],
        [prefix, "INSERT INTO", tables[DeliveryAttempt],
         "(id, delivery_id, endpoint_id, number, created_at, url, request_headers,",
         "status_code, response_headers, response_body, duration, error_class, error)",
         f"SELECT {attempt_id}, {delivery_id}, {endpoint}, 1, {ts}, %(url)s,",
         f"%(headers)s{json_cast}, 200, '{{}}'{json_cast}, 'ok', 0.001, '', '' FROM {pairs}"],
    )]
    timings = []
    with transaction.atomic(), connection.cursor() as cursor:
        for sql in statements:
            t0 = time.perf_counter()
            cursor.execute(sql, params)
            timings.append(time.perf_counter() - t0)
    analyzed = checkpointed = 0.0
    if connection.vendor == "postgresql":
        # What autovacuum would do soon after such a load, done now rather than mid-run.
        t0 = time.perf_counter()
        with connection.cursor() as cursor:
            for table in tables.values():
                cursor.execute(f"VACUUM ANALYZE {table}")  # quoted name
        analyzed = time.perf_counter() - t0
        # A site's history was written long ago; this one, a moment ago, left ~1 GB of WAL
        # per million rows and as many dirty pages: without a checkpoint now, the
        # checkpoints that WAL triggers (max_wal_size) run during the measured drain and
        # charge it for the fill (their writes, and a full-page image in the WAL for every
        # page the drain touches first). The empty drain starts after one too (CREATE
        # DATABASE's).
        t0 = time.perf_counter()
        try:
            with connection.cursor() as cursor:
                cursor.execute("CHECKPOINT")
        except Exception:  # not a superuser (nor pg_checkpoint): measured as it comes
            checkpointed = float("nan")
        else:
            checkpointed = time.perf_counter() - t0
    counts = {"events": Event.objects.count(), "deliveries": Delivery.objects.count(),
              "attempts": DeliveryAttempt.objects.count()}
    if counts["deliveries"] < events * fan or counts["attempts"] < events * fan:
        raise RuntimeError(f"history fill: expected {events * fan} rows, got {counts}")
    return {"rows": events * fan, "events": events, "counts": counts,
            "insert_seconds": timings, "vacuum_analyze_seconds": analyzed,
            "checkpoint_seconds": checkpointed,
            "seconds": time.perf_counter() - started}


def history_end() -> Any:
    """A time after every row :func:`fill_history` writes (they end 10 days ago)."""
    from datetime import timedelta

    from django.utils import timezone

    return timezone.now() - timedelta(days=9)


def _uuid_pk() -> bool:
    from django.db import models

    from webhooks.models import Endpoint

    return isinstance(Endpoint._meta.pk, models.UUIDField)


# --- drain throughput ------------------------------------------------------------------------


def start_cluster(run_dir: Path, name: str) -> subprocess.Popen[bytes]:
    """``python -m django qcluster`` in its own process group, logging to ``run_dir``."""
    log = open(run_dir / f"qcluster-{name}.log", "ab")  # noqa: SIM115 (closed in stop_cluster)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_DIR), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "django", "qcluster"],
        cwd=REPO_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    proc.log = log  # type: ignore[attr-defined]
    # The orchestrator kills this group too if this leg dies before its own clean-up.
    (run_dir / f"pgid-{proc.pid}").write_text(str(proc.pid))
    return proc


def stop_cluster(proc: subprocess.Popen[bytes], run_dir: Path) -> str:
    how = "exited"
    if proc.poll() is None:
        # The cluster's own process stops its workers, pusher and monitor; signalling them
        # all at once (the whole group) leaves the cluster waiting for them.
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
            how = "SIGTERM"
        except subprocess.TimeoutExpired:
            how = "SIGKILL"
    # Whatever is left of the group (workers of a cluster that did not stop in time).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    proc.log.close()  # type: ignore[attr-defined]
    (run_dir / f"pgid-{proc.pid}").unlink(missing_ok=True)
    return how


def leg_drain(cfg: dict[str, Any]) -> dict[str, Any]:
    """Events committed → all deliveries received, drained by a real 2-worker qcluster."""
    setup = fresh_database()
    from django.db import transaction
    from django.db.models import Count

    import webhooks
    from webhooks.models import Delivery, DeliveryAttempt, Event

    run_dir = Path(cfg["run_dir"])
    client = ReceiverClient(cfg["receiver"])
    paths = [f"/{cfg['name']}/endpoint-{i}" for i in range(cfg["endpoints"])]
    endpoints = [make_endpoint(cfg["receiver"] + path, "ping.sent") for path in paths]
    history = None
    if cfg.get("history_rows"):
        history = fill_history(cfg["history_rows"], [e.pk for e in endpoints])
    n, per_txn, warm = cfg["events"], cfg["events_per_transaction"], cfg["warmup_events"]
    expected = n * len(paths)
    client.reset()

    def produce(first: int, count: int) -> float | None:
        """Send ``count`` events, ``per_txn`` per transaction; when the first one committed."""
        committed: list[float] = []
        for start in range(first, first + count, per_txn):
            with transaction.atomic():
                if not committed:  # runs before the app's own on-commit hook
                    transaction.on_commit(lambda: committed.append(time.monotonic()))
                for seq in range(start, min(first + count, start + per_txn)):
                    webhooks.send_event("ping.sent", event_data(seq))
        return committed[0] if committed else None

    def all_received(count: int) -> bool:
        stats = client.stats()
        return all(stats.get(p, {}).get("unique", 0) >= count for p in paths)

    def succeeded(count: int) -> bool:
        return (Delivery.objects.filter(status=Delivery.Status.SUCCEEDED).count()
                - done_before) >= count

    done_before = Delivery.objects.filter(status=Delivery.Status.SUCCEEDED).count()
    cluster = start_cluster(run_dir, cfg["name"])
    result: dict[str, Any] = {"setup": setup, "broker": broker_info(), "history": history}
    try:
        started = time.monotonic()
        # Warm-up, one event per transaction (one task each, so that both workers get some):
        # the cluster is up, its workers have imported everything and connected.
        for seq in range(warm):
            produce(seq, 1)
        wait_until(lambda: all_received(warm), cfg["startup_timeout"], "the warm-up deliveries")
        wait_until(lambda: succeeded(warm * len(paths)), 30, "the warm-up deliveries' records")
        result["startup_seconds"] = time.monotonic() - started
        client.reset()
        cpu0 = group_cpu_seconds(cluster.pid)
        receiver_cpu0 = process_cpu_seconds(cfg["receiver_pid"])
        machine0, own0 = machine_busy_seconds(), time.process_time()
        with RssSampler(cluster.pid) as rss:
            produce_started = time.monotonic()
            first_commit = produce(warm, n)
            produced = time.monotonic()
            assert first_commit is not None
            try:
                wait_until(lambda: all_received(n), cfg["drain_timeout"],
                           f"{expected} deliveries", interval=0.02)
            except TimeoutError as exc:
                got = {p: client.stats().get(p, {}).get("unique", 0) for p in paths}
                raise TimeoutError(
                    f"{exc}; received (distinct) {got}, events not fanned out yet: "
                    f"{Event.objects.undispatched().count()}, deliveries by status: "
                    f"{dict(Delivery.objects.values_list('status').annotate(Count('id')))}"
                ) from None
            received = time.monotonic()
        result["worker_memory"] = rss.result(expected)
        wait_until(lambda: succeeded((warm + n) * len(paths)), 60,
                   "every delivery recorded as succeeded", interval=0.02)
        recorded = time.monotonic()
        cluster_cpu = group_cpu_seconds(cluster.pid) - cpu0
        receiver_cpu = process_cpu_seconds(cfg["receiver_pid"]) - receiver_cpu0
        machine_cpu = machine_busy_seconds() - machine0
        own_cpu = time.process_time() - own0
        window = time.monotonic() - produce_started
    finally:
        result["cluster_stopped_by"] = stop_cluster(cluster, run_dir)
    stats = client.stats()
    # Busy cores of the whole machine over the window, and what is not ours (the cluster, the
    # receiver, this producer; the database server is counted as not ours): other engineers'
    # work on a shared machine, which slows a leg without changing its CPU per delivery.
    result["machine_busy_cores"] = machine_cpu / window
    result["other_busy_cores"] = (machine_cpu - cluster_cpu - receiver_cpu - own_cpu) / window
    last = max(stats[p]["last_new_at"] for p in paths)
    first = min(stats[p]["first_at"] for p in paths)
    drain_seconds = last - first_commit
    statuses = dict(Delivery.objects.filter(created_at__gte=history_end())
                    .values_list("status").annotate(Count("id")))
    sample = Event.objects.filter(type="ping.sent").order_by("created_at").last()
    result.update({
        "events": n,
        "endpoints": len(paths),
        "events_per_transaction": per_txn,
        "deliveries": expected,
        "payload_bytes": len(sample.payload.encode()) if sample else None,
        "produce_seconds": produced - produce_started,
        "first_delivery_latency_seconds": first - first_commit,
        "drain_seconds": drain_seconds,
        "deliveries_per_second": expected / drain_seconds,
        "recorded_seconds": recorded - first_commit,
        "recorded_per_second": expected / (recorded - first_commit),
        "poll_seen_seconds": received - first_commit,
        "cluster_cpu_seconds": cluster_cpu,
        "cluster_cpu_us_per_delivery": cluster_cpu / expected * 1e6,
        "receiver_cpu_us_per_delivery": receiver_cpu / expected * 1e6,
        "received_requests": sum(stats[p]["count"] for p in paths),
        "duplicates": sum(stats[p]["count"] - stats[p]["unique"] for p in paths),
        "delivery_statuses": statuses,
        "attempts": DeliveryAttempt.objects.filter(created_at__gte=history_end()).count(),
        "undispatched_events": Event.objects.undispatched().count(),
    })
    forget_redis_keys()
    return result


# --- latency ---------------------------------------------------------------------------------


def leg_latency(cfg: dict[str, Any]) -> dict[str, Any]:
    """Save → receipt latency at a paced rate: one event per transaction, ``rate`` events/s
    for ``seconds``, to one endpoint, delivered by a real 2-worker qcluster.

    The producer notes ``time.monotonic()`` when each transaction has committed (its first
    on-commit callback, before the app's own) against the event's ``webhook-id``; the
    receiver notes the first arrival of each ``webhook-id`` on the same clock (Linux's
    monotonic clock is shared by every process).
    """
    setup = fresh_database()
    from django.db import transaction

    import webhooks
    from webhooks.models import Delivery

    run_dir = Path(cfg["run_dir"])
    client = ReceiverClient(cfg["receiver"])
    path = f"/{cfg['name']}/endpoint-0"
    make_endpoint(cfg["receiver"] + path, "ping.sent")
    rate, seconds, warm = cfg["rate"], cfg["seconds"], cfg["warmup_events"]
    n = max(1, int(rate * seconds))
    client.reset()
    committed: dict[str, float] = {}

    def send(seq: int) -> None:
        stamp: list[float] = []
        with transaction.atomic():
            transaction.on_commit(lambda: stamp.append(time.monotonic()))
            event = webhooks.send_event("ping.sent", event_data(seq))
        committed[event.public_id] = stamp[0]

    cluster = start_cluster(run_dir, cfg["name"])
    result: dict[str, Any] = {"setup": setup, "broker": broker_info()}
    try:
        started = time.monotonic()
        for seq in range(warm):
            send(seq)
            time.sleep(0.05)
        wait_until(lambda: client.unique(path) >= warm, cfg["startup_timeout"],
                   "the warm-up deliveries")
        result["startup_seconds"] = time.monotonic() - started
        committed.clear()
        client.reset()
        time.sleep(0.5)  # let the warm-up's tasks finish
        cpu0 = group_cpu_seconds(cluster.pid)
        behind = 0
        with RssSampler(cluster.pid) as rss:
            t0 = time.monotonic()
            for i in range(n):
                due = t0 + i / rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                elif pause < -0.01:
                    behind += 1
                send(warm + i)
            produced = time.monotonic()
            wait_until(lambda: client.unique(path) >= n, cfg["drain_timeout"],
                       f"{n} paced deliveries", interval=0.05)
        cluster_cpu = group_cpu_seconds(cluster.pid) - cpu0
        result["worker_memory"] = rss.result(n)
        wait_until(lambda: Delivery.objects.filter(
            status=Delivery.Status.SUCCEEDED).count() >= warm + n, 30,
            "every paced delivery recorded as succeeded", interval=0.05)
    finally:
        result["cluster_stopped_by"] = stop_cluster(cluster, run_dir)
    arrivals = client.arrivals(path)
    missing = [i for i in committed if i not in arrivals]
    if missing:
        raise RuntimeError(f"{len(missing)} paced events never arrived")
    latencies = sorted((arrivals[i] - t) * 1000 for i, t in committed.items())
    result.update({
        "rate": rate,
        "events": n,
        "offered_seconds": n / rate,
        "achieved_rate": n / (produced - t0),
        "producer_behind": behind,
        "latency_ms": {
            "p50": percentile(latencies, 0.50),
            "p90": percentile(latencies, 0.90),
            "p99": percentile(latencies, 0.99),
            "max": latencies[-1],
            "min": latencies[0],
            "mean": statistics.fmean(latencies),
        },
        "negative": sum(1 for x in latencies if x < 0),
        "cluster_cpu_seconds": cluster_cpu,
        "cluster_cpu_share": cluster_cpu / (produced - t0),
    })
    forget_redis_keys()
    return result


# --- database cost per delivery (PostgreSQL) -------------------------------------------------

#: The web side's writes: what the producer's transactions write (the event with its sequence
#: and the dispatch token); everything else is the worker side (fan-out, claims, attempts...).
WEB_WRITES = {"webhooks_event": ("n_tup_ins",), "webhooks_objectsequence":
              ("n_tup_ins", "n_tup_upd"), "webhooks_dispatchtoken": ("n_tup_ins", "n_tup_upd")}
#: A transaction that inserts into one of these tables is the producer's (the web side).
WEB_TABLES = ("webhooks_event", "webhooks_dispatchtoken", "webhooks_objectsequence")


def _wal_split(rows: list[tuple[str, str, str, str, int, int, int]]) -> dict[str, Any]:
    """``pgstats.database_wal`` rows → totals, per table, per record type, web vs worker."""
    web_xids = {xid for xid, table, rmgr, rtype, *_ in rows
                if table in WEB_TABLES and rmgr == "Heap" and rtype.startswith("INSERT")}
    out: dict[str, Any] = {"bytes": 0, "fpi_bytes": 0, "records": 0, "web_bytes": 0,
                           "worker_bytes": 0, "by_table": {}, "by_record": {}}
    for xid, table, rmgr, rtype, records, size, fpi in rows:
        out["bytes"] += size
        out["fpi_bytes"] += fpi
        out["records"] += records
        out["web_bytes" if xid in web_xids else "worker_bytes"] += size
        name = table or "(commit records)"
        t = out["by_table"].setdefault(name, {"bytes": 0, "fpi_bytes": 0, "records": 0})
        t["bytes"] += size
        t["fpi_bytes"] += fpi
        t["records"] += records
        key = f"{name} {rmgr}/{rtype}"
        r = out["by_record"].setdefault(key, {"bytes": 0, "records": 0})
        r["bytes"] += size
        r["records"] += records
    out["web_transactions"] = len(web_xids)
    return out


def _dbcost_scenario(cfg: dict[str, Any], scenario: str, event_type: str,
                     path: str) -> dict[str, Any]:
    """``cfg["dbcost_events"]`` events (one per transaction) to one endpoint at ``path``,
    delivered by a fresh 2-worker qcluster; what the database wrote meanwhile."""
    from django.db import connection, transaction

    import webhooks
    from bench import pgstats
    from webhooks.conf import webhooks_settings
    from webhooks.models import Delivery, DeliveryAttempt
    from webhooks.tasks import enqueue

    run_dir = Path(cfg["run_dir"])
    n = cfg["dbcost_events"]
    endpoint = make_endpoint(cfg["receiver"] + path, event_type)
    deliveries = Delivery.objects.filter(endpoint=endpoint)
    with connection.cursor() as cursor:
        before = pgstats.snapshot(cursor)
        wal_start = pgstats.wal_lsn(cursor)
    cpu0 = time.process_time()
    cluster = start_cluster(run_dir, f"{cfg['name']}-{scenario}")
    kicks = 0
    try:
        started = time.monotonic()
        for seq in range(n):
            with transaction.atomic():
                webhooks.send_event(event_type, event_data(seq))
        produced = time.monotonic()
        progress, last_change = -1, time.monotonic()
        deadline = time.monotonic() + cfg["drain_timeout"]
        while True:
            done = deliveries.filter(status=Delivery.Status.SUCCEEDED).count()
            if done >= n:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{scenario}: {done} of {n} deliveries succeeded")
            if done != progress:
                progress, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > cfg["kick_after"] and deliveries.due().exists():
                # Retries are due and nobody runs them: the django-q2 scheduler looks at the
                # wake-up schedule only every 30 s. Do what the wake-up would do.
                enqueue("drain")
                kicks += 1
                last_change = time.monotonic()
            time.sleep(0.05)
        recorded = time.monotonic()
    finally:
        stopped_by = stop_cluster(cluster, run_dir)
    with connection.cursor() as cursor:
        # The workers' backends have exited (their counters are flushed); this one is flushed
        # by the snapshot. The end of the WAL window is the flushed position.
        after = pgstats.snapshot(cursor, settle=True)
        wal = _wal_split(pgstats.database_wal(cursor, wal_start))
    producer_cpu = time.process_time() - cpu0
    d = pgstats.diff(before, after)
    attempts = DeliveryAttempt.objects.filter(endpoint_id=endpoint.pk).count()
    tables = d["tables"]
    web_rows = sum(tables.get(t, {}).get(k, 0) for t, keys in WEB_WRITES.items() for k in keys)
    updates = d["total"]["n_tup_upd"]
    return {
        "scenario": scenario,
        "events": n,
        "events_per_transaction": 1,
        "deliveries": n,
        "attempts": attempts,
        "retry_schedule": list(webhooks_settings.RETRY_SCHEDULE),
        "kicked_drains": kicks,
        "cluster_stopped_by": stopped_by,
        "produce_seconds": produced - started,
        "recorded_seconds": recorded - started,
        "settle_seconds": after["settle_s"],
        "rows": {"tables": tables, "total": d["total"], "written": d["rows_written"],
                 "web": web_rows, "worker": d["rows_written"] - web_rows},
        "rows_per_delivery": d["rows_written"] / n,
        "web_rows_per_event": web_rows / n,
        "worker_rows_per_delivery": (d["rows_written"] - web_rows) / n,
        "hot_update_share": d["total"]["n_tup_hot_upd"] / updates if updates else None,
        "wal": wal,
        "wal_bytes_per_delivery": wal["bytes"] / n,
        "web_wal_bytes_per_event": wal["web_bytes"] / n,
        "worker_wal_bytes_per_delivery": wal["worker_bytes"] / n,
        "fpi_share": wal["fpi_bytes"] / wal["bytes"] if wal["bytes"] else None,
        # Server-wide (every database: anyone else's work counts too) and the server's CPU.
        "server_wal_bytes": d["wal_bytes"],
        "postgres_cpu_us_per_delivery": d["cpu_s"] / n * 1e6,
        "producer_cpu_us_per_event": producer_cpu / n * 1e6,
    }


def leg_dbcost(cfg: dict[str, Any]) -> dict[str, Any]:
    """Database cost per delivered webhook: rows written (``pg_stat_user_tables``) and WAL
    bytes (this database's records, read back with ``pg_walinspect``), from the events'
    commits to the recorded attempts, split into the web side (the producer's transactions:
    the event, its sequence, the dispatch token) and the worker side (fan-out, claims,
    attempts, delivery states, endpoint health). Two scenarios, each on a fresh cluster: every
    delivery succeeds at once (``first_try``), and every delivery fails once with a 500 then
    succeeds on its retry (``retried``; ``bench.settings`` keeps the test settings' 1 s retry
    schedule). PostgreSQL only: SQLite keeps no such counters.
    """
    setup = fresh_database()
    from django.db import connection

    from bench import pgstats

    if connection.vendor != "postgresql":
        return {"setup": setup, "skipped": "PostgreSQL only"}
    # Every first try fails on purpose: the breaker would pause the endpoint after 5 (the
    # clusters this leg starts inherit its environment).
    os.environ["BENCH_NO_CIRCUIT_BREAKER"] = "1"
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        held = pgstats.hold_wal(cursor, f"bench_dbcost_{os.getpid()}")
    result: dict[str, Any] = {"setup": setup, "wal_held": held, "broker": broker_info()}
    try:
        for scenario, event_type, path in (
                ("first_try", "ping.sent", f"/{cfg['name']}/ok"),
                ("retried", "invoice.paid", f"/{cfg['name']}/fail-once")):
            result[scenario] = _dbcost_scenario(cfg, scenario, event_type, path)
    finally:
        with connection.cursor() as cursor:
            pgstats.release_wal(cursor, f"bench_dbcost_{os.getpid()}")
        forget_redis_keys()
    return result


# --- retries on time ---------------------------------------------------------------------------


def leg_retry(cfg: dict[str, Any]) -> dict[str, Any]:
    """How late a first retry goes out on an idle cluster.

    ``RETRY_SCHEDULE = [5]`` with the default 10 % jitter: each round commits
    ``cfg["retry_events"]`` events at once to an endpoint that answers 500 to every first try,
    reads every delivery's ``next_attempt_at`` (the due time, jitter included) once the first
    tries are recorded, and then nothing else happens on the site until the retries are in.
    Lateness is the second attempt's start over its due time. The bound the issue sets is due
    time + jitter + 1 s, so a lateness of at most 1 s (``next_attempt_at`` includes the
    jitter).
    """
    os.environ["BENCH_RETRY_SCHEDULE"] = "5"
    os.environ["BENCH_RETRY_JITTER"] = "0.1"
    os.environ["BENCH_NO_CIRCUIT_BREAKER"] = "1"
    setup = fresh_database()
    from django.db import transaction

    import webhooks
    from webhooks.models import Delivery, DeliveryAttempt

    run_dir = Path(cfg["run_dir"])
    endpoint = make_endpoint(cfg["receiver"] + f"/{cfg['name']}/fail-once", "ping.sent")
    deliveries = Delivery.objects.filter(endpoint=endpoint)
    late: list[float] = []
    gaps: list[float] = []
    cluster = start_cluster(run_dir, cfg["name"])
    try:
        time.sleep(cfg.get("settle_seconds", 3.0))  # the cluster is up and has nothing to do
        for round_ in range(cfg["retry_rounds"]):
            with transaction.atomic():
                for seq in range(cfg["retry_events"]):
                    webhooks.send_event("ping.sent", event_data(round_ * 1000 + seq))
            n = cfg["retry_events"]

            def first_tries_in(n: int = n) -> dict[Any, Any]:
                rows = list(deliveries.filter(attempts=1, status=Delivery.Status.PENDING)
                            .values_list("pk", "next_attempt_at"))
                return dict(rows) if len(rows) == n else {}

            def retried(due: dict[Any, Any]) -> bool:
                return deliveries.filter(pk__in=list(due), status=Delivery.Status.SUCCEEDED
                                         ).count() == len(due)

            due = wait_until(first_tries_in, 30, "the first tries", interval=0.02)
            wait_until(lambda due=due: retried(due), 60, "the retries", interval=0.1)
            attempts: dict[Any, dict[int, Any]] = {}
            for delivery_id, number, started in DeliveryAttempt.objects.filter(
                    delivery_id__in=due).values_list("delivery_id", "number", "created_at"):
                attempts.setdefault(delivery_id, {})[number] = started
            for delivery_id, due_at in due.items():
                late.append((attempts[delivery_id][2] - due_at).total_seconds())
                gaps.append((attempts[delivery_id][2] - attempts[delivery_id][1])
                            .total_seconds())
            time.sleep(1.0)  # idle again before the next round
    finally:
        stopped_by = stop_cluster(cluster, run_dir)
        forget_redis_keys()
    late.sort()
    return {
        "setup": setup, "broker": broker_info(), "cluster_stopped_by": stopped_by,
        "retry_schedule": [5], "retry_jitter": 0.1,
        "retries": len(late),
        "late_ms": {"p50": percentile(late, 0.5) * 1000, "max": late[-1] * 1000,
                    "min": late[0] * 1000},
        "gap_seconds": {"min": min(gaps), "max": max(gaps)},
        "within_bound": sum(1 for x in late if x <= 1.0),
    }


LEGS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "retry": leg_retry,
    "raw": leg_raw,
    "save": leg_save,
    "drain": leg_drain,
    "latency": leg_latency,
    "dbcost": leg_dbcost,
}
