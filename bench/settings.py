"""Django settings for the benchmark: the test settings, pointed at a fresh bench database.

Environment (set by ``bench/run.py`` for itself and for the ``qcluster`` it starts):

- ``DATABASE_URL``: the database (default: SQLite in ``var/bench.sqlite3``, or
  ``BENCH_SQLITE_PATH``).
- ``REDIS_URL``: use the Redis broker instead of django-q2's ORM broker.
- ``BENCH_Q_NAME``: the django-q2 cluster name (one per run and leg, so that a queue left in
  Redis by an earlier run is never read).
- ``BENCH_RETRY_SCHEDULE``, ``BENCH_RETRY_JITTER``: the retry leg's schedule ("5") and
  jitter (0.1, the default setting's).
- ``BENCH_NO_CIRCUIT_BREAKER``: set (the database cost leg, whose endpoint fails every first
  try on purpose): ``CIRCUIT_BREAKER_THRESHOLD = None``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from pathlib import Path

import environ

from tests.settings import *  # noqa: F403
from tests.settings import Q_CLUSTER as _TEST_Q_CLUSTER
from tests.settings import WEBHOOKS as _TEST_WEBHOOKS

REPO_DIR = Path(__file__).resolve().parent.parent
_env = environ.Env()

_sqlite_path = Path(os.environ.get("BENCH_SQLITE_PATH") or REPO_DIR / "var" / "bench.sqlite3")
DATABASES = {"default": _env.db("DATABASE_URL", default=f"sqlite:///{_sqlite_path}")}
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # As the production guide configures it: workers keep their connection between tasks
    # (django-q2 closes "old" connections around every task; with CONN_MAX_AGE = 0 each task
    # would open a new one, a few milliseconds of every delivery's latency).
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Same options as the test settings: several processes share the file.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
    _sqlite_path.parent.mkdir(parents=True, exist_ok=True)

Q_CLUSTER = {
    key: value for key, value in _TEST_Q_CLUSTER.items() if key not in ("orm", "redis")
}
Q_CLUSTER.update({
    "name": os.environ.get("BENCH_Q_NAME") or f"bench-{uuid.uuid4().hex[:8]}",
    "workers": 2,
    # Tasks go to the broker and run in a real qcluster, never inline in the caller.
    "sync": False,
})
if os.environ.get("REDIS_URL"):
    Q_CLUSTER["redis"] = os.environ["REDIS_URL"]
else:
    Q_CLUSTER["orm"] = "default"

WEBHOOKS = dict(_TEST_WEBHOOKS)
if not WEBHOOKS.get("ENCRYPTION_KEYS"):
    # A production site encrypts endpoint secrets at rest with its own key; so does the bench
    # (a fixed Fernet key: 32 url-safe base64 bytes), whatever the test settings do.
    WEBHOOKS["ENCRYPTION_KEYS"] = [
        base64.urlsafe_b64encode(hashlib.sha256(b"django-webhooks bench").digest()).decode()
    ]
if os.environ.get("BENCH_RETRY_SCHEDULE"):  # the retry leg: "5" (seconds, comma-separated)
    WEBHOOKS["RETRY_SCHEDULE"] = [int(x) for x in os.environ["BENCH_RETRY_SCHEDULE"].split(",")]
    WEBHOOKS["RETRY_JITTER"] = float(os.environ.get("BENCH_RETRY_JITTER", "0.1"))
if os.environ.get("BENCH_NO_CIRCUIT_BREAKER"):
    WEBHOOKS["CIRCUIT_BREAKER_THRESHOLD"] = None
