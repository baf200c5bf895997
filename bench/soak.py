"""Soak: thousands of events through a flaky receiver while the workers keep getting killed.

    python bench/soak.py [--short] [--backend sqlite|pg] [--events N] [--endpoints K]
                         [--kills M] [--fail-share P] [--rate R] [--workers W] [--seed S]
                         [--converge-timeout T] [--idle-tail] [--json PATH] [--keep]

Events (``ping.sent``, committed 1 to 10 per transaction at ``--rate`` events/s) fan out to
``--endpoints`` endpoints on a loopback receiver (``tests/flaky.py``) that fails
``--fail-share`` of all requests (a mix of 500s, TCP resets and hangs past the timeout) and
answers some others slowly. Meanwhile the ``qcluster`` (``--workers`` workers) is SIGKILLed
``--kills`` times, at random moments, and started again after a random pause. Then the soak
waits until everything has converged: the site keeps committing a ``soak.tick`` event nobody
subscribes to every half second (any commit's task delivers what is due), unless
``--idle-tail``, which leaves the tail to the cluster's retry waker (``webhooks/wakeup.py``),
and to the sweep and wake-up schedules after a kill took the waker's process with it.

At the end it checks, and exits 1 on any violation:

- every (event, endpoint) pair was answered 2xx by the receiver at least once (none lost), and
  the database has one delivery per pair, succeeded, no claim or lease left, no event left
  undispatched; the attempts recorded match each delivery's count;
- every request the receiver got was for a known (event, endpoint) pair, carried its event's
  id in both ``webhook-id`` and the body, and its signature verifies: duplicates only ever
  share a ``webhook-id``;
- no two requests for the same pair were on the wire at the same time.

It prints the counts (events, pairs, requests, duplicates, max attempts, kills, wall time)
and, with ``--json``, writes them. ``--short`` runs in under 2 minutes (CI). The database is
its own (``bench_soak`` on PostgreSQL, a file under ``var/soak/`` on SQLite) and so is the
django-q2 queue name; settings: ``bench/soak_settings.py`` (retries within seconds).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/bench_soak"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
EVENT_TYPE = "ping.sent"
TICK_TYPE = "soak.tick"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true",
                        help="a run of under 2 minutes (CI): 300 events, 2 kills")
    parser.add_argument("--backend", choices=("sqlite", "pg"), default="sqlite",
                        help="SQLite + ORM broker (default) or PostgreSQL + Redis broker")
    parser.add_argument("--pg-url", default=os.environ.get("SOAK_PG_URL", DEFAULT_PG_URL),
                        help="PostgreSQL URL of the soak database (its name must start with "
                             "bench_; it is dropped and recreated)")
    parser.add_argument("--redis-url", default=os.environ.get("SOAK_REDIS_URL",
                                                              DEFAULT_REDIS_URL))
    parser.add_argument("--events", type=int, help="events (default 3000; short 300)")
    parser.add_argument("--endpoints", type=int, default=3, help="endpoints (default 3)")
    parser.add_argument("--kills", type=int, help="cluster SIGKILLs (default 5; short 2)")
    parser.add_argument("--fail-share", type=float, default=0.2,
                        help="share of requests that fail: 500, reset or hang past the "
                             "timeout (default 0.2)")
    parser.add_argument("--slow-share", type=float, default=0.03,
                        help="share of requests answered 200 slowly (default 0.03)")
    parser.add_argument("--rate", type=float,
                        help="events committed per second (default 25; short 10)")
    parser.add_argument("--workers", type=int, default=4, help="workers of the cluster (4)")
    parser.add_argument("--seed", type=int, help="random seed (default: random, printed)")
    parser.add_argument("--converge-timeout", type=float,
                        help="seconds allowed after the last event for everything to arrive "
                             "(default 300; short 85)")
    parser.add_argument("--idle-tail", action="store_true",
                        help="no site traffic after the last event: only the schedules "
                             "drive the tail (slower: the scheduler looks every 30 s)")
    parser.add_argument("--json", metavar="PATH", help="write the figures to PATH")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run directory (clusters' logs, SQLite database) even "
                             "when the run passes")
    args = parser.parse_args(argv)
    args.events = args.events or (300 if args.short else 3000)
    args.kills = 2 if args.kills is None and args.short else 5 if args.kills is None \
        else args.kills
    args.rate = args.rate or (10.0 if args.short else 25.0)
    args.converge_timeout = args.converge_timeout or (85.0 if args.short else 300.0)
    # Kills fall in this part of the production phase (the short run leaves room after its
    # last kill for the recovery to happen within its time).
    args.kill_window = (0.1, 0.5) if args.short else (0.1, 0.8)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 30)
    if not 0 <= args.fail_share + args.slow_share <= 1:
        parser.error("--fail-share + --slow-share must be between 0 and 1")
    return args


def configure(args: argparse.Namespace, run_dir: Path, run_id: str) -> None:
    """The environment this process and its clusters read their settings from."""
    for name in ("DATABASE_URL", "REDIS_URL", "BENCH_SQLITE_PATH"):
        os.environ.pop(name, None)
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "bench.soak_settings",
        "BENCH_Q_NAME": f"soak-{run_id}",
        "SOAK_WORKERS": str(args.workers),
        "PYTHONUNBUFFERED": "1",
    })
    if args.backend == "pg":
        os.environ["DATABASE_URL"] = args.pg_url
        os.environ["REDIS_URL"] = args.redis_url
    else:
        os.environ["BENCH_SQLITE_PATH"] = str(run_dir / "soak.sqlite3")


class Killer:
    """The cluster, SIGKILLed at the given moments and started again after a random pause."""

    def __init__(self, run_dir: Path, kill_at: list[float], rng: random.Random) -> None:
        from bench.legs import start_cluster

        self.run_dir, self.rng = run_dir, rng
        self.kill_at = sorted(kill_at)
        self.start = start_cluster
        self.proc: subprocess.Popen[bytes] | None = None
        self.restart_at: float | None = None
        self.kills = 0
        self.starts = 0

    def launch(self) -> None:
        self.proc = self.start(self.run_dir, f"soak-{self.starts}")
        self.starts += 1

    def tick(self, elapsed: float) -> None:
        """Called often from the producer loop, with the seconds since it began."""
        if self.restart_at is not None and elapsed >= self.restart_at:
            self.restart_at = None
            self.launch()
        elif self.kill_at and elapsed >= self.kill_at[0] and self.restart_at is None:
            self.kill_at.pop(0)
            self.kill()
            self.restart_at = elapsed + self.rng.uniform(0.2, 2.0)

    def kill(self) -> None:
        """SIGKILL the whole process group: the cluster, its workers, pusher and monitor."""
        from bench.legs import stop_cluster

        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        stop_cluster(self.proc, self.run_dir)  # reaps it and closes its log
        self.proc = None
        self.kills += 1

    def ensure_running(self) -> None:
        if self.proc is None:
            self.restart_at = None
            self.launch()

    def stop(self) -> None:
        from bench.legs import stop_cluster

        if self.proc is not None:
            stop_cluster(self.proc, self.run_dir)
            self.proc = None


def make_plan(args: argparse.Namespace) -> Any:
    from tests.flaky import Plan

    fail = args.fail_share
    # A hang holds a sender for the whole TIMEOUT (2 s): the rarest fault.
    return Plan(error=fail * 0.5, reset=fail * 0.35, hang=fail * 0.15, slow=args.slow_share,
                slow_seconds=(0.2, 1.0), hang_seconds=10.0, delay=(0.0, 0.01),
                seed=args.seed)


def produce(args: argparse.Namespace, rng: random.Random, killer: Killer) -> int:
    """Commit the events at the given rate, 1 to 10 per transaction, driving the killer."""
    from django.db import transaction

    import webhooks

    started = time.monotonic()
    sent = 0
    while sent < args.events:
        elapsed = time.monotonic() - started
        killer.tick(elapsed)
        due = int(elapsed * args.rate) + 1
        if sent >= due:
            time.sleep(min(0.05, (sent + 1) / args.rate - elapsed))
            continue
        batch = min(rng.randint(1, 10), args.events - sent)
        with transaction.atomic():
            for _ in range(batch):
                webhooks.send_event(EVENT_TYPE, {"seq": sent, "note": "soak"})
                sent += 1
    # A kill near the end still gets its restart (a cluster that never comes back is not
    # what this measures).
    while killer.restart_at is not None:
        killer.tick(time.monotonic() - started)
        time.sleep(0.05)
    killer.ensure_running()
    return sent


def converged(receiver: Any, pairs: set[tuple[str, str]]) -> bool:
    from tests.flaky import delivered_pairs
    from webhooks.models import Delivery, Event

    return (pairs <= delivered_pairs(receiver.requests())
            and not Event.objects.filter(type=EVENT_TYPE).undispatched().exists()
            and Delivery.objects.count() == len(pairs)
            and not Delivery.objects.exclude(status="succeeded").exists()
            and not Delivery.objects.exclude(claim_token=None).exists())


def stuck_state() -> str:
    """What the deliveries not yet succeeded are waiting for (for a run that did not
    converge): their statuses, when they are due, and their endpoints' pauses."""
    from django.db.models import Count
    from django.utils import timezone

    from webhooks.models import Delivery, Endpoint

    now = timezone.now()
    waiting = Delivery.objects.exclude(status="succeeded")
    statuses = dict(waiting.values_list("status").annotate(Count("id")))
    due = [(t - now).total_seconds() for t in waiting.exclude(next_attempt_at=None)
           .values_list("next_attempt_at", flat=True)]
    endpoints = [
        f"{pk}: {reason or 'running'}"
        f"{f' until {(until - now).total_seconds():+.1f}s' if until else ''}, "
        f"{failures} failures in a row"
        for pk, reason, until, failures in Endpoint.objects.values_list(
            "pk", "pause_reason", "paused_until", "consecutive_failures")]
    return (f"deliveries not succeeded by status {statuses}, due in "
            f"{min(due, default=0):+.1f}s..{max(due, default=0):+.1f}s; endpoints: "
            + "; ".join(endpoints))


