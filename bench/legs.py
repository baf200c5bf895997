"""The legs of the benchmark. Each runs in its own process, started by ``bench/run.py``.

``raw`` needs no Django: it posts signed bodies with ``webhooks.http.post`` in a tight loop.
``save`` and ``drain`` set Django up with ``bench.settings`` (the environment names the
database and the broker) on a fresh database; ``drain`` starts a real ``qcluster``.
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


def group_cpu_seconds(pgid: int) -> float:
    """User+system CPU seconds of every live process in process group ``pgid`` (Linux)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += sum(int(x) for x in fields[11:15])
    return total / CLK_TCK


def process_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return sum(int(x) for x in fields[11:13]) / CLK_TCK


# --- raw sender baseline ---------------------------------------------------------------------


def client_options() -> dict[str, Any]:
    """The options ``webhooks.delivery.deliver`` passes to ``http.post``, from the settings."""
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


def leg_raw(cfg: dict[str, Any]) -> dict[str, Any]:
    """``webhooks.http.post`` (its kept-alive session) posting signed 1 KB bodies, 1 process,
    with the options a delivery uses (the bench settings; no database is touched)."""
    import django

    django.setup()
    from webhooks import http, signing

    options = client_options()

    url = cfg["receiver"] + "/raw"
    secret = signing.generate_secret()
    body = raw_body(0)
    client = ReceiverClient(cfg["receiver"])
    client.reset()

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

    warm, n = 50, cfg["raw_requests"]
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
    return {
        "requests": n,
        "seconds": elapsed,
        "per_second": n / elapsed,
        "body_bytes": len(body),
        "sender_cpu_us_per_request": cpu / n * 1e6,
        "receiver_cpu_us_per_request": receiver_cpu / n * 1e6,
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

    from webhooks.tasks import SWEEP_SCHEDULE_NAME

    call_command("migrate", verbosity=0, interactive=False)
    # The sweep would run at once in the cluster (its next_run is "now"): a measured drain
    # must only see the work the benchmark gives it.
    removed, _ = Schedule.objects.filter(name=SWEEP_SCHEDULE_NAME).delete()
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

    from webhooks import events

    if connected:
        yield
        return
    post_save.disconnect(dispatch_uid="webhooks.events.on_post_save")
    post_delete.disconnect(dispatch_uid="webhooks.events.on_post_delete")
    try:
        yield
    finally:
        events.connect()


def leg_save(cfg: dict[str, Any]) -> dict[str, Any]:
    """µs per ``Order.objects.create`` with and without the app's receivers, tasks enqueued."""
    setup = fresh_database()
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.db.backends.signals import connection_created

    from tests.testapp.models import Order
    from webhooks.models import DispatchToken, Event

    opened = [0]

    def count_connection(**kwargs: Any) -> None:
        opened[0] += 1

    connection_created.connect(count_connection, weak=False)
    customer = get_user_model().objects.create_user(username="bench-customer")
    # Never reached: no cluster runs in this leg, tasks only wait in the broker.
    make_endpoint("http://127.0.0.1:9/never-called", "order.created")
    total = Decimal("123.45")

    def saves(count: int, per_transaction: int, free_token: bool = False) -> float:
        """Seconds spent in ``count`` saves. With ``free_token`` every transaction finds no
        dispatch pending (as if a worker had just taken it) and pays for an enqueue: the
        worst case. Without, a dispatch stays pending (no cluster runs here): the best case,
        which is what a busy site sees most of the time."""
        gc.collect()
        spent = 0.0
        for _ in range(count // per_transaction):
            if free_token:
                DispatchToken.objects.all().delete()  # not timed
            started = time.perf_counter()
            with transaction.atomic():
                for _ in range(per_transaction):
                    Order.objects.create(customer=customer, status="new", total=total)
            spent += time.perf_counter() - started
        return spent

    results: dict[str, Any] = {"setup": setup}
    for label, per_transaction, free_token in (("alone", 1, False), ("alone_enqueue", 1, True),
                                               ("batch100", 100, True)):
        per_round = max(per_transaction,
                        cfg["saves"] // cfg["rounds"] // per_transaction * per_transaction)
        for connected in (True, False):  # warm up both paths (catalog, serializer, broker)
            with model_signals(connected):
                saves(per_transaction * (20 if per_transaction == 1 else 1), per_transaction)
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
                    seconds = saves(per_round, per_transaction, free_token)
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
    for path in paths:
        make_endpoint(cfg["receiver"] + path, "ping.sent")
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
        return Delivery.objects.filter(status=Delivery.Status.SUCCEEDED).count() >= count

    cluster = start_cluster(run_dir, cfg["name"])
    result: dict[str, Any] = {"setup": setup, "broker": broker_info()}
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
        wait_until(lambda: succeeded((warm + n) * len(paths)), 60,
                   "every delivery recorded as succeeded", interval=0.02)
        recorded = time.monotonic()
        cluster_cpu = group_cpu_seconds(cluster.pid) - cpu0
        receiver_cpu = process_cpu_seconds(cfg["receiver_pid"]) - receiver_cpu0
    finally:
        result["cluster_stopped_by"] = stop_cluster(cluster, run_dir)
    stats = client.stats()
    last = max(stats[p]["last_new_at"] for p in paths)
    first = min(stats[p]["first_at"] for p in paths)
    drain_seconds = last - first_commit
    statuses = dict(Delivery.objects.values_list("status").annotate(Count("id")))
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
        "attempts": DeliveryAttempt.objects.count(),
        "undispatched_events": Event.objects.undispatched().count(),
    })
    forget_redis_keys()
    return result


LEGS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "raw": leg_raw,
    "save": leg_save,
    "drain": leg_drain,
}
