"""Send a test event to one endpoint."""

from __future__ import annotations

import time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import ngettext

from webhooks import services
from webhooks.management.commands._util import get_endpoint
from webhooks.models import Delivery
from webhooks.validators import validate_endpoint_url


class Command(BaseCommand):
    help = ("Send a webhook.test event to one endpoint (by id). The cluster delivers it; "
            "--wait prints the outcome.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("endpoint", help="The endpoint's id: ep_… (its UUID works too).")
        parser.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                            help="Wait up to SECONDS for the attempt and print its outcome.")
        parser.add_argument("--dry-run", action="store_true",
                            help="Check the endpoint's URL as the sender would and show what "
                                 "would be sent; send nothing.")

    def handle(self, *args: Any, endpoint: str, wait: float = 0, dry_run: bool = False,
               **options: Any) -> None:
        target = get_endpoint(endpoint)
        if dry_run:
            try:
                validate_endpoint_url(target.url, resolve=True)
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from None
            state = "active" if target.is_active else f"disabled ({target.disabled_reason})"
            keys = len(target.signing_secrets())
            self.stdout.write(f"Would POST a webhook.test event to {target.url} ({state}), "
                              + ngettext("signed with %d secret.", "signed with %d secrets.",
                                         keys) % keys)
            return
        sent = services.send_test_event(target)
        self.stdout.write(f"Queued test event {sent.event.public_id} for {target.url}")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            attempt = sent.attempt_log.order_by("number").first()
            if attempt is not None:
                if attempt.succeeded:
                    self.stdout.write(self.style.SUCCESS(
                        f"HTTP {attempt.status_code} in {attempt.duration * 1000:.0f} ms"))
                    return
                raise CommandError(f"{attempt.error_class}: {attempt.error}")
            if Delivery.objects.filter(pk=sent.pk, status="failed").exists():
                sent.refresh_from_db()
                raise CommandError(f"not sent: {sent.last_error}")
            time.sleep(0.2)
        if wait:
            raise CommandError(f"no attempt within {wait:g}s: is qcluster running?")
