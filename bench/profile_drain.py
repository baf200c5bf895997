"""Profile the delivery loop in one process: where a worker's CPU goes per delivery.

``python bench/profile_drain.py [--events 1000] [--endpoints 3] [--top 30] [--db sqlite|URL]``

Creates a fresh SQLite database under ``var/`` (or uses the PostgreSQL URL given, whose
database name must start with ``bench_``: it is dropped and recreated), starts the benchmark's
receiver (``bench/receiver.py``) in its own process, writes the events, fans them out, then
runs ``webhooks.delivery.loop.drain()`` under cProfile and prints the CPU per delivery, the
queries per batch, and the top functions by cumulative time. Not a benchmark: no ratios; use
it to see what an optimisation of the delivery loop changed.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=3)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--send-concurrency", type=int, default=None,
                        help="WEBHOOKS['SEND_CONCURRENCY'] (default: the setting's default)")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="sys.setswitchinterval() for the run (seconds)")
    parser.add_argument("--sort", default="cumulative", help="pstats sort key (tottime…)")
    args = parser.parse_args()

    path = ROOT / "var" / "profile-drain.sqlite3"
    if args.db == "sqlite":
        path.parent.mkdir(exist_ok=True)
        path.unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    else:
        name = args.db.rsplit("/", 1)[-1]
        if not name.startswith("bench_"):
            parser.error("the PostgreSQL database name must start with bench_")
        import psycopg

        admin = args.db.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = args.db
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    os.environ.setdefault("WEBHOOKS_ALLOW_PRIVATE", "1")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    import webhooks
    from webhooks.conf import webhooks_settings as conf
    from webhooks.delivery.fanout import fan_out
    from webhooks.delivery.loop import drain
    from webhooks.models import Delivery, Endpoint, Subscription

    settings.WEBHOOKS = {**getattr(settings, "WEBHOOKS", {}),
                         "ALLOWED_NETWORKS": ["127.0.0.0/8"],
                         "EVENTS": {"bench.ping": "A benchmark event."},
                         **({"SEND_CONCURRENCY": args.send_concurrency}
                            if args.send_concurrency else {})}
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    call_command("migrate", verbosity=0, interactive=False)
    import logging

    logging.getLogger("webhooks").setLevel(logging.WARNING)
    logging.getLogger("django-q").setLevel(logging.WARNING)
    receiver = subprocess.Popen([sys.executable, str(ROOT / "bench" / "receiver.py")],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline().split()[1])
        for n in range(args.endpoints):
            endpoint = Endpoint.objects.create(url=f"http://127.0.0.1:{port}/e{n}")
            Subscription.objects.create(endpoint=endpoint, event_type="*")
        data = {"text": "x" * 900}
        for start in range(0, args.events, 100):
            with transaction.atomic():
                for n in range(start, min(start + 100, args.events)):
                    webhooks.send_event("bench.ping", {**data, "n": n})
        while fan_out():
            pass
        total = Delivery.objects.count()
        profiler = cProfile.Profile()
        cpu, wall, main = time.process_time(), time.perf_counter(), time.thread_time()
        with CaptureQueriesContext(connection) as queries:
            profiler.enable()
            while drain(time_limit=3600):
                pass
            profiler.disable()
        main = time.thread_time() - main
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        sent = Delivery.objects.filter(status="succeeded").count()
        batches = -(-total // conf.BATCH_SIZE)
        print(f"{sent}/{total} deliveries in {wall:.2f}s = {sent / wall:.0f}/s; "
              f"CPU {cpu / max(sent, 1) * 1e6:.0f} µs/delivery (this process, threads "
              f"included; main thread {main / max(sent, 1) * 1e6:.0f}); "
              f"{len(queries)} queries, {len(queries) / batches:.1f} per batch")
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    finally:
        receiver.terminate()
        receiver.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
