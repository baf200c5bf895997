"""Django settings for ``bench/soak.py``: the bench settings with a short retry schedule.

The soak fails a large share of requests on purpose and kills its workers; with the default
schedule (5 s … 12 h, over 3 days) it would never converge, so retries here come within seconds, and
timeouts and claims are short so a killed worker's deliveries come back quickly. Environment,
as for ``bench.settings`` (``DATABASE_URL``, ``REDIS_URL``, ``BENCH_SQLITE_PATH``,
``BENCH_Q_NAME``), plus ``SOAK_WORKERS`` (workers per cluster, default 4).
"""

from __future__ import annotations

import os

from bench.settings import *  # noqa: F403
from bench.settings import Q_CLUSTER as _BENCH_Q_CLUSTER
from bench.settings import WEBHOOKS as _BENCH_WEBHOOKS

Q_CLUSTER = {**_BENCH_Q_CLUSTER, "workers": int(os.environ.get("SOAK_WORKERS", "4"))}

WEBHOOKS = {
    **_BENCH_WEBHOOKS,
    # 16 attempts in all, within about 45 s: the default 20 % failure share leaves a pair
    # undelivered with a chance of 0.2 ** 16, about 7e-12 (30 %: 4e-9).
    "RETRY_SCHEDULE": [0.5, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5],
    "RETRY_JITTER": 0.2,
    "TIMEOUT": 2,
    "CONNECT_TIMEOUT": 1,
    "READ_TIMEOUT": 2,
    # The shortest the system checks allow (TIMEOUT + 5): a killed worker's claims end soon.
    "CLAIM_TTL": 7,
    "TASK_TIME_LIMIT": 3,
    "BATCH_SIZE": 50,
    "EVENTS": {
        **_BENCH_WEBHOOKS.get("EVENTS", {}),
        "soak.tick": "Site traffic nobody subscribes to (the soak's tail, unless --idle-tail).",
    },
}
