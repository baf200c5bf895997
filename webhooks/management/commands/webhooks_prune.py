"""Apply the retention settings now (or a given age), in batches, with progress."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from webhooks import retention
from webhooks.management.commands._util import parse_when, progress

_LABELS = {
    **{f"{s}_deliveries": f"{s} deliveries" for s in retention.PRUNABLE_STATUSES},
    "attempts": "attempts",
    "events": "events",
    "responses": "responses to blank",
}


class Command(BaseCommand):
    help = (
        "Prune what the retention settings (RETENTION, EVENT_RETENTION, RESPONSE_RETENTION) "
        "allow: finished deliveries with their attempts, then events with no delivery left, "
        "then blank old stored responses. Pending deliveries and undispatched events are never "
        "touched. Works a batch at a time, each in its own short transaction."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            help="Prune every finished delivery and event older than this (30d, 12h or an "
                 "ISO date-time) instead of following the settings; responses are blanked "
                 "from this age too, or RESPONSE_RETENTION if that is shorter.")
        parser.add_argument("--batch-size", type=int, default=None,
                            help="Rows per statement (default PRUNE_BATCH_SIZE).")
        parser.add_argument("--time-limit", type=float, default=None,
                            help="Stop after this many seconds (default: when done).")
        parser.add_argument("--dry-run", action="store_true",
                            help="Only count what would be pruned, per kind.")

    def handle(self, *args: Any, older_than: str | None = None, batch_size: int | None = None,
               time_limit: float | None = None, dry_run: bool = False,
               **options: Any) -> None:
        if batch_size is not None and not 1 <= batch_size <= 10_000:
            raise CommandError("--batch-size must be from 1 to 10000.")
        policy = (retention.Policy.older_than(parse_when(older_than)) if older_than
                  else retention.Policy.from_settings())
        if policy.is_empty:
            self.stdout.write("Retention is off (every RETENTION is None, and EVENT_RETENTION "
                              "and RESPONSE_RETENTION too): nothing to prune.")
            return
        planned = retention.estimate(policy)
        for kind in retention.KINDS:
            self.stdout.write(f"{_LABELS[kind]}: {planned.counts[kind]}")
        if dry_run:
            self.stdout.write("Dry run: nothing was changed.")
            return
        done = dict.fromkeys(retention.KINDS, 0)
        shown: list[str] = []

        def report(batch: retention.Batch) -> None:
            for kind, count in batch.counts.items():
                done[kind] += count
            kind = next(iter(batch.counts))  # a delivery batch also counts its attempts
            if shown and shown[-1] != kind:
                self.stdout.write("")
            if not shown or shown[-1] != kind:
                shown.append(kind)
            self.stdout.write(
                f"{_LABELS[kind]} {progress(done[kind], max(planned.counts[kind], done[kind]))}",
                ending="\r")

        result = retention.prune(policy, batch_size=batch_size, time_limit=time_limit,
                                 progress=report)
        if shown:
            self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(
            f"Pruned {result} in {result.batches} statements."))
        if not result.complete:
            self.stdout.write(self.style.WARNING(
                "Stopped at the time limit; run again to carry on."))
