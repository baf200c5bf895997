"""Helpers shared by the ``webhooks_*`` management commands."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from webhooks.models import Endpoint

_RELATIVE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_when(value: str) -> datetime:
    """``2h``, ``30m``, ``7d`` (ago) or an ISO 8601 date-time (UTC when no zone is given)."""
    match = _RELATIVE.match(value.strip())
    if match:
        return timezone.now() - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    parsed = parse_datetime(value.strip())
    if parsed is None:
        raise CommandError(f"{value!r} is neither a duration such as 2h or 7d nor an ISO date.")
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def get_endpoint(endpoint_id: str) -> Endpoint:
    """The endpoint with this id (``ep_…``, or its bare UUID), or a :class:`CommandError` that
    says there is none."""
    pk = Endpoint.parse_id(endpoint_id)
    endpoint = Endpoint.objects.filter(pk=pk).first() if pk else None
    if endpoint is None:
        raise CommandError(f"No endpoint with id {endpoint_id!r} (ids look like ep_01HV…).")
    return endpoint


def progress(done: int, total: int, width: int = 30) -> str:
    """A one-line text progress bar: ``[#####.....] 50/100``."""
    filled = width if total <= 0 else int(width * min(done, total) / total)
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
