"""django-webhooks benchmark (not part of the test suite).

    python bench/run.py [--quick] [--json PATH] [--skip-pg] [--skip-save]
                        [--skip-history] [--skip-latency] [--history-rows N]
                        [--latency-seconds S] [--events N] [--events-per-transaction N]
                        [--endpoints N]

Measures, in one run, on a fresh database per leg:

1. save overhead: µs per ``Order.objects.create`` (the test app's model that publishes
   ``order.created``) with one subscribed endpoint, against the same creates with the app's
   model receivers disconnected; one save per transaction, 100 per transaction, and one save
   in autocommit (no transaction of the caller's: Django commits the save itself). django-q2
   runs with ``sync=False`` and no cluster, so the on-commit enqueue is paid (and measured)
   but nothing is delivered inline.
2. drain throughput: events of ~1 KB committed (100 per transaction) and delivered to a
   loopback receiver (``bench/receiver.py``) by a real ``qcluster`` with 2 workers, from the
   commit of the first event to the arrival of the last delivery; on SQLite with the ORM
   broker and on PostgreSQL with the Redis broker (skipped when they do not answer).
3. the raw sender baseline: ``webhooks.http.post`` posting signed 1 KB bodies to the same
   receiver in a tight loop, in one process and then in two processes at once, measured
   right before and right after every drain leg; a drain is compared with the mean of those
   two (``vs raw``: 1 process, ``vs raw2``: 2 processes).
4. history: the same drain again on a database that already holds ``--history-rows`` old
   succeeded deliveries (one attempt each, and their events), inserted with set-based SQL,
   compared with the empty-table drain of the same run (``history/empty``).
5. latency: one event per transaction, paced at 100 events/s (PostgreSQL + Redis) and at
   20 events/s (SQLite + ORM broker) for ``--latency-seconds``, to one endpoint; per event,
   commit (producer) → first arrival (receiver) on the shared monotonic clock; p50/p90/p99.
6. database cost (PostgreSQL + Redis): ``--dbcost-events`` events (500), one per transaction,
   to one endpoint that answers 200, then to one that answers 500 to each webhook's first try
   and 200 to its retry; rows written (``pg_stat_user_tables``) and WAL bytes (the bench
   database's own records, read back with ``pg_walinspect``) per delivered webhook, from the
   commits to the recorded attempts, split into the web side (per event written) and the
   worker side (per delivery), with the rows per table.
7. retries on time: on an idle cluster (each backend), rounds of events to an endpoint that
   answers 500 to every first try, ``RETRY_SCHEDULE = [5]`` with 10 % jitter; per retry, its
   start over its due time (``next_attempt_at``, jitter included): the issue's bound is 1 s.
8. worker memory: the RSS of every qcluster process, sampled from ``/proc`` every 0.1 s in
   the drain, history and latency legs: peak, and start → end growth per 1,000 deliveries of
   the processes that lived through the leg.

The last line printed starts with ``RATIOS``: ``save_alone``, ``save_alone_enqueue`` and
``save_batch100`` are µs/save with the app over µs/save without it (SQLite + ORM broker;
``save_alone``: a dispatch is already pending, as on a busy site, so the commit only finds the
dispatch token; ``save_alone_enqueue``: every commit enqueues a task, the worst case; 100 saves
per transaction enqueue once per transaction; ``save_autocommit_enqueue``: a save outside
any transaction that enqueues; ``pg_save_…``: the same on PostgreSQL + Redis broker);
``sqlite_vs_raw`` and
``pg_redis_vs_raw`` are drain deliveries/s over raw requests/s (``…_vs_raw2``: over the
2-process raw sender); ``…_history`` is the drain with history over the empty drain (deliveries/s;
``…_history_cpu``: cluster CPU per delivery, empty over history, which others' work on a
shared machine does not move);
``…_p50_ms``/``…_p99_ms`` the paced latencies; ``pg_rows_per_delivery``,
``pg_wal_bytes_per_delivery`` (and ``…_retried_delivery``: one retry each) the database
cost; ``…_retry_late_max_ms`` the latest retry over its due time (idle cluster);
``…_rss_mib`` the peak worker RSS and
``…_rss_kib_per_1000`` its growth per 1,000 deliveries (``n/a`` when a leg was skipped or
failed). The exit status is 1 when a leg failed. Logs of every process go to
``var/bench/<run id>/``; PostgreSQL legs use (drop and recreate) the database ``bench_webhooks``.

Every leg runs in its own process group with a fresh database and a django-q2 cluster name of
its own; the sweep schedule that ``migrate`` creates is removed so only the measured work runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/bench_webhooks"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
NAN = float("nan")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="django-webhooks benchmark")
    parser.add_argument("--quick", action="store_true", help="a short run (under 3 minutes)")
    parser.add_argument("--json", metavar="PATH", help="write every figure to PATH")
    parser.add_argument("--events", type=int, help="events per drain leg (5000; quick 1000)")
    parser.add_argument("--endpoints", type=int, default=3,
                        help="endpoints every event fans out to (default 3)")
    parser.add_argument("--events-per-transaction", type=int, default=100, metavar="N",
                        help="events committed per transaction in the drain legs (100)")
    parser.add_argument("--saves", type=int,
                        help="saves per mode and scenario (3000; quick 300)")
    parser.add_argument("--raw-requests", type=int, help="requests per raw baseline")
    parser.add_argument("--skip-save", action="store_true", help="skip the save overhead legs")
    parser.add_argument("--skip-history", action="store_true", help="skip the history legs")
    parser.add_argument("--skip-latency", action="store_true", help="skip the latency legs")
    parser.add_argument("--skip-drain", action="store_true",
                        help="skip the drain legs and their raw baselines (the history legs "
                             "then have nothing to compare with)")
    parser.add_argument("--skip-dbcost", action="store_true",
                        help="skip the database cost leg (PostgreSQL)")
    parser.add_argument("--skip-retry", action="store_true",
                        help="skip the retries-on-time legs")
    parser.add_argument("--dbcost-events", type=int, default=500, metavar="N",
                        help="events per scenario of the database cost leg (500)")
    parser.add_argument("--history-rows", type=int,
                        help="old deliveries (and attempts) in the history legs "
                             "(1,000,000; quick 100,000)")
    parser.add_argument("--latency-seconds", type=float,
                        help="length of each paced latency leg (30; quick 8)")
    parser.add_argument("--history-backends", default="sqlite,pg",
                        help="backends of the history legs (default sqlite,pg)")
    parser.add_argument("--skip-pg", action="store_true",
                        help="skip the PostgreSQL + Redis legs")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL),
                        help="PostgreSQL URL of the bench database (its name must start "
                             "with bench_; it is dropped and recreated)")
    parser.add_argument("--redis-url",
                        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    # Internal: run one leg in this process (the orchestrator starts these).
    parser.add_argument("--leg", help=argparse.SUPPRESS)
    parser.add_argument("--leg-config", help=argparse.SUPPRESS)
    parser.add_argument("--leg-result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.events = args.events or (1000 if args.quick else 5000)
    args.history_rows = args.history_rows or (100_000 if args.quick else 1_000_000)
    args.latency_seconds = args.latency_seconds or (8.0 if args.quick else 30.0)
    args.saves = args.saves or (300 if args.quick else 3000)
    args.raw_requests = args.raw_requests or (2000 if args.quick else 5000)
    return args


# --- one leg, in a child process -------------------------------------------------------------


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like SystemExit, so every ``finally`` stops what it started."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def run_leg_here(args: argparse.Namespace) -> int:
    from bench.legs import LEGS

    exit_on_sigterm()
    cfg = json.loads(Path(args.leg_config).read_text())
    result = LEGS[args.leg](cfg)
    Path(args.leg_result).write_text(json.dumps(result, indent=2, default=str))
    return 0


# --- the orchestrator ------------------------------------------------------------------------


class Runner:
    """Starts every subprocess of the run and makes sure none outlives it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.run_dir = REPO_DIR / "var" / "bench" / self.run_id
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.receiver: subprocess.Popen[bytes] | None = None
        self.receiver_url = ""
        self.errors: list[str] = []

    # subprocess plumbing

    def start_receiver(self) -> None:
        self.receiver = subprocess.Popen(
            [sys.executable, str(REPO_DIR / "bench" / "receiver.py")],
            stdout=subprocess.PIPE, stderr=open(self.run_dir / "receiver.log", "wb"),  # noqa: SIM115
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        assert self.receiver.stdout is not None
        line = self._readline(self.receiver, timeout=15)
        if not line.startswith("PORT "):
            raise RuntimeError(f"the receiver did not start: {line!r}")
        self.receiver_url = f"http://127.0.0.1:{int(line.split()[1])}"

    @staticmethod
    def _readline(proc: subprocess.Popen[bytes], timeout: float) -> str:
        import selectors

        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise TimeoutError("no answer from the receiver")
        return proc.stdout.readline().decode().strip()

    def leg_env(self, backend: str | None, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "REDIS_URL", "BENCH_SQLITE_PATH")}
        env.update({
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_DIR),
                                                         os.environ.get("PYTHONPATH")])),
            # A cluster name of its own per run and leg: nothing left in Redis by another
            # run (or by another leg) can be read.
            "BENCH_Q_NAME": f"bench-{self.run_id}-{name}",
            "PYTHONUNBUFFERED": "1",
        })
        if backend == "sqlite":
            env["BENCH_SQLITE_PATH"] = str(self.run_dir / "bench.sqlite3")
        elif backend == "pg":
            env["DATABASE_URL"] = self.args.pg_url
            env["REDIS_URL"] = self.args.redis_url
        return env

    def run_leg(self, leg: str, name: str, backend: str | None, cfg: dict[str, Any],
                timeout: float) -> dict[str, Any] | None:
        """Run one leg in a child process; ``None`` (and an error noted) when it fails."""
        cfg = {**cfg, "name": name, "run_dir": str(self.run_dir),
               "receiver": self.receiver_url,
               "receiver_pid": self.receiver.pid if self.receiver else 0}
        config_path = self.run_dir / f"{name}.config.json"
        result_path = self.run_dir / f"{name}.result.json"
        log_path = self.run_dir / f"{name}.log"
        config_path.write_text(json.dumps(cfg, indent=2))
        print(f"  … {name}", end="", flush=True)
        started = time.monotonic()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--leg", leg,
                 "--leg-config", str(config_path), "--leg-result", str(result_path)],
                cwd=REPO_DIR, env=self.leg_env(backend, name), stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                self.kill_group(proc.pid)
                self.kill_leftover_clusters()
                if backend == "pg":
                    self.forget_redis_keys(name)
        elapsed = time.monotonic() - started
        if code == 0 and result_path.exists():
            print(f" {elapsed:.1f}s", flush=True)
            return json.loads(result_path.read_text())
        why = "timed out" if code is None else f"exited with {code}"
        tail = log_path.read_text(errors="replace").strip().splitlines()[-12:]
        message = f"leg {name} {why} after {elapsed:.0f}s (log: {log_path})"
        print(f" FAILED: {message}", flush=True)
        for line in tail:
            print(f"      {line}")
        self.errors.append(message)
        return None

    def forget_redis_keys(self, name: str) -> None:
        """The leg's django-q2 keys, even when the leg died before deleting them itself."""
        try:
            import redis

            client = redis.from_url(self.args.redis_url, socket_timeout=5,
                                    socket_connect_timeout=5)
            keys = list(client.scan_iter(match=f"django_q:bench-{self.run_id}-{name}:*"))
            if keys:
                client.delete(*keys)
        except Exception as exc:  # a clean-up must not hide the leg's own result
            print(f" (could not delete the leg's Redis keys: {exc})", end="")

    @staticmethod
    def kill_group(pgid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    def kill_leftover_clusters(self) -> None:
        """qcluster groups a leg started and could not stop (their ids are in pgid-* files)."""
        for path in self.run_dir.glob("pgid-*"):
            self.kill_group(int(path.read_text()))
            path.unlink(missing_ok=True)

    def close(self) -> None:
        self.kill_leftover_clusters()
        if self.receiver is not None:
            if self.receiver.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.receiver.pid, signal.SIGTERM)
                try:
                    self.receiver.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.kill_group(self.receiver.pid)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.receiver.wait(timeout=5)
            if self.receiver.stdout is not None:
                self.receiver.stdout.close()
        for suffix in ("", "-journal", "-wal", "-shm"):
            (self.run_dir / f"bench.sqlite3{suffix}").unlink(missing_ok=True)


