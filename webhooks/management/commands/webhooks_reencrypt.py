"""Re-encrypt every endpoint's secrets and custom headers with the newest encryption key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from webhooks.encryption import UNREADABLE_ADVICE, key_index
from webhooks.exceptions import WebhooksConfigurationError
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
                            help="Only count the endpoints that are not on the newest key (and "
                                 "list those no key can decrypt).")
        parser.add_argument("--batch-size", type=int, default=500,
                            help="Endpoints re-encrypted per transaction (default 500).")

    def handle(self, *args: Any, dry_run: bool = False, batch_size: int = 500,
               **options: Any) -> None:
        table = connection.ops.quote_name(Endpoint._meta.db_table)
        columns = ", ".join(connection.ops.quote_name(c) for c in ("id", *ENCRYPTED_COLUMNS))
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {columns} FROM {table}")  # noqa: S608 - quoted names
            rows = cursor.fetchall()
        to_pk = Endpoint._meta.pk.to_python
        try:
            keys = {to_pk(row[0]): {key_index(value) for value in row[1:] if value}
                    for row in rows}
        except WebhooksConfigurationError as exc:
            raise CommandError(f"{exc} Nothing was changed.") from None
        total = len(rows)
        unreadable = [pk for pk, found in keys.items() if None in found]
        if unreadable:
            if dry_run:  # every one of them, for the shell: one id a line
                self.stdout.write("\n".join(str(pk) for pk in unreadable))
            raise CommandError(unreadable_message(unreadable, total))
        stale = [pk for pk, found in keys.items() if found - {0}]
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


def unreadable_message(unreadable: list[Any], total: int, shown: int = 5) -> str:
    """What to do about endpoints that no key of ``ENCRYPTION_KEYS`` can decrypt."""
    ids = ", ".join(str(pk) for pk in unreadable[:shown])
    more = (f" and {len(unreadable) - shown} more: --dry-run lists them all"
            if len(unreadable) > shown else "")
    return (
        f"{len(unreadable)} of {total} endpoints hold secrets or headers that cannot be "
        f"decrypted with any key of WEBHOOKS['ENCRYPTION_KEYS'] ({ids}{more}). Nothing was "
        f"changed. {UNREADABLE_ADVICE}"
    )
