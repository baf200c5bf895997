"""Scale-out curve: 1, 2, 3 ``qcluster`` processes against one PostgreSQL and one Redis.

    python bench/scale.py [--quick] [--json PATH] [--clusters 1,2,3] [--workers N]
                          [--single-worker] [--events N] [--endpoints N]
                          [--events-per-transaction N] [--pg-url URL] [--redis-url URL]

For each number of clusters ``k`` (and, with ``--single-worker``, first one cluster of one
worker), on a fresh database (``bench_scale``, dropped and recreated): start ``k`` clusters of
``bench.scale_settings`` (``bench.settings`` with ``--workers`` workers each, 2 as in
``bench/run.py``) under the same django-q2 cluster name, so they pop tasks from one Redis
queue and claim deliveries from one database; commit the same events
(``--events-per-transaction`` per transaction, each fanned out to ``--endpoints`` endpoints of
the loopback receiver, ``bench/receiver.py``) and measure

- deliveries/s from the first commit to the last delivery received;
- the CPU seconds spent, from the first commit until every delivery is recorded as
  succeeded, by PostgreSQL (the postmaster, its auxiliary processes and the backends of the
  bench database), ``redis-server``, the clusters' process groups, the receiver, this
  producer, and the rest of the machine (``/proc/stat`` busy time minus all of those: other
  databases' backends, backends that exited, anyone else's work), as µs per delivery and as
  shares of the busy time; and from those, the CPU-bound ceiling: the machine's cores over the
  CPU per delivery of the named parts (what the setup would reach on a quiet machine);
- rows written (``pg_stat_user_tables``) and WAL bytes per delivery (``bench/pgstats.py``),
  read once the clusters have stopped (their backends flush their statistics on exit);
- after the last ``k``: bytes per row of the event, delivery and attempt tables (indexes and
  TOAST included), as left by the run (dead row versions of the updated deliveries included;
  this machine's PostgreSQL runs with autovacuum off) and after ``VACUUM FULL``.

The default database URL sets ``conn_max_age=60`` (persistent connections, as
docs/production.md advises). The last line printed starts with ``SCALE``. Every process
started (the receiver, each cluster's process group) is stopped at the end, also on Ctrl-C,
SIGTERM or a failure. Logs go to ``var/bench/<run id>/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

from bench.legs import (  # noqa: E402
    CLK_TCK,
    ReceiverClient,
    _stat_fields,
    event_data,
    forget_redis_keys,
    fresh_database,
    group_cpu_seconds,
    machine_busy_seconds,
    make_endpoint,
    process_cpu_seconds,
    start_cluster,
    stop_cluster,
    wait_until,
)
from bench.run import DEFAULT_REDIS_URL, Runner, environment, exit_on_sigterm, fmt  # noqa: E402

DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/bench_scale?conn_max_age=60"
TABLES = ("webhooks_event", "webhooks_delivery", "webhooks_deliveryattempt")
#: CPU columns, in report order.
PARTS = ("postgres", "redis", "clusters", "receiver", "producer", "rest")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="django-webhooks scale-out curve")
    parser.add_argument("--quick", action="store_true", help="a short run (under 3 minutes)")
    parser.add_argument("--json", metavar="PATH", help="write every figure to PATH")
    parser.add_argument("--clusters", default="1,2,3",
                        help="numbers of qclusters to run, comma-separated (1,2,3)")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes per cluster (2, as in bench/run.py)")
    parser.add_argument("--single-worker", action="store_true",
                        help="also run one cluster of 1 worker first (the curve's first point)")
    parser.add_argument("--events", type=int, help="events per point (5000; quick 1000)")
    parser.add_argument("--endpoints", type=int, default=3,
                        help="endpoints every event fans out to (3)")
    parser.add_argument("--events-per-transaction", type=int, default=100, metavar="N",
                        help="events committed per transaction (100)")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_SCALE_PG_URL", DEFAULT_PG_URL),
                        help="PostgreSQL URL of the bench database (its name must start with "
                             "bench_; it is dropped and recreated)")
    parser.add_argument("--redis-url",
                        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    args = parser.parse_args(argv)
    args.events = args.events or (1000 if args.quick else 5000)
    args.cluster_counts = [int(k) for k in args.clusters.split(",") if k.strip()]
    return args


# --- CPU of the machine's parts ------------------------------------------------------------


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _cpu(pid: str) -> float:
    """User+system CPU seconds of ``pid`` and of its children it has reaped."""
    fields = _stat_fields(pid)
    return sum(int(x) for x in fields[11:15]) / CLK_TCK if fields else 0.0


def backend_database(title: str) -> str | None:
    """The database of a PostgreSQL backend from its process title, ``None`` for the
    postmaster and the auxiliary processes. A backend's title is ``postgres: [<cluster
    name>: ]<user> <database> <client> <activity>``, its client ``host(port)`` or ``[local]``."""
    words = title.split()
    if not words or words[0] != "postgres:":
        return None
    words = words[1:]
    if words and words[0].endswith(":"):  # cluster_name, e.g. "15/main:"
        words = words[1:]
    if len(words) >= 3 and ("(" in words[2] or words[2] == "[local]"):
        return words[1]
    return None


def named_cpu_seconds(database: str) -> dict[str, float]:
    """CPU seconds of ``redis-server`` and of PostgreSQL, split into what serves ``database``
    (the postmaster, its auxiliary processes and the backends of ``database``), the live
    backends of other databases (other people's tests) and the backends the postmaster has
    reaped (with persistent connections, ``conn_max_age``, the bench database's backends
    live through a measured window: what exits then is other people's short connections)."""
    out = {"postgres": 0.0, "postgres_other_databases": 0.0, "postgres_reaped": 0.0,
           "redis": 0.0}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        comm = _comm(pid)
        if comm == "redis-server":
            out["redis"] += _cpu(pid)
        elif comm == "postgres":
            title = _cmdline(pid)
            if not title.startswith("postgres:"):  # the postmaster
                fields = _stat_fields(pid) or ["0"] * 15
                out["postgres"] += sum(int(x) for x in fields[11:13]) / CLK_TCK
                out["postgres_reaped"] += sum(int(x) for x in fields[13:15]) / CLK_TCK
                continue
            other = backend_database(title) not in (None, database)
            out["postgres_other_databases" if other else "postgres"] += _cpu(pid)
    return out


class CpuMeter:
    """CPU seconds of every part of the machine between ``start()`` and ``stop()``."""

    def __init__(self, database: str, cluster_pids: list[int], receiver_pid: int) -> None:
        self.database, self.cluster_pids, self.receiver_pid = database, cluster_pids, receiver_pid

    def read(self) -> dict[str, float]:
        parts = named_cpu_seconds(self.database)
        parts["clusters"] = sum(group_cpu_seconds(pid) for pid in self.cluster_pids)
        parts["receiver"] = process_cpu_seconds(self.receiver_pid)
        parts["producer"] = time.process_time()
        parts["machine"] = machine_busy_seconds()
        parts["at"] = time.monotonic()
        return parts

    def start(self) -> None:
        self.before = self.read()

    def stop(self) -> dict[str, float]:
        after = self.read()
        spent = {key: after[key] - self.before[key] for key in after}
        named = sum(spent[p] for p in PARTS if p != "rest")
        spent["rest"] = spent["machine"] - named
        spent["window"] = spent.pop("at")
        return spent


# --- database figures -------------------------------------------------------------------------


def db_counters(settle: bool = False) -> dict[str, Any]:
    """``pgstats.snapshot`` of the bench database (WAL, rows written per table, PostgreSQL
    CPU), and the transactions of the other databases so far (WAL is the whole server's: other
    people's tests during the window inflate it)."""
    from django.db import connection

    from bench import pgstats

    with connection.cursor() as cursor:
        snap = pgstats.snapshot(cursor, settle=settle)
        cursor.execute("SELECT coalesce(sum(xact_commit + xact_rollback), 0) FROM "
                       "pg_stat_database WHERE datname <> current_database()")
        (others,) = cursor.fetchone()
    return {**snap, "other_db_transactions": int(others)}


def table_sizes() -> dict[str, dict[str, float]]:
    """Rows and bytes (table, indexes, TOAST) of the event, delivery and attempt tables."""
    from django.db import connection

    out = {}
    with connection.cursor() as cursor:
        for table in TABLES:
            count = f"SELECT count(*) FROM {connection.ops.quote_name(table)}"  # noqa: S608
            cursor.execute(
                f"SELECT ({count}), pg_total_relation_size(%s::regclass), "
                "pg_indexes_size(%s::regclass), pg_relation_size(%s::regclass)",
                [table, table, table])
            rows, total, indexes, heap = cursor.fetchone()
            out[table] = {"rows": rows, "total_bytes": total, "index_bytes": indexes,
                          "heap_bytes": heap,
                          "bytes_per_row": total / rows if rows else float("nan"),
                          "index_bytes_per_row": indexes / rows if rows else float("nan")}
    return out


def measure_sizes() -> dict[str, Any]:
    from django.db import connection

    as_left = table_sizes()
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute("VACUUM FULL ANALYZE " + connection.ops.quote_name(table))
    return {"as_left": as_left, "vacuum_full": table_sizes()}


# --- one point of the curve ---------------------------------------------------------------


def produce(first: int, count: int, per_transaction: int) -> float:
    """Commit events ``first`` … ``first + count - 1``, ``per_transaction`` per transaction;
    returns when the first transaction committed (``time.monotonic()``)."""
    from django.db import transaction

    import webhooks

    first_commit = 0.0
    for start in range(first, first + count, per_transaction):
        with transaction.atomic():
            for seq in range(start, min(first + count, start + per_transaction)):
                webhooks.send_event("ping.sent", event_data(seq))
        first_commit = first_commit or time.monotonic()
    return first_commit


def cluster_ready(run_dir: Path, name: str) -> bool:
    log = run_dir / f"qcluster-{name}.log"
    return log.exists() and " running." in log.read_text(errors="replace")


def log_offsets(run_dir: Path, names: list[str]) -> dict[str, int]:
    return {name: (run_dir / f"qcluster-{name}.log").stat().st_size for name in names}


def tasks_run(run_dir: Path, offsets: dict[str, int]) -> dict[str, Any]:
    """Per cluster, from its log after ``offsets``: tasks started by function, and how many of
    its worker processes started one (who shared the work)."""
    out: dict[str, Any] = {}
    for name, offset in offsets.items():
        with open(run_dir / f"qcluster-{name}.log", "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
        tasks: dict[str, int] = {}
        workers = set()
        for line in text.splitlines():
            head, found, task = line.partition(" processing webhooks.")
            if found:
                kind = task.split()[0]
                tasks[kind] = tasks.get(kind, 0) + 1
                workers.add(head.rsplit(" ", 1)[-1])
        out[name] = {"tasks": tasks, "busy_workers": len(workers)}
    return out


def run_point(k: int, workers: int, args: argparse.Namespace, runner: Runner,
              sizes: bool = False) -> dict[str, Any]:
    """``k`` clusters of ``workers`` workers drain the same events; see the module's
    docstring."""
    from django.conf import settings
    from django.db import connections

    connections.close_all()  # the database is dropped: no connection of ours may outlive it
    setup = fresh_database()
    from bench import pgstats
    from webhooks.models import Delivery

    # django-q2 logs every enqueue at INFO: not in the producer's output.
    logging.getLogger("django-q").setLevel(logging.WARNING)

    client = ReceiverClient(runner.receiver_url)
    paths = [f"/scale-{k}x{workers}/endpoint-{i}" for i in range(args.endpoints)]
    for path in paths:
        make_endpoint(runner.receiver_url + path, "ping.sent")
    n, per_txn = args.events, args.events_per_transaction
    warm = 4 * k
    expected = n * len(paths)

    def received(count: int) -> bool:
        stats = client.stats()
        return all(stats.get(p, {}).get("unique", 0) >= count for p in paths)

    def recorded(count: int) -> bool:
        return Delivery.objects.filter(status=Delivery.Status.SUCCEEDED).count() >= count

    names = [f"scale-{k}x{workers}-{i + 1}" for i in range(k)]
    os.environ["BENCH_WORKERS"] = str(workers)  # read by bench.scale_settings in each cluster
    clusters = []
    result: dict[str, Any] = {"clusters": k, "workers_per_cluster": workers, "setup": setup}
    try:
        for name in names:
            clusters.append(start_cluster(runner.run_dir, name))
        started = time.monotonic()
        wait_until(lambda: all(cluster_ready(runner.run_dir, name) for name in names), 90,
                   f"{k} clusters to start", interval=0.1)
        # Warm-up, one event per transaction: every cluster is up, some workers have
        # imported everything and connected (not necessarily all of them).
        for seq in range(warm):
            produce(seq, 1, 1)
            time.sleep(0.02)
        wait_until(lambda: received(warm), 60, "the warm-up deliveries")
        wait_until(lambda: recorded(warm * len(paths)), 30, "the warm-up deliveries' records")
        result["startup_seconds"] = time.monotonic() - started
        client.reset()
        counters0 = db_counters()
        meter = CpuMeter(settings.DATABASES["default"]["NAME"], [c.pid for c in clusters],
                         runner.receiver.pid if runner.receiver else 0)
        offsets = log_offsets(runner.run_dir, names)
        meter.start()
        first_commit = produce(warm, n, per_txn)
        produced = time.monotonic()
        wait_until(lambda: received(n), max(60.0, expected * 0.05), f"{expected} deliveries",
                   interval=0.02)
        wait_until(lambda: recorded((warm + n) * len(paths)), 60,
                   "every delivery recorded as succeeded", interval=0.05)
        cpu = meter.stop()
        result["tasks_per_cluster"] = tasks_run(runner.run_dir, offsets)
    finally:
        result["stopped_by"] = [stop_cluster(c, runner.run_dir) for c in clusters]
    counters1 = db_counters(settle=True)  # the clusters' backends have exited: flushed
    stats = client.stats()
    last = max(stats[p]["last_new_at"] for p in paths)
    db = pgstats.diff(counters0, counters1)
    wal = db["wal_bytes"]
    busy = cpu["machine"]
    result.update({
        "events": n,
        "endpoints": len(paths),
        "deliveries": expected,
        "workers": k * workers,
        "produce_seconds": produced - first_commit,
        "drain_seconds": last - first_commit,
        "deliveries_per_second": expected / (last - first_commit),
        "cpu_window_seconds": cpu["window"],
        "cpu_seconds": cpu,
        "cpu_us_per_delivery": {p: cpu[p] / expected * 1e6 for p in (*PARTS, "machine")},
        "cpu_share": {p: cpu[p] / busy if busy else float("nan") for p in PARTS},
        "busy_cores": busy / cpu["window"],
        # What this setup would deliver with every core of the machine to itself: the cores
        # over the CPU per delivery of the named parts (noise from others' work left out).
        "cpu_bound_ceiling_per_second": (os.cpu_count() or 1) * expected
        / sum(cpu[p] for p in PARTS if p != "rest"),
        "other_db_transactions": counters1["other_db_transactions"]
        - counters0["other_db_transactions"],
        "wal_bytes": wal,
        "wal_bytes_per_delivery": wal / expected,
        "rows_written": db["tables"],
        "rows_written_per_delivery": db["rows_written"] / expected,
        "rows_written_per_delivery_by_table": {
            table: sum(c[col] for col in ("n_tup_ins", "n_tup_upd", "n_tup_del")) / expected
            for table, c in db["tables"].items()},
        "duplicates": sum(stats[p]["count"] - stats[p]["unique"] for p in paths),
    })
    if sizes:
        result["table_sizes"] = measure_sizes()
    forget_redis_keys()
    return result


# --- report --------------------------------------------------------------------------------


def report(figures: dict[str, Any]) -> str:
    p = figures["parameters"]
    env = figures["environment"]
    lines = [
        "",
        f"Scale-out ({figures['mode']}, run {figures['run_id']}): {p['events']} events "
        f"({p['events_per_transaction']}/txn) x {p['endpoints']} endpoints per point; "
        f"Python {env['python']}, {env['cpus']} CPUs, "
        f"load {fmt(env['loadavg_at_start'] and env['loadavg_at_start'][0], '.2f')}",
        f"  {'k':>2} {'workers':>7} {'busy':>4} {'tasks':>5} {'deliv/s':>8} {'seconds':>7} "
        f"{'cores':>5} {'ceil/s':>6}  "
        + " ".join(f"{part:>9}" for part in PARTS)
        + f" {'rows/d':>6} {'WAL B/d':>7}",
    ]
    for point in figures["points"]:
        if not point.get("deliveries"):
            lines.append(f"  {point['clusters']:>2} x {point['workers_per_cluster']} failed: "
                         f"{point.get('error')}")
            continue
        busy = sum(c["busy_workers"] for c in point["tasks_per_cluster"].values())
        tasks = sum(sum(c["tasks"].values()) for c in point["tasks_per_cluster"].values())
        shares = " ".join(f"{point['cpu_share'][part] * 100:>8.0f}%" for part in PARTS)
        per = " ".join(f"{point['cpu_us_per_delivery'][part]:>9.0f}" for part in PARTS)
        lines.append(
            f"  {point['clusters']:>2} {point['workers']:>7} {busy:>4} {tasks:>5} "
            f"{point['deliveries_per_second']:>8.0f} {point['drain_seconds']:>7.2f} "
            f"{point['busy_cores']:>5.2f} {point['cpu_bound_ceiling_per_second']:>6.0f}  "
            f"{shares} "
            f"{fmt(point['rows_written_per_delivery'], '.2f'):>6} "
            f"{fmt(point['wal_bytes_per_delivery'], '.0f'):>7}")
        lines.append(f"  {'':>38} {'µs/d':>6}  {per}")
    lines += [
        "  (busy: worker processes that ran a task in the window; tasks: dispatch + drain "
        "tasks run then;",
        "   cores: busy cores of the machine over the window; ceil/s: the machine's cores over "
        "the CPU per delivery of",
        "   the named parts (what the run would reach with the machine to itself, if CPU-bound); "
        "% : share of the busy time;",
        "   µs/d: CPU µs per delivery;",
        "   postgres: postmaster, auxiliary processes and the bench database's backends; "
        "clusters: every qcluster",
        "   process group; rest: the machine's busy time minus the named parts (other "
        "databases' backends, exited backends, others' work);",
        "   rows/d, WAL B/d: rows written (inserted + updated + deleted) and WAL bytes per "
        "delivery, events included)",
    ]
    sizes = figures.get("table_sizes")
    if sizes:
        lines += ["", "Table sizes after the last point (bytes per row, indexes and TOAST "
                      "included): as left / after VACUUM FULL"]
        for table in TABLES:
            left, full = sizes["as_left"][table], sizes["vacuum_full"][table]
            lines.append(
                f"  {table:<26} {left['rows']:>7} rows  {fmt(left['bytes_per_row']):>6} / "
                f"{fmt(full['bytes_per_row']):>6} B/row  (indexes "
                f"{fmt(full['index_bytes_per_row'])} B/row after VACUUM FULL)")
    return "\n".join(lines)


def scale_line(figures: dict[str, Any]) -> str:
    ok = [p for p in figures["points"] if p.get("deliveries")]
    points = [p for p in ok if p["workers_per_cluster"] == figures["parameters"]["workers"]]
    single = [p for p in ok if p["workers_per_cluster"] == 1 and p["clusters"] == 1]
    curve = ",".join(f"{p['clusters']}:{p['deliveries_per_second']:.0f}" for p in points)
    shares = ",".join(
        f"{p['clusters']}:" + "/".join(f"{p['cpu_share'][part] * 100:.0f}" for part in PARTS)
        for p in points)
    cluster_us = ",".join(f"{p['clusters']}:{p['cpu_us_per_delivery']['clusters']:.0f}"
                          for p in points)
    pg_us = ",".join(f"{p['clusters']}:{p['cpu_us_per_delivery']['postgres']:.0f}"
                     for p in points)
    first = (f" single_worker={single[0]['deliveries_per_second']:.0f}" if single
             and figures["parameters"]["workers"] != 1 else "")
    ceiling = ",".join(f"{p['clusters']}:{p['cpu_bound_ceiling_per_second']:.0f}"
                       for p in points)
    return (f"SCALE clusters={curve}{first} cpu_ceiling={ceiling} "
            f"share%({'/'.join(PARTS)})={shares} cluster_us/d={cluster_us} pg_us/d={pg_us}")


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    runner = Runner(args)  # the receiver, and every cluster group it records, stopped in close()
    os.environ.pop("BENCH_SQLITE_PATH", None)
    os.environ.update(runner.leg_env("pg", "scale"))  # the clusters inherit it
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.scale_settings"
    started = time.monotonic()
    figures: dict[str, Any] = {
        "run_id": runner.run_id,
        "mode": "quick" if args.quick else "full",
        "environment": environment(),
        "parameters": {"events": args.events, "endpoints": args.endpoints,
                       "events_per_transaction": args.events_per_transaction,
                       "clusters": args.cluster_counts, "workers": args.workers,
                       "single_worker": args.single_worker,
                       "pg_url": args.pg_url, "redis_url": args.redis_url},
        "points": [],
    }
    try:
        runner.start_receiver()
        print(f"receiver at {runner.receiver_url}; logs in {runner.run_dir}", flush=True)
        plan = [(1, 1)] if args.single_worker else []
        plan += [(k, args.workers) for k in args.cluster_counts]
        for i, (k, workers) in enumerate(plan):
            print(f"  … {k} cluster(s) x {workers} worker(s)", end="", flush=True)
            t0 = time.monotonic()
            last = i == len(plan) - 1
            try:
                point = run_point(k, workers, args, runner, sizes=last)
            except Exception as exc:
                traceback.print_exc()
                runner.errors.append(f"{k} x {workers}: {type(exc).__name__}: {exc}")
                point = {"clusters": k, "workers_per_cluster": workers,
                         "error": f"{type(exc).__name__}: {exc}"}
            finally:
                runner.kill_leftover_clusters()
            figures["points"].append(point)
            if last and point.get("table_sizes"):
                figures["table_sizes"] = point.pop("table_sizes")
            print(f" {time.monotonic() - t0:.1f}s", flush=True)
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        runner.forget_redis_keys("scale")
        runner.close()
    figures.update(errors=runner.errors, seconds=time.monotonic() - started)
    out = [report(figures)]
    out += ["", "ERRORS:", *(f"  {error}" for error in runner.errors)] if runner.errors else []
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")
        out += ["", f"figures written to {args.json}"]
    print("\n".join([*out, "", f"(total {figures['seconds']:.0f}s)", scale_line(figures)]))
    return 1 if runner.errors else 0


if __name__ == "__main__":
    sys.exit(main())