def services_answer(args: argparse.Namespace) -> str | None:
    """``None`` when PostgreSQL and Redis answer, else why not."""
    from urllib.parse import urlsplit

    try:
        import psycopg
        import redis
    except ImportError as exc:
        return f"{exc.name} is not installed"
    pg = urlsplit(args.pg_url)
    try:
        with psycopg.connect(host=pg.hostname or "127.0.0.1", port=pg.port or 5432,
                             user=pg.username or None, password=pg.password or None,
                             dbname="postgres", connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL at {pg.hostname}:{pg.port or 5432} does not answer ({exc})"
    try:
        redis.from_url(args.redis_url, socket_timeout=3, socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"Redis at {args.redis_url} does not answer ({exc})"
    return None


def run_all(args: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    quick = args.quick
    figures: dict[str, Any] = {
        "run_id": runner.run_id,
        "mode": "quick" if quick else "full",
        "environment": environment(),
        "parameters": {"events": args.events, "endpoints": args.endpoints,
                       "events_per_transaction": args.events_per_transaction,
                       "saves": args.saves, "raw_requests": args.raw_requests,
                       "history_rows": args.history_rows,
                       "latency_seconds": args.latency_seconds,
                       "dbcost_events": args.dbcost_events},
        "save": {}, "drain": {}, "raw": [],
    }
    pg_problem = "--skip-pg was given" if args.skip_pg else services_answer(args)
    figures["pg_redis_skipped"] = pg_problem
    backends = [("sqlite", "sqlite_orm")]
    if pg_problem:
        print(f"NOTE: skipping the PostgreSQL + Redis legs: {pg_problem}")
    else:
        backends.append(("pg", "pg_redis"))

    runner.start_receiver()
    print(f"receiver at {runner.receiver_url}; logs in {runner.run_dir}")
    rounds = 3 if quick else 6
    save_timeout = 120 + args.saves * 0.2
    for backend, label in [] if args.skip_save else backends:
        figures["save"][label] = runner.run_leg(
            "save", f"save-{label}", backend, {"saves": args.saves, "rounds": rounds},
            timeout=save_timeout)

    raw_cfg = {"raw_requests": args.raw_requests}
    drain_cfg: dict[str, Any] = {
        "events": args.events, "endpoints": args.endpoints,
        "events_per_transaction": args.events_per_transaction,
        "warmup_events": 4, "startup_timeout": 60,
        "drain_timeout": max(60.0, args.events * args.endpoints * 0.05),
    }
    drain_timeout = 240 + drain_cfg["drain_timeout"]
    raw_index = 0

    def raw() -> dict[str, Any] | None:
        nonlocal raw_index
        raw_index += 1
        result = runner.run_leg("raw", f"raw-{raw_index}", None, raw_cfg, timeout=120)
        figures["raw"].append(result)
        return result

    def compare(result: dict[str, Any] | None, before: dict[str, Any] | None,
                after: dict[str, Any] | None) -> None:
        if result is None:
            return
        for key, suffix in (("per_second", ""), ("per_second_2p", "2")):
            adjacent = [r[key] for r in (before, after) if r]
            result[f"raw{suffix}_per_second"] = statistics.mean(adjacent) if adjacent else NAN
            result[f"vs_raw{suffix}"] = (result["deliveries_per_second"]
                                         / result[f"raw{suffix}_per_second"])

    before = None if args.skip_drain else raw()
    for backend, label in [] if args.skip_drain else backends:
        result = runner.run_leg("drain", f"drain-{label}", backend, drain_cfg,
                                timeout=drain_timeout)
        after = raw()
        compare(result, before, after)
        figures["drain"][label] = result
        before = after

    figures["history"] = {}
    history_backends = set(args.history_backends.split(","))
    for backend, label in [] if args.skip_history else backends:
        if backend not in history_backends:
            continue
        cfg = {**drain_cfg, "history_rows": args.history_rows}
        # Filling takes about 60 s per million rows on SQLite, 30 s on PostgreSQL.
        result = runner.run_leg("drain", f"history-{label}", backend, cfg,
                                timeout=drain_timeout + 300 + args.history_rows / 5000)
        after = raw()
        compare(result, before, after)
        empty = get(figures, "drain", label, "deliveries_per_second")
        empty_cpu = get(figures, "drain", label, "cluster_cpu_us_per_delivery")
        if result is not None:
            result["history_vs_empty"] = result["deliveries_per_second"] / empty
            result["history_cpu_vs_empty"] = empty_cpu / result["cluster_cpu_us_per_delivery"]
        figures["history"][label] = result
        before = after

    if not args.skip_dbcost and not pg_problem:
        cfg = {"dbcost_events": args.dbcost_events, "kick_after": 3.0,
               "drain_timeout": max(60.0, args.dbcost_events * 0.1)}
        figures["dbcost"] = runner.run_leg("dbcost", "dbcost-pg_redis", "pg", cfg,
                                           timeout=240 + 2 * cfg["drain_timeout"])

    figures["retry"] = {}
    for backend, label in [] if args.skip_retry else backends:
        cfg = {"retry_events": 10, "retry_rounds": 2 if quick else 3}
        figures["retry"][label] = runner.run_leg("retry", f"retry-{label}", backend, cfg,
                                                 timeout=180)

    figures["latency"] = {}
    rates = {"pg": 100.0, "sqlite": 20.0}
    for backend, label in [] if args.skip_latency else reversed(backends):
        cfg = {"rate": rates[backend], "seconds": args.latency_seconds, "warmup_events": 4,
               "startup_timeout": 60, "drain_timeout": 60}
        figures["latency"][label] = runner.run_leg(
            "latency", f"latency-{label}", backend, cfg,
            timeout=240 + args.latency_seconds)
    return figures


def environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("Django", "django-q2", "requests", "urllib3", "psycopg", "redis"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "loadavg_at_start": load, "packages": versions}


# --- report ----------------------------------------------------------------------------------


def fmt(value: Any, spec: str = ".0f") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return format(value, spec)


def get(figures: dict[str, Any], *keys: str) -> Any:
    value: Any = figures
    for key in keys:
        if not isinstance(value, dict) or value.get(key) is None:
            return NAN
        value = value[key]
    return value


def report(figures: dict[str, Any]) -> str:
    env, p = figures["environment"], figures["parameters"]
    lines = [
        "",
        f"django-webhooks benchmark ({figures['mode']}, run {figures['run_id']}): "
        f"Python {env['python']}, Django {env['packages']['Django']}, "
        f"django-q2 {env['packages']['django-q2']}, {env['cpus']} CPUs, "
        f"load {fmt(env['loadavg_at_start'] and env['loadavg_at_start'][0], '.2f')}",
    ]
    if figures["save"]:
        lines += [
            "",
            "Save overhead: Order.objects.create, 1 subscribed endpoint, task enqueued on "
            "commit (median of rounds)",
            f"  {'backend':<12} {'scenario':<16} {'saves':>6} {'plain µs':>9} "
            f"{'webhooks µs':>12} {'+µs':>7} {'ratio':>6} {'tasks':>6} {'conns':>8}",
        ]
    for label, result in figures["save"].items():
        for scenario, title in (("alone", "1 save/txn"), ("alone_enqueue", "1/txn, enqueue"),
                                ("batch100", "100 saves/txn"),
                                ("autocommit_enqueue", "autocommit, enq.")):
            s = get(result or {}, scenario)
            if not isinstance(s, dict):
                lines.append(f"  {label:<12} {title:<16} failed")
                continue
            lines.append(
                f"  {label:<12} {title:<16} {s['saves_per_mode']:>6} "
                f"{fmt(s['plain_us_per_save'], '.1f'):>9} "
                f"{fmt(s['webhooks_us_per_save'], '.1f'):>12} "
                f"{fmt(s['overhead_us_per_save'], '.1f'):>7} {fmt(s['ratio'], '.2f'):>6} "
                f"{s['tasks_enqueued']:>6} "
                f"{'{plain}/{webhooks}'.format(**s['db_connections_opened']):>8}")
    if figures["save"]:
        lines.append("  (tasks: enqueued by the webhooks rounds; conns: database connections "
                     "opened during the plain/webhooks rounds)")
    lines += [] if not figures["drain"] else [
        "",
        f"Drain: {p['events']} events ({p['events_per_transaction']}/txn) to {p['endpoints']} "
        "endpoint(s), first commit → last delivery received; qcluster, 2 workers",
        *drain_table(figures["drain"]),
        "  (1st ms: first commit → first delivery received; prod s: time the benchmark took "
        "to commit all events,",
        "   within the measured window; vs raw/raw2: over the 1-/2-process raw sender measured "
        "before and after;",
        "   cpu µs/d: CPU of all qcluster processes per delivery; other: busy cores of the "
        "machine that are not",
        "   the cluster, receiver or producer (the database server, and anyone else's work); "
        "ok: deliveries",
        "   succeeded, incl. 4 warm-up events)",
    ]
    if figures.get("history"):
        lines += [
            "",
            f"History: the same drain with {p['history_rows']:,} old succeeded deliveries "
            "(1 attempt each) already in the tables",
            *drain_table(figures["history"]),
            f"  {'backend':<12} {'rows':>9} {'fill s':>7} {'deliv/s':>8} {'empty/s':>8} "
            f"{'history/empty':>14} {'cpu/d empty/history':>20}",
        ]
        for label, h in figures["history"].items():
            if not h:
                continue
            lines.append(
                f"  {label:<12} {h['history']['rows']:>9} {h['history']['seconds']:>7.1f} "
                f"{fmt(h['deliveries_per_second']):>8} "
                f"{fmt(get(figures, 'drain', label, 'deliveries_per_second')):>8} "
                f"{fmt(h['history_vs_empty'], '.3f'):>14} "
                f"{fmt(h.get('history_cpu_vs_empty'), '.3f'):>20}")
        lines.append("  (history/empty: deliveries/s; cpu/d empty/history: cluster CPU per "
                     "delivery, empty over history,")
        lines.append("   which other work on a shared machine does not move: below 1 when history "
                     "costs CPU)")
    if figures.get("dbcost"):
        lines += ["", *dbcost_table(figures["dbcost"], p)]
    if figures.get("retry"):
        lines += [
            "",
            "Retries on time: idle cluster, RETRY_SCHEDULE [5] with 10 % jitter; a retry's start "
            "over its due time (ms)",
            f"  {'backend':<12} {'retries':>7} {'p50':>7} {'max':>7} {'≤ 1 s':>6}",
        ]
        for label, r in figures["retry"].items():
            if not r:
                lines.append(f"  {label:<12} failed")
                continue
            lines.append(f"  {label:<12} {r['retries']:>7} {r['late_ms']['p50']:>7.0f} "
                         f"{r['late_ms']['max']:>7.0f} {r['within_bound']:>6}")
    if figures.get("latency"):
        lines += [
            "",
            f"Latency: one event per transaction, paced, {p['latency_seconds']:g} s, 1 endpoint; "
            "commit → first arrival (ms)",
            f"  {'backend':<12} {'rate/s':>7} {'got/s':>6} {'events':>6} {'p50':>6} "
            f"{'p90':>6} {'p99':>6} {'max':>6} {'mean':>6} {'cpu%':>5}",
        ]
        for label, d in figures["latency"].items():
            if not d:
                lines.append(f"  {label:<12} failed")
                continue
            ms = d["latency_ms"]
            lines.append(
                f"  {label:<12} {d['rate']:>7.0f} {d['achieved_rate']:>6.1f} {d['events']:>6} "
                f"{ms['p50']:>6.1f} {ms['p90']:>6.1f} {ms['p99']:>6.1f} {ms['max']:>6.1f} "
                f"{ms['mean']:>6.1f} {d['cluster_cpu_share'] * 100:>5.0f}")
        lines.append("  (got/s: the rate the producer achieved; cpu%: qcluster CPU over the "
                     "paced window, % of one core)")
    lines += [
        "",
        "Worker memory: RSS of the qcluster processes, sampled every 0.1 s during the measured "
        "window",
        f"  {'leg':<20} {'deliveries':>10} {'procs':>5} {'new':>4} {'start MiB':>9} "
        f"{'peak MiB':>9} {'growth MiB':>10} {'KiB/1000 d':>10} {'2nd half MiB':>12} "
        f"{'KiB/1000 d':>10}",
    ]
    for group in ("drain", "history", "latency"):
        for label, d in (figures.get(group) or {}).items():
            m = (d or {}).get("worker_memory")
            if not m:
                continue
            count = d.get("deliveries") or d.get("events")
            lines.append(
                f"  {group + '-' + label:<20} {count:>10} {m['processes']:>5} "
                f"{m['processes_started_during_run']:>4} {fmt(m['start_rss_mib'], '.1f'):>9} "
                f"{fmt(m['peak_rss_mib'], '.1f'):>9} {fmt(m['max_growth_mib'], '.2f'):>10} "
                f"{fmt(m['growth_kib_per_1000_deliveries'], '.1f'):>10} "
                f"{fmt(m['second_half_growth_mib'], '.2f'):>12} "
                f"{fmt(m['second_half_kib_per_1000_deliveries'], '.1f'):>10}")
    lines += [
        "  (procs: qcluster processes seen; new: started during the window (recycled workers); "
        "growth: largest",
        "   start → end RSS change of a process alive throughout; 2nd half: the same from the "
        "middle of the window",
        "   to its end, per 1,000 of the half of the deliveries sent then: ~0 when memory is "
        "flat)",
    ]
    if figures["raw"]:
        lines += ["", "Raw sender: webhooks.http.post, signed 1 KB body, same receiver; 1 "
                  "process, then 2 processes at once"]
    for i, r in enumerate(figures["raw"], 1):
        if r:
            two = r["two_processes"]
            lines.append(
                f"  raw-{i}: {r['requests']} requests in {r['seconds']:.2f}s = "
                f"{r['per_second']:.0f}/s (sender CPU {r['sender_cpu_us_per_request']:.0f} "
                f"µs/request, receiver CPU {r['receiver_cpu_us_per_request']:.0f} µs/request)"
                f"; 2 processes: {two['per_second']:.0f}/s; "
                f"bare requests.Session: {r['bare_requests_per_second']:.0f}/s")
        else:
            lines.append(f"  raw-{i}: failed")
    return "\n".join(lines)


def dbcost_table(d: dict[str, Any], p: dict[str, Any]) -> list[str]:
    """The database cost section: per delivered webhook, then per table."""
    lines = [
        f"Database cost (PostgreSQL): {p.get('dbcost_events')} events, 1 per transaction, to 1 "
        "endpoint; per delivered webhook, commit → attempt recorded",
        f"  {'scenario':<10} {'deliv':>5} {'tries':>5} {'rows/d':>6} {'web/ev':>6} "
        f"{'wrk/d':>6} {'HOT upd':>7} {'WAL B/d':>8} {'web/ev':>7} {'wrk/d':>7} "
        f"{'FPI':>5} {'pg cpu µs/d':>11} {'kicks':>5}",
    ]
    scenarios = [s for s in ("first_try", "retried") if isinstance(d.get(s), dict)]
    for name in scenarios:
        s = d[name]
        lines.append(
            f"  {name:<10} {s['deliveries']:>5} {s['attempts']:>5} "
            f"{fmt(s['rows_per_delivery'], '.2f'):>6} {fmt(s['web_rows_per_event'], '.2f'):>6} "
            f"{fmt(s['worker_rows_per_delivery'], '.2f'):>6} "
            f"{fmt(s['hot_update_share'] and s['hot_update_share'] * 100, '.0f'):>6}% "
            f"{fmt(s['wal_bytes_per_delivery']):>8} {fmt(s['web_wal_bytes_per_event']):>7} "
            f"{fmt(s['worker_wal_bytes_per_delivery']):>7} "
            f"{fmt(s['fpi_share'] and s['fpi_share'] * 100, '.0f'):>4}% "
            f"{fmt(s['postgres_cpu_us_per_delivery']):>11} {s['kicked_drains']:>5}")
    if d.get("skipped"):
        lines.append(f"  skipped: {d['skipped']}")
    lines.append("  (rows: inserted+updated+deleted, pg_stat_user_tables; web/ev: the producer's "
                 "transactions per event (event,")
    lines.append("   sequence, dispatch token); wrk/d: the rest per delivery; HOT upd: share of "
                 "updates that were HOT; WAL: this")
    lines.append("   database's records (pg_walinspect); FPI: full-page images in it; pg cpu: "
                 "the whole server's CPU (noisy);")
    lines.append("   kicks: drains the leg enqueued because retries were due and nobody ran them)")
    for name in scenarios:
        s = d[name]
        n = s["deliveries"]
        wal = s["wal"]["by_table"]
        lines.append(f"  {name}: per delivery, rows ins/upd(HOT)/del and WAL bytes, by table")
        for table, c in sorted(s["rows"]["tables"].items(),
                               key=lambda kv: -wal.get(kv[0], {}).get("bytes", 0)):
            lines.append(
                f"    {table:<28} {c['n_tup_ins'] / n:>5.2f} {c['n_tup_upd'] / n:>5.2f}"
                f"({c['n_tup_hot_upd'] / n:.2f}) {c['n_tup_del'] / n:>5.2f}"
                f"  {wal.get(table, {}).get('bytes', 0) / n:>7.0f} B")
        commits = wal.get("(commit records)", {}).get("bytes", 0)
        lines.append(f"    {'(commit records)':<28} {'':>24}  {commits / n:>7.0f} B")
    return lines


def drain_table(legs: dict[str, Any]) -> list[str]:
    lines = [
        f"  {'backend':<12} {'deliveries':>10} {'payload':>8} {'seconds':>8} {'deliv/s':>8} "
        f"{'raw/s':>7} {'vs raw':>7} {'raw2/s':>7} {'vs raw2':>7} {'1st ms':>7} "
        f"{'prod s':>7} {'cpu µs/d':>9} {'other':>5} {'dups':>5} {'ok':>6}",
    ]
    for label, d in legs.items():
        if not d:
            lines.append(f"  {label:<12} failed")
            continue
        ok = d["delivery_statuses"].get("succeeded", 0)
        lines.append(
            f"  {label:<12} {d['deliveries']:>10} {fmt(d['payload_bytes'], 'd'):>8} "
            f"{fmt(d['drain_seconds'], '.2f'):>8} {fmt(d['deliveries_per_second']):>8} "
            f"{fmt(d.get('raw_per_second')):>7} {fmt(d.get('vs_raw'), '.3f'):>7} "
            f"{fmt(d.get('raw2_per_second')):>7} {fmt(d.get('vs_raw2'), '.3f'):>7} "
            f"{fmt(d['first_delivery_latency_seconds'] * 1000):>7} "
            f"{fmt(d['produce_seconds'], '.2f'):>7} "
            f"{fmt(d['cluster_cpu_us_per_delivery']):>9} "
            f"{fmt(d.get('other_busy_cores'), '.2f'):>5} {d['duplicates']:>5} {ok:>6}")
    return lines


def ratios(figures: dict[str, Any]) -> dict[str, float]:
    out = {
        "save_alone": get(figures, "save", "sqlite_orm", "alone", "ratio"),
        "save_alone_enqueue": get(figures, "save", "sqlite_orm", "alone_enqueue", "ratio"),
        "save_batch100": get(figures, "save", "sqlite_orm", "batch100", "ratio"),
        "pg_save_alone": get(figures, "save", "pg_redis", "alone", "ratio"),
        "pg_save_alone_enqueue": get(figures, "save", "pg_redis", "alone_enqueue", "ratio"),
        "pg_save_batch100": get(figures, "save", "pg_redis", "batch100", "ratio"),
        "save_autocommit_enqueue": get(figures, "save", "sqlite_orm", "autocommit_enqueue",
                                       "ratio"),
        "pg_save_autocommit_enqueue": get(figures, "save", "pg_redis", "autocommit_enqueue",
                                          "ratio"),
    }
    for label, short in (("sqlite_orm", "sqlite"), ("pg_redis", "pg_redis")):
        out[f"{short}_per_s"] = get(figures, "drain", label, "deliveries_per_second")
        out[f"{short}_vs_raw"] = get(figures, "drain", label, "vs_raw")
        out[f"{short}_vs_raw2"] = get(figures, "drain", label, "vs_raw2")
        out[f"{short}_history"] = get(figures, "history", label, "history_vs_empty")
        out[f"{short}_history_cpu"] = get(figures, "history", label, "history_cpu_vs_empty")
    for scenario, suffix in (("first_try", "delivery"), ("retried", "retried_delivery")):
        out[f"pg_rows_per_{suffix}"] = get(figures, "dbcost", scenario, "rows_per_delivery")
        out[f"pg_wal_bytes_per_{suffix}"] = get(figures, "dbcost", scenario,
                                                 "wal_bytes_per_delivery")
    for label, short in (("sqlite_orm", "sqlite"), ("pg_redis", "pg_redis")):
        out[f"{short}_retry_late_max_ms"] = get(figures, "retry", label, "late_ms", "max")
    for label, short in (("pg_redis", "pg_redis_100"), ("sqlite_orm", "sqlite_20")):
        out[f"{short}_p50_ms"] = get(figures, "latency", label, "latency_ms", "p50")
        out[f"{short}_p99_ms"] = get(figures, "latency", label, "latency_ms", "p99")
    peaks = [get(figures, group, label, "worker_memory", key)
             for group in ("drain", "history", "latency")
             for label in (figures.get(group) or {})
             for key in ("peak_rss_mib",)]
    growth = [get(figures, group, label, "worker_memory",
                  "second_half_kib_per_1000_deliveries")
              for group in ("drain", "history")
              for label in (figures.get(group) or {})]
    peaks = [v for v in peaks if v == v]
    growth = [v for v in growth if v == v]
    out["worker_peak_rss_mib"] = max(peaks) if peaks else NAN
    # Growth per 1,000 deliveries over the second half of the drain and history legs.
    out["worker_rss_kib_per_1000"] = max(growth) if growth else NAN
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.leg:
        return run_leg_here(args)
    exit_on_sigterm()
    runner = Runner(args)
    started = time.monotonic()
    figures: dict[str, Any] = {}
    try:
        figures = run_all(args, runner)
    except Exception as exc:
        traceback.print_exc()
        runner.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        runner.close()
    figures["errors"] = runner.errors
    figures["seconds"] = time.monotonic() - started
    if "environment" in figures:
        print(report(figures))
    figures["ratios"] = ratios(figures)
    if runner.errors:
        print("\nERRORS:\n  " + "\n  ".join(runner.errors))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")
        print(f"\nfigures written to {args.json}")
    print(f"\n(total {figures['seconds']:.0f}s)")
    absolute = ("_ms", "_mib", "_1000", "_per_s", "_delivery")  # figures, not ratios: one decimal
    print("RATIOS " + " ".join(f"{k}={fmt(v, '.1f' if k.endswith(absolute) else '.3f')}"
                               for k, v in figures["ratios"].items()))
    return 1 if runner.errors else 0


if __name__ == "__main__":
    sys.exit(main())