def check(receiver: Any, pairs: set[tuple[str, str]], secrets: dict[str, str],
          ) -> tuple[list[str], dict[str, Any]]:
    """Every violation found (as text), and the counts."""
    from django.db.models import Count, Max, Sum

    from tests.flaky import delivered_pairs, mismatched_ids, overlaps
    from webhooks.models import Delivery, DeliveryAttempt, Event
    from webhooks.receiving import WebhookVerificationError, verify

    requests = receiver.requests()
    violations: list[str] = []
    delivered = delivered_pairs(requests)
    lost = pairs - delivered
    if lost:
        violations.append(f"{len(lost)} (event, endpoint) pairs never answered 2xx, e.g. "
                          f"{sorted(lost)[:3]}")
    unknown = {(r.path, r.webhook_id) for r in requests} - pairs
    if unknown:
        violations.append(f"{len(unknown)} requests for no known pair, e.g. {sorted(unknown)[:3]}")
    mismatched = mismatched_ids(requests)
    if mismatched:
        violations.append(f"{len(mismatched)} requests whose body id is not their webhook-id")
    bad_signatures = 0
    for r in requests:
        try:
            verify(r.headers, r.body, secrets.get(r.path, ""), tolerance=3600)
        except WebhookVerificationError:
            bad_signatures += 1
    if bad_signatures:
        violations.append(f"{bad_signatures} requests whose signature does not verify")
    overlapping = overlaps(requests)
    if overlapping:
        first, second = overlapping[0]
        violations.append(f"{len(overlapping)} overlapping copies, e.g. {first.path} "
                          f"{first.webhook_id}: {first.started:.3f}-{first.done:.3f} and "
                          f"{second.started:.3f}-{second.done:.3f}")
    still_open = [r for r in requests if r.open]
    if still_open:
        violations.append(f"{len(still_open)} requests still open at the end")
    statuses = dict(Delivery.objects.values_list("status").annotate(Count("id")))
    if Delivery.objects.count() != len(pairs) or set(statuses) != {"succeeded"}:
        violations.append(f"deliveries by status {statuses}, expected {len(pairs)} succeeded")
    claimed = Delivery.objects.exclude(claim_token=None).count()
    leased = Delivery.objects.exclude(next_attempt_at=None).count()
    if claimed or leased:
        violations.append(f"{claimed} deliveries still claimed, {leased} with a next attempt")
    undispatched = Event.objects.undispatched().filter(type=EVENT_TYPE).count()
    if undispatched:
        violations.append(f"{undispatched} events never dispatched")
    totals = Delivery.objects.aggregate(total=Sum("attempts"), most=Max("attempts"))
    recorded = DeliveryAttempt.objects.count()
    if totals["total"] != recorded:
        violations.append(f"deliveries count {totals['total']} attempts, "
                          f"{recorded} attempt rows exist")
    per_pair = Counter((r.path, r.webhook_id) for r in requests if r.answered_ok)
    arrivals = sorted(r.started for r in requests)
    counts = {
        "pairs": len(pairs),
        "requests": len(requests),
        "outcomes": dict(Counter(r.outcome for r in requests)),
        # Copies the receiver accepted (answered 2xx) beyond the first: what its dedupe on
        # webhook-id absorbs. Every retry of a failed request is a copy too, not counted here.
        "duplicates": sum(n - 1 for n in per_pair.values()),
        "pairs_duplicated": sum(1 for n in per_pair.values() if n > 1),
        "copies": len(requests) - len({(r.path, r.webhook_id) for r in requests}),
        "attempts_recorded": recorded,
        "max_attempts": totals["most"],
        # The longest time no request at all reached the receiver: how long the stalls after
        # the kills lasted.
        "longest_silence_seconds": max((b - a for a, b in itertools.pairwise(arrivals)),
                                       default=0.0),
        "delivery_statuses": statuses,
    }
    return violations, counts


