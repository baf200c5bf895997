"""``bench.settings`` with ``BENCH_WORKERS`` worker processes per ``qcluster`` (default 2): the
settings ``bench/scale.py`` runs its producer and its clusters with."""

from __future__ import annotations

import os

from bench.settings import *  # noqa: F403
from bench.settings import Q_CLUSTER

Q_CLUSTER["workers"] = int(os.environ.get("BENCH_WORKERS") or 2)
