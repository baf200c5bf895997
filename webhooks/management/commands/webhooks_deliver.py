"""Deliver due webhooks in the foreground, without a django-q2 cluster."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count
from django.utils.translation import ngettext

from webhooks.delivery.claims import claim
from webhooks.delivery.fanout import fan_out
from webhooks.delivery.loop import deliver
from webhooks.models import Delivery


class Command(BaseCommand):
    help = (
        "Fan out undispatched events and deliver every due delivery in this process, then "
        "exit (or keep going with --loop). For debugging, and for sites that run cron instead "
        "of a qcluster."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true",
                            help="Keep polling for work instead of exiting when none is due.")
        parser.add_argument("--interval", type=float, default=1.0,
                            help="Seconds between polls with --loop (default 1).")
        parser.add_argument("--time-limit", type=float, default=None,
                            help="Stop after this many seconds (default: no limit).")
        parser.add_argument("--dry-run", action="store_true",
                            help="Only say what is waiting: undispatched events, due "
                                 "deliveries and the oldest due one.")

    def handle(self, *args: Any, loop: bool = False, interval: float = 1.0,
               time_limit: float | None = None, dry_run: bool = False,
               **options: Any) -> None:
        if dry_run:
            from django.db.models import Min
            from django.utils import timezone

            from webhooks.models import Event

            now = timezone.now()
            due = Delivery.objects.due(now).aggregate(n=Count("id"),
                                                      oldest=Min("next_attempt_at"))
            age = (now - due["oldest"]).total_seconds() if due["oldest"] else 0.0
            events = Event.objects.undispatched().count()
            self.stdout.write(
                ngettext("%d event to dispatch", "%d events to dispatch", events) % events
                + ", " + ngettext("%d delivery due", "%d deliveries due", due["n"]) % due["n"]
                + f" (oldest due for {age:.0f}s).")
            return
        started = time.monotonic()
        totals = {"events": 0, "succeeded": 0, "retrying": 0, "failed": 0}
        while True:
            while (count := fan_out()):
                totals["events"] += count
            while True:
                batch = claim()
                if not batch.deliveries:
                    break
                for outcome in deliver(batch):
                    key = ("succeeded" if outcome.succeeded
                           else "failed" if outcome.terminal else "retrying")
                    totals[key] += 1
                self.stdout.write(self._line(totals), ending="\r")
                if time_limit is not None and time.monotonic() - started > time_limit:
                    break
            out_of_time = time_limit is not None and time.monotonic() - started > time_limit
            if not loop or out_of_time:
                break
            time.sleep(interval)
        self.stdout.write(self._line(totals))
        still_due = Delivery.objects.due().count()
        if still_due:
            self.stdout.write(ngettext("%d delivery is still due.", "%d deliveries are still due.",
                                       still_due) % still_due)

    @staticmethod
    def _line(totals: dict[str, int]) -> str:
        return (f"events dispatched: {totals['events']}  succeeded: {totals['succeeded']}  "
                f"retrying: {totals['retrying']}  failed: {totals['failed']}")
