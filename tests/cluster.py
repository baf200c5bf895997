"""Start and stop real ``qcluster`` subprocesses against the test database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


class Cluster:
    """A ``manage.py qcluster`` child process using the current test database.

    ``workers`` overrides the test settings' 2 workers; ``env`` adds environment variables
    (``tests/settings.py`` reads ``WEBHOOKS_TEST_*`` ones, ``REDIS_URL``).
    """

    def __init__(self, *, workers: int | None = None, **env: str) -> None:
        self.env = env
        if workers is not None:
            self.env["WEBHOOKS_TEST_WORKERS"] = str(workers)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = ROOT / "var" / f"qcluster-{os.getpid()}-{id(self)}.log"

    def start(self) -> Cluster:
        env = {
            **os.environ,
            "WEBHOOKS_TEST_ASYNC": "1",
            "WEBHOOKS_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
            "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE,  # tests.settings or _org
            "PYTHONPATH": str(ROOT),
            **self.env,
        }
        self.log.parent.mkdir(exist_ok=True)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "django", "qcluster"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def stop(self, timeout: float = 10) -> None:
        """Ask the cluster to stop (its parent stops its workers), then make sure of it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group: the cluster and every worker, at once."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(5)

    @property
    def alive(self) -> bool:
        """The cluster's main process is still running."""
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        if exc[0] is not None:
            sys.stderr.write(f"--- qcluster output ---\n{self.output()[-5000:]}\n")
        else:
            self.log.unlink(missing_ok=True)


def wait_until(predicate: Any, timeout: float = 30, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
