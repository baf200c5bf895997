"""Re-encrypt every endpoint's secrets and custom headers with the newest encryption key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction

from webhooks.encryption import uses_newest_key
from webhooks.models import Endpoint

ENCRYPTED_COLUMNS = ("signing_secret", "previous_secret", "headers")


class Command(BaseCommand):
    help = (
        "Re-encrypt endpoint secrets and custom headers with the first key of "
        "WEBHOOKS['ENCRYPTION_KEYS']. Run it after putting a new key in front; once it has "
        "finished, older keys can be removed from the list."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="Only count the endpoints that are not on the newest key.")
        parser.add_argument("--batch-size", type=int, default=500,
                            help="Endpoints re-encrypted per transaction (default 500).")

    def handle(self, *args: Any, dry_run: bool = False, batch_size: int = 500,
               **options: Any) -> None:
        table = connection.ops.quote_name(Endpoint._meta.db_table)
        columns = ", ".join(connection.ops.quote_name(c) for c in ("id", *ENCRYPTED_COLUMNS))
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {columns} FROM {table}")  # noqa: S608 - quoted names
            rows = cursor.fetchall()
        stale = [row[0] for row in rows
                 if any(value and not uses_newest_key(value) for value in row[1:])]
        total = len(rows)
        if dry_run:
            self.stdout.write(f"{len(stale)} of {total} endpoints are not on the newest key.")
            return
        done = 0
        for start in range(0, len(stale), batch_size):
            chunk = stale[start:start + batch_size]
            with transaction.atomic():
                for endpoint in Endpoint.objects.select_for_update().filter(pk__in=chunk):
                    # Reading decrypts with any key; saving encrypts with the newest.
                    endpoint.save(update_fields=list(ENCRYPTED_COLUMNS))
            done += len(chunk)
            self.stdout.write(f"  {done}/{len(stale)} re-encrypted")
        self.stdout.write(self.style.SUCCESS(
            f"Re-encrypted {done} endpoints; {total - done} were already on the newest key."))