def run(args: argparse.Namespace) -> int:
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    run_dir = REPO_DIR / "var" / "soak" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    configure(args, run_dir, run_id)
    if args.backend == "pg":
        from bench.run import services_answer

        problem = services_answer(args)
        if problem:
            print(f"soak: {problem}", file=sys.stderr)
            return 2

    from bench.legs import forget_redis_keys, fresh_database
    from tests.flaky import FlakyReceiver

    started = time.monotonic()
    setup = fresh_database()  # django.setup(), migrate, and no sweep schedule...
    # This process only commits: django-q2 logging every enqueue is noise here (the
    # clusters' logs, in the run directory, keep theirs).
    logging.getLogger("django-q").setLevel(logging.WARNING)
    import webhooks
    from bench.legs import make_endpoint
    from webhooks import tasks
    from webhooks.models import Event

    tasks.ensure_schedule()  # ...but this run wants the sweep: it is part of the recovery
    rng = random.Random(args.seed)
    print(f"soak {run_id}: {args.backend} ({setup['vendor']}), {args.events} events to "
          f"{args.endpoints} endpoints at {args.rate:g}/s, fail share {args.fail_share:g}, "
          f"{args.kills} kills, {args.workers} workers, seed {args.seed}; run dir {run_dir}",
          flush=True)
    figures: dict[str, Any] = {"run_id": run_id, "backend": args.backend, "seed": args.seed,
                               "events": args.events, "endpoints": args.endpoints}
    violations: list[str] = []
    produce_seconds = args.events / args.rate
    kill_at = sorted(rng.uniform(*args.kill_window) * produce_seconds
                     for _ in range(args.kills))
    killer = Killer(run_dir, kill_at, rng)
    receiver = FlakyReceiver(make_plan(args))
    try:
        with receiver:
            paths = [f"/endpoint-{i}" for i in range(args.endpoints)]
            endpoints = {path: make_endpoint(receiver.url(path), EVENT_TYPE) for path in paths}
            secrets = {path: endpoint.secret for path, endpoint in endpoints.items()}
            killer.launch()
            produced_at = time.monotonic()
            sent = produce(args, rng, killer)
            last_event = time.monotonic()
            print(f"  {sent} events committed in {last_event - produced_at:.1f}s, "
                  f"{killer.kills} kills; converging…", flush=True)
            pairs = {(path, event.public_id) for path in paths
                     for event in Event.objects.filter(type=EVENT_TYPE)}
            deadline = last_event + args.converge_timeout
            while not converged(receiver, pairs):
                if time.monotonic() > deadline:
                    violations.append(
                        f"not converged {args.converge_timeout:g}s after the last event: "
                        f"{stuck_state()}")
                    break
                if not args.idle_tail:
                    webhooks.send_event(TICK_TYPE, {})
                time.sleep(0.5)
            converged_at = time.monotonic()
            killer.stop()
            # Requests a dying worker left open end when its socket closes.
            with contextlib.suppress(AssertionError):
                receiver.wait_until(lambda rs: not any(r.open for r in rs), 15)
            found, counts = check(receiver, pairs, secrets)
            violations += found
    finally:
        killer.stop()
        forget_redis_keys()
        for suffix in () if args.keep else ("", "-journal", "-wal", "-shm"):
            (run_dir / f"soak.sqlite3{suffix}").unlink(missing_ok=True)
    figures.update(counts)
    figures.update({
        "kills": killer.kills,
        "cluster_starts": killer.starts,
        "produce_seconds": last_event - produced_at,
        "converge_seconds": converged_at - last_event,
        "wall_seconds": time.monotonic() - started,
        "violations": violations,
    })
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(figures["outcomes"].items()))
    print(f"  requests: {figures['requests']} ({outcomes})")
    print(f"SOAK events={args.events} pairs={figures['pairs']} "
          f"requests={figures['requests']} duplicates={figures['duplicates']} "
          f"max_attempts={figures['max_attempts']} kills={figures['kills']} "
          f"longest_silence_s={figures['longest_silence_seconds']:.1f} "
          f"converge_s={figures['converge_seconds']:.1f} "
          f"wall_s={figures['wall_seconds']:.1f} violations={len(violations)}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")
    if violations:
        print("VIOLATIONS:\n  " + "\n  ".join(violations))
        print(f"(the clusters' logs are in {run_dir})")
        return 1
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like SystemExit, so every ``finally`` stops what it started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
