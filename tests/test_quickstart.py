"""The README's quickstart blocks, read as scripts/quickstart_check.py reads them.

The script itself (in .ci/run) pastes them into a new project and sends a webhook; these
quick checks catch a README edit that breaks them without building anything: the blocks are
there, the Python ones compile, the shell one has only steps the script runs, and the settings
pass our checks and django-q2's rule.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.test import override_settings

from webhooks.checks import check_encryption, check_settings, check_task_queue
from webhooks.encryption import generate_key

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "quickstart_check.py"


@pytest.fixture(scope="module")
def quickstart() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quickstart_check", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def documented_settings(quickstart: ModuleType, monkeypatch: pytest.MonkeyPatch,
                        debug: bool) -> dict[str, Any]:
    """The settings block run as it runs appended to a startproject settings.py."""
    monkeypatch.setenv("WEBHOOKS_ENCRYPTION_KEY", generate_key())
    namespace: dict[str, Any] = {"INSTALLED_APPS": ["django.contrib.admin"], "DEBUG": debug}
    exec(compile(quickstart.readme_block("settings"), "README settings", "exec"), namespace)  # noqa: S102
    return namespace


def test_the_blocks_are_there_and_compile(quickstart: ModuleType) -> None:
    compile(quickstart.readme_block("urls"), "README urls", "exec")
    steps = quickstart.shell_steps(quickstart.readme_block("shell"))
    assert steps[0].startswith("export WEBHOOKS_ENCRYPTION_KEY=")
    assert steps[1:] == ["python manage.py migrate", "python manage.py qcluster"]


def test_a_step_the_script_cannot_run_is_refused(quickstart: ModuleType) -> None:
    with pytest.raises(quickstart.Failed, match="cannot run: pip install foo"):
        quickstart.shell_steps("python manage.py migrate\npip install foo  # comment\n")


@pytest.mark.parametrize("debug", [True, False])
def test_the_documented_settings_pass_the_checks(
    quickstart: ModuleType, monkeypatch: pytest.MonkeyPatch, debug: bool
) -> None:
    namespace = documented_settings(quickstart, monkeypatch, debug)
    assert namespace["INSTALLED_APPS"][-3:] == ["django_q", "rest_framework", "webhooks"]
    q_cluster = namespace["Q_CLUSTER"]
    assert q_cluster["timeout"] < q_cluster["retry"]  # django-q2's "misconfigured" rule
    # The allowlist is on in development only (no webhooks.W001 in production).
    assert namespace["WEBHOOKS"]["ALLOWED_NETWORKS"] == (["127.0.0.0/8"] if debug else [])
    webhooks = {k: v for k, v in namespace["WEBHOOKS"].items() if k != "MODELS"}  # shop.Order
    with override_settings(Q_CLUSTER=q_cluster, WEBHOOKS=webhooks, DEBUG=debug):
        assert check_settings() + check_task_queue() + check_encryption() == []


def test_an_unset_key_variable_is_a_check_error_that_says_so(
    quickstart: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = documented_settings(quickstart, monkeypatch, True)
    monkeypatch.delenv("WEBHOOKS_ENCRYPTION_KEY")
    exec(compile(quickstart.readme_block("settings"), "README settings", "exec"), namespace)  # noqa: S102
    with override_settings(WEBHOOKS={"ENCRYPTION_KEYS": namespace["WEBHOOKS"]["ENCRYPTION_KEYS"]}):
        [error] = check_encryption()
    assert error.id == "webhooks.E031" and "environment variable" in error.msg
