"""Delete old events with their deliveries and attempts, in batches."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.db.models import Exists, OuterRef

from webhooks.management.commands._util import parse_when, progress
from webhooks.models import Delivery, DeliveryAttempt, Event


class Command(BaseCommand):
    help = (
        "Delete events older than --older-than (default 30d) whose deliveries are all finished, "
        "with their deliveries and attempts, a batch at a time so that tables are never locked "
        "for long."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", default="30d",
                            help="Age: 30d, 12h or an ISO date-time (default 30d).")
        parser.add_argument("--batch-size", type=int, default=1000,
                            help="Events per transaction (default 1000).")
        parser.add_argument("--dry-run", action="store_true", help="Only count.")

    def handle(self, *args: Any, older_than: str = "30d", batch_size: int = 1000,
               dry_run: bool = False, **options: Any) -> None:
        cutoff = parse_when(older_than)
        pending = Delivery.objects.filter(event=OuterRef("pk"), status="pending")
        old = Event.objects.filter(created_at__lt=cutoff, dispatched_at__isnull=False).exclude(
            Exists(pending))
        total = old.count()
        if dry_run:
            self.stdout.write(f"{total} events (and their deliveries and attempts) would be "
                              "deleted.")
            return
        done = 0
        while True:
            ids = list(old.order_by("created_at").values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            with transaction.atomic():
                DeliveryAttempt.objects.filter(delivery__event_id__in=ids).delete()
                Delivery.objects.filter(event_id__in=ids).delete()
                Event.objects.filter(pk__in=ids).delete()
            done += len(ids)
            self.stdout.write(progress(done, total), ending="\r")
        self.stdout.write(progress(done, total))
        self.stdout.write(self.style.SUCCESS(f"Deleted {done} events."))
