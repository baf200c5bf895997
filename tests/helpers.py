"""Test helpers that are not data factories (those are in :mod:`tests.factories`)."""

from __future__ import annotations

import io
from typing import Any

from django.core.management import call_command

# The factories' old home: test files that import them from here keep working.
from tests.factories import make_endpoint, make_user

__all__ = ["make_endpoint", "make_user", "override_webhooks", "run_command"]


def override_webhooks(**values: Any) -> Any:
    """``override_settings`` for some ``WEBHOOKS`` keys, keeping the others of the test settings.

    Usable as a decorator or a context manager.
    """
    from django.conf import settings
    from django.test import override_settings

    return override_settings(WEBHOOKS={**settings.WEBHOOKS, **values})


def run_command(*args: str) -> str:
    """Run a management command (name, then its arguments); return what it wrote to stdout."""
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()
