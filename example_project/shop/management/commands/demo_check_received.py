"""``demo_check_received``: wait until every ``webhook.test`` event sent since a moment reached
the demo receiver with a verified signature, and check that nothing the receiver got since then
failed verification.

``scripts/api_walkthrough.sh`` runs it after the walkthrough of ``docs/api.md``, whose test
events go to an endpoint the walkthrough creates. Exits 0 on success, 1 (after printing what it
saw) otherwise.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from example_project.receiver.models import ReceivedWebhook
from webhooks.events.catalog import TEST_EVENT_TYPE
from webhooks.models import Event


def _moment(value: str) -> datetime:
    parsed = parse_datetime(value)
    if parsed is None or parsed.tzinfo is None:
        raise CommandError(f"--since: {value!r} is not an ISO 8601 date-time with a zone.")
    return parsed


class Command(BaseCommand):
    help = ("Wait until every webhook.test event sent since --since reached the demo receiver "
            "verified, and check that nothing it got since then failed verification.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, type=_moment,
                            help="ISO 8601 date-time with a zone (2026-01-01T10:00:00Z).")
        parser.add_argument("--at-least", type=int, default=1,
                            help="How many test events there must be (default 1).")
        parser.add_argument("--timeout", type=float, default=30.0,
                            help="Seconds to wait for them (default 30).")

    def handle(self, *args: Any, since: datetime, at_least: int, timeout: float,
               **options: Any) -> None:
        deadline = time.monotonic() + timeout
        while True:
            sent = self.test_events(since)
            received = self.verified_ids(since)
            missing = [public_id for public_id in sent if public_id not in received]
            if len(sent) >= at_least and not missing:
                break
            if time.monotonic() > deadline:
                self.report(since)
                raise CommandError(f"{len(sent)} test event(s) since {since:%H:%M:%S} (at "
                                   f"least {at_least} expected); not received verified: "
                                   f"{', '.join(missing) or 'none'}.")
            time.sleep(0.5)
        failed = ReceivedWebhook.objects.filter(received_at__gte=since, verified=False)
        if failed.exists():
            self.report(since)
            raise CommandError(f"{failed.count()} webhook(s) failed verification at the "
                               "receiver.")
        self.stdout.write(self.style.SUCCESS(
            f"OK: {len(sent)} test event(s) received with a verified signature "
            f"({', '.join(sent)}); every webhook received since then verified."))

    @staticmethod
    def test_events(since: datetime) -> list[str]:
        events = Event.objects.filter(type=TEST_EVENT_TYPE, created_at__gte=since)
        return [event.public_id for event in events.order_by("created_at")]

    @staticmethod
    def verified_ids(since: datetime) -> set[str]:
        rows = ReceivedWebhook.objects.filter(received_at__gte=since, verified=True)
        return set(rows.values_list("webhook_id", flat=True))

    def report(self, since: datetime) -> None:
        """What the receiver got since ``since``, to tell where the chain broke."""
        rows = ReceivedWebhook.objects.filter(received_at__gte=since).select_related("inbox")
        self.stdout.write(f"The receiver got {rows.count()} webhook(s) since {since}:")
        for row in rows.order_by("received_at"):
            self.stdout.write(f"  {row.received_at:%H:%M:%S} {row.inbox.slug} "
                              f"{row.event_type or '?'} {row.webhook_id} "
                              f"verified={row.verified} {row.error}")
