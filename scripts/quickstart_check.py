#!/usr/bin/env python
"""The README's quickstart, run as a new user would, from a built wheel to a verified webhook.

    python scripts/quickstart_check.py          # CI runs it from .ci/run (20 to 60 s)
    python scripts/quickstart_check.py --keep   # keep the scratch folder to look around

In a scratch folder it:

1. builds the sdist and the wheel (``python -m build``: the wheel from the sdist, so a file
   missing from the sdist shows) and runs ``twine check --strict`` on both;
2. makes a fresh virtualenv and installs the wheel into it (dependencies from the package
   index through pip's cache; nothing from this clone);
3. makes a project with ``django-admin startproject`` and pastes the README's quickstart
   blocks into it, taken from between their ``<!-- quickstart:NAME -->`` markers, so the
   README cannot drift from what runs here: the settings block into ``settings.py``, the urls
   block into ``urls.py``; then adds a ``shop`` app whose ``Order`` the settings name;
4. runs the README's shell block line by line (the ``export`` of the encryption key, then
   ``migrate``; ``qcluster`` is started in the background), after ``check --fail-level
   WARNING``; any warning printed by any command (django-q2's "retry and timeout are
   misconfigured" among them) fails the run;
5. starts a receiver on 127.0.0.1 (this script with ``--receiver``, in the interpreter that
   runs it, not the new virtualenv) that verifies every request with the ``standardwebhooks``
   package, creates a user's endpoint through the REST API the urls block includes, saves an
   ``Order`` of that user, and waits for the signed ``order.created`` to arrive verified.

It exits 0 when it did, 1 otherwise (with the logs of what failed), and stops every process it
started. The interpreter that runs it needs ``build``, ``twine`` and ``standardwebhooks`` (the
``dev`` extra has them).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
ARRIVAL_TIMEOUT = 60.0  # seconds from the save to a verified webhook at the receiver
# A warning printed by a command: Python's "file:line: UserWarning: …", or Django's checks.
WARNING_RE = re.compile(r"\w*Warning: |System check identified some issues")

SHOP_MODELS = '''\
from django.conf import settings
from django.db import models


class Order(models.Model):
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    number = models.CharField(max_length=20)
'''

# Run by the new project's ``manage.py shell``: a user registers an endpoint through the REST
# API at the README's prefix, and reads its secret there. Prints the secret.
CREATE_ENDPOINT = '''\
import json
from django.contrib.auth import get_user_model
from django.test import Client

user = get_user_model().objects.create_user("alice", password="alice")
client = Client(HTTP_HOST="localhost")
client.force_login(user)
answer = client.post("/api/webhooks/endpoints/", {"url": URL, "events": ["order.created"]},
                     content_type="application/json")
assert answer.status_code == 201, (answer.status_code, answer.content)
secret = client.get(f"/api/webhooks/endpoints/{answer.json()['id']}/secret/")
assert secret.status_code == 200, (secret.status_code, secret.content)
print(json.dumps(secret.json()))
'''

SAVE_ORDER = '''\
from django.contrib.auth import get_user_model
from shop.models import Order

Order.objects.create(customer=get_user_model().objects.get(username="alice"), number="A-1")
'''


class Failed(Exception):
    """A step failed; the message says which and why."""


# --- the README ------------------------------------------------------------------------------


def readme_block(name: str, readme: Path = README) -> str:
    """The fenced code between ``<!-- quickstart:NAME … -->`` and ``<!-- /quickstart:NAME -->``."""
    text = readme.read_text(encoding="utf-8")
    match = re.search(
        rf"<!-- quickstart:{name}\b[^>]*-->\s*```[a-z]*\n(.*?)```\s*<!-- /quickstart:{name} -->",
        text, re.S)
    if not match:
        raise Failed(f"{readme} has no quickstart:{name} block between its markers")
    return match.group(1)


def shell_steps(block: str) -> list[str]:
    """The README's shell block as commands, comments dropped; anything this script cannot
    run as written is an error (so the README cannot gain a step that CI skips)."""
    steps = []
    for raw in block.splitlines():
        line = re.split(r"\s+#\s", raw, maxsplit=1)[0].strip()
        if not line:
            continue
        if not (re.match(r"export [A-Z_]+=", line) or line.startswith("python manage.py ")):
            raise Failed(f"the README's shell block has a step this check cannot run: {line}")
        steps.append(line)
    return steps


# --- processes -------------------------------------------------------------------------------


class Run:
    """Runs the steps in one scratch folder and remembers what it started and how long each
    step took."""

    def __init__(self, tmp: Path, readme: Path) -> None:
        self.tmp = tmp
        self.readme = readme
        self.venv = tmp / "venv"
        self.site = tmp / "site"
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        for name in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV", "DATABASE_URL",
                     "REDIS_URL", "WEBHOOKS_ENCRYPTION_KEY"):
            self.env.pop(name, None)  # nothing of this checkout's own settings
        self.env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{self.env.get('PATH', '')}"
        self.background: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.timings: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"==> {name}", flush=True)
        started = time.monotonic()
        yield
        self.timings.append((name, time.monotonic() - started))

    def run(self, args: list[str], *, cwd: Path | None = None, quiet_ok: bool = False) -> str:
        """Run to completion; its output (stdout) on success, Failed with it all otherwise.
        Unless ``quiet_ok``, a warning in what it printed is a failure too."""
        result = subprocess.run(args, cwd=cwd or self.tmp, env=self.env, capture_output=True,
                                text=True, timeout=600, check=False)
        both = result.stdout + result.stderr
        command = shlex.join(arg.split("\n", 1)[0] + ("…" if "\n" in arg else "")
                             for arg in args)
        if result.returncode != 0:
            raise Failed(f"{command} exited {result.returncode}:\n{both}")
        if not quiet_ok and WARNING_RE.search(both):
            raise Failed(f"{command} printed a warning:\n{both}")
        return result.stdout

    def manage(self, *args: str) -> str:
        return self.run([str(self.venv / "bin" / "python"), "manage.py", *args], cwd=self.site)

    def start(self, name: str, args: list[str], cwd: Path) -> Path:
        """Start in the background, in its own process group; returns its log file."""
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(args, cwd=cwd, env=self.env, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.background.append((name, process))
        return log

    def stop_all(self) -> None:
        """SIGTERM each process started here (qcluster stops its workers itself), then
        SIGKILL its whole process group: what is left after 15 s, and any stray child."""
        for _, process in self.background:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 15
        for _, process in self.background:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the group's stragglers too
            process.wait()
        self.background.clear()

    def check_alive(self) -> None:
        for name, process in self.background:
            if process.poll() is not None:
                raise Failed(f"{name} exited {process.returncode}:\n"
                             + (self.logs / f"{name}.log").read_text(errors="replace"))


# --- the steps -------------------------------------------------------------------------------


def build_and_install(run: Run) -> None:
    dist = run.tmp / "dist"
    with run.step("Build the sdist and the wheel, twine check"):
        run.run([sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)],
                quiet_ok=True)
        files = sorted(str(f) for f in dist.iterdir())
        run.run([sys.executable, "-m", "twine", "check", "--strict", *files])
        wheels = [f for f in files if f.endswith(".whl")]
        if len(wheels) != 1 or not any(f.endswith(".tar.gz") for f in files):
            raise Failed(f"expected one wheel and one sdist, got {files}")
    with run.step("Install the wheel into a fresh virtualenv"):
        # pip runs from here into the new environment (``--python``): no copy of pip to make.
        run.run([sys.executable, "-m", "venv", "--without-pip", str(run.venv)])
        run.run([sys.executable, "-m", "pip", "--python", str(run.venv / "bin" / "python"),
                 "install", "--quiet", wheels[0]], quiet_ok=True)


def make_project(run: Run) -> None:
    with run.step("startproject, paste the README's settings and urls, add the shop app"):
        run.site.mkdir()
        run.run([str(run.venv / "bin" / "django-admin"), "startproject", "mysite",
                 str(run.site)])
        package = run.site / "mysite"
        with (package / "settings.py").open("a", encoding="utf-8") as settings:
            settings.write("\n# --- the README's quickstart settings ---\n")
            settings.write(readme_block("settings", run.readme))
            settings.write('\nINSTALLED_APPS += ["shop"]  # the site\'s own app\n')
        with (package / "urls.py").open("a", encoding="utf-8") as urls:
            urls.write("\n# --- the README's quickstart urls ---\n")
            urls.write(readme_block("urls", run.readme))
        run.run([str(run.venv / "bin" / "django-admin"), "startapp", "shop"], cwd=run.site)
        (run.site / "shop" / "models.py").write_text(SHOP_MODELS, encoding="utf-8")


def run_shell_block(run: Run) -> None:
    """The README's commands in order; before its first ``manage.py`` command (the key is
    exported by then), ``makemigrations shop`` and ``check --fail-level WARNING``."""
    checked = False
    for line in shell_steps(readme_block("shell", run.readme)):
        if line.startswith("export "):
            name = line.split()[1].split("=", 1)[0]
            with run.step(f"README: export {name}"):
                value = run.run(["bash", "-c", f'{line}\nprintf %s "${name}"'],
                                cwd=run.site).strip()
                if not value:
                    raise Failed(f"the README's export of {name} gave nothing")
                run.env[name] = value
            continue
        if not checked:
            with run.step("makemigrations shop, check --fail-level WARNING"):
                run.manage("makemigrations", "shop")
                run.manage("check", "--fail-level", "WARNING")
            checked = True
        args = shlex.split(line)[2:]
        if args[:1] == ["qcluster"]:
            with run.step("README: python manage.py qcluster (in the background)"):
                run.start("qcluster", [str(run.venv / "bin" / "python"), "manage.py", *args],
                          run.site)
            continue
        with run.step(f"README: {line}"):
            run.manage(*args)


def deliver(run: Run) -> float:
    """Endpoint through the API, a receiver, an Order saved: seconds until it arrived."""
    inbox = run.tmp / "receiver"
    inbox.mkdir()
    with run.step("Start the receiver, create an endpoint through the REST API"):
        run.start("receiver", [sys.executable, str(Path(__file__).resolve()), "--receiver",
                               str(inbox)], REPO)
        port_file = inbox / "port"
        deadline = time.monotonic() + 10
        while not port_file.exists():
            run.check_alive()
            if time.monotonic() > deadline:
                raise Failed("the receiver did not start")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text().strip()}/hooks/shop/"
        answer = run.manage("shell", "-c", f"URL = {url!r}\n" + CREATE_ENDPOINT)
        secret = json.loads(answer.strip().splitlines()[-1])["secret"]
        (inbox / "secret.tmp").write_text(secret)
        (inbox / "secret.tmp").rename(inbox / "secret")
    with run.step("Save an Order, wait for the verified order.created"):
        started = time.monotonic()
        run.manage("shell", "-c", SAVE_ORDER)
        received = inbox / "received.jsonl"
        while time.monotonic() - started < ARRIVAL_TIMEOUT:
            run.check_alive()
            for line in received.read_text().splitlines() if received.exists() else []:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line still being written: read again
                if not record["verified"]:
                    raise Failed(f"a webhook arrived that did not verify: {record}")
                if record["type"] == "order.created" and record["number"] == "A-1":
                    return time.monotonic() - started
            time.sleep(0.1)
        raise Failed(f"no verified order.created within {ARRIVAL_TIMEOUT:g} s")


def check_logs(run: Run) -> None:
    """The cluster printed no warning (django-q2's "misconfigured" one is printed there too)."""
    log = (run.logs / "qcluster.log").read_text(errors="replace")
    if WARNING_RE.search(log) or "misconfigured" in log:
        raise Failed(f"qcluster printed a warning:\n{log}")


# --- the receiver (run as ``--receiver FOLDER``) ---------------------------------------------


def receive(folder: Path) -> None:
    """Answer webhooks on 127.0.0.1 (a free port, written to FOLDER/port): each request is
    verified with ``standardwebhooks`` against FOLDER/secret and recorded in
    FOLDER/received.jsonl; 204 when it verified, 401 otherwise."""
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            record: dict[str, Any] = {"verified": False, "type": None, "number": None}
            secret_file = folder / "secret"
            try:
                if not secret_file.exists():
                    raise WebhookVerificationError("no secret yet")
                payload = Webhook(secret_file.read_text()).verify(body, dict(self.headers))
                record.update(verified=True, type=payload["type"],
                              number=payload["data"].get("number"))
            except (WebhookVerificationError, KeyError, TypeError, ValueError) as exc:
                record["error"] = repr(exc)
            with (folder / "received.jsonl").open("a") as out:
                out.write(json.dumps(record) + "\n")
            self.send_response(204 if record["verified"] else 401)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"receiver: {format % args}\n")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    (folder / "port.tmp").write_text(str(server.server_address[1]))
    (folder / "port.tmp").rename(folder / "port")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--readme", type=Path, default=README,
                        help="take the quickstart from this file (default: README.md)")
    parser.add_argument("--receiver", metavar="FOLDER", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.receiver:
        receive(options.receiver)
        return 0

    missing = [name for name in ("build", "twine", "standardwebhooks")
               if importlib.util.find_spec(name) is None]
    if missing:
        print(f"quickstart check: {sys.executable} lacks {', '.join(missing)}; run it with the "
              "interpreter of the dev extra (.venv/bin/python after ./scripts/test.sh).",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what it started, then go
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="webhooks-quickstart-"))
    run = Run(tmp, options.readme)
    outcome, arrival = 1, 0.0
    try:
        build_and_install(run)
        make_project(run)
        run_shell_block(run)
        arrival = deliver(run)
        with run.step("Stop qcluster and the receiver"):
            run.stop_all()
        check_logs(run)
        outcome = 0
    except (Failed, subprocess.TimeoutExpired) as exc:
        print(f"\nquickstart check FAILED: {exc}", file=sys.stderr)
        for log in sorted(run.logs.glob("*.log")):
            print(f"\n--- {log.name} (last 60 lines)", file=sys.stderr)
            print("\n".join(log.read_text(errors="replace").splitlines()[-60:]),
                  file=sys.stderr)
    finally:
        run.stop_all()
        if options.keep:
            print(f"scratch folder kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\nstep timings:")
    for name, seconds in run.timings:
        print(f"  {seconds:6.1f} s  {name}")
    total = time.monotonic() - started
    if outcome == 0:
        print(f"quickstart check passed in {total:.1f} s "
              f"(save to verified webhook: {arrival:.2f} s)")
    return outcome


if __name__ == "__main__":
    sys.exit(main())
