"""Send deliveries again, chosen by endpoint, status, event type and time range."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import ngettext

from webhooks import services
from webhooks.exceptions import InvalidReplayWindow
from webhooks.management.commands._util import get_endpoint, parse_when
from webhooks.models import Delivery


class Command(BaseCommand):
    help = (
        "Make matching deliveries due again (one more attempt each). --missed also creates "
        "deliveries for events the endpoint never got (it was disabled or not subscribed yet)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--endpoint", required=True,
                            help="The endpoint's id: ep_… (its UUID works too).")
        parser.add_argument("--since", required=True,
                            help="Start of the range: 2h, 7d or an ISO date-time.")
        parser.add_argument("--until", help="End of the range (default: now).")
        parser.add_argument("--status", action="append", choices=["failed", "succeeded"],
                            help="Statuses to send again (repeatable; default failed).")
        parser.add_argument("--event-type", action="append", dest="event_types",
                            help="Only these event types (repeatable).")
        parser.add_argument("--missed", action="store_true",
                            help="Also deliver events the endpoint has no delivery for.")
        parser.add_argument("--dry-run", action="store_true", help="Only count.")

    def handle(self, *args: Any, endpoint: str, since: str, until: str | None = None,
               status: list[str] | None = None, event_types: list[str] | None = None,
               missed: bool = False, dry_run: bool = False, **options: Any) -> None:
        target = get_endpoint(endpoint)
        start = parse_when(since)
        if missed:  # checked first: nothing is sent again when part of the work is refused
            try:
                services.check_replay_window(start)
            except InvalidReplayWindow as exc:
                raise CommandError(exc.message) from None
        deliveries = Delivery.objects.filter(endpoint=target, created_at__gte=start,
                                             status__in=status or ["failed"])
        if until:
            deliveries = deliveries.filter(created_at__lt=parse_when(until))
        if event_types:
            deliveries = deliveries.filter(event__type__in=event_types)
        if dry_run:
            planned = deliveries.count()
            self.stdout.write(ngettext("%d delivery would be sent again.",
                                       "%d deliveries would be sent again.", planned) % planned)
            return
        count = services.retry_deliveries(deliveries)
        self.stdout.write(ngettext("%d delivery is due again.", "%d deliveries are due again.",
                                   count) % count)
        if missed:
            _, added = services.replay(target, start)
            self.stdout.write(ngettext("%d missed event was queued for the endpoint.",
                                       "%d missed events were queued for the endpoint.",
                                       added) % added)
