"""``demo_reset_if_stale``: start the demo database over when an older demo layout made it.

Organizations own the demo's webhooks (``WEBHOOKS_OWNER_MODEL = "shop.Organization"``), and the
owner model can only be chosen before the first ``migrate``: a database migrated by an older
demo, where users owned them, keeps foreign keys to the user table and a shop without
organizations, and ``migrate`` cannot change that. The demo database is disposable, so
``scripts/demo.sh`` runs this command before ``migrate``: it finds such a database and drops it
(SQLite: the file; PostgreSQL: the tables of the site's models), and ``migrate`` builds it again.
A database of the current layout, or an empty one, is left alone. A PostgreSQL database that
does not exist yet (``DATABASE_URL=postgres://…/demo`` on a fresh server) is created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.recorder import MigrationRecorder

from webhooks.owners import get_owner_model


def stale_reason(connection: BaseDatabaseWrapper) -> str | None:
    """Why the database was made by an older layout of the demo, or ``None`` when it was not
    (or is empty)."""
    introspection = connection.introspection
    tables = set(introspection.table_names())
    if MigrationRecorder.Migration._meta.db_table not in tables:
        return None
    owner_table = get_owner_model()._meta.db_table
    applied = MigrationRecorder(connection).applied_migrations()
    if ("shop", "0001_initial") in applied and owner_table not in tables:
        return f"the shop was migrated without its {owner_table} table"
    if "webhooks_endpoint" in tables:
        with connection.cursor() as cursor:
            relations = introspection.get_relations(cursor, "webhooks_endpoint")
        target = relations.get("owner_id", (None, None))[1]
        if target is not None and target != owner_table:
            return f"webhook endpoints belong to {target}, not to {owner_table}"
    return None


class Command(BaseCommand):
    help = ("Drop the demo database if an older demo layout (webhooks owned by users) created "
            "it, so that migrate starts over. Leaves a current or empty database alone.")
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="Only say whether the database would be dropped.")

    def handle(self, *args: Any, dry_run: bool, **options: Any) -> None:
        connection = connections[DEFAULT_DB_ALIAS]
        if self.create_if_missing(connection, dry_run):
            return  # a new database: nothing stale in it
        reason = stale_reason(connection)
        if reason is None:
            self.stdout.write("The demo database is current (or new).")
            return
        self.stdout.write(self.style.WARNING(
            f"The demo database was made by an older version of the demo ({reason}). "
            "Organizations now own the demo's webhooks, which is chosen before the first "
            "migrate: the demo database is disposable, so it is dropped and made again."
        ))
        if dry_run:
            return
        if connection.vendor == "sqlite":
            self.drop_sqlite_file(connection)
        elif connection.vendor == "postgresql":
            self.drop_postgresql_tables(connection)
        else:
            raise CommandError(
                f"Cannot drop a {connection.vendor} database here: drop and create "
                f"{connection.settings_dict['NAME']} yourself, then run the demo again.")
        self.stdout.write("Dropped; migrate creates it again.")

    def create_if_missing(self, connection: BaseDatabaseWrapper, dry_run: bool) -> bool:
        """Create the PostgreSQL database ``DATABASE_URL`` names when the server has none of
        that name (SQLite makes its file by itself); whether it was missing."""
        if connection.vendor != "postgresql":
            return False
        try:
            connection.ensure_connection()
            return False
        except OperationalError as exc:
            if "does not exist" not in str(exc):
                raise CommandError(f"Cannot connect to PostgreSQL: {exc}") from None
        name = str(connection.settings_dict["NAME"])
        self.stdout.write(f"The PostgreSQL database {name!r} does not exist: creating it.")
        if dry_run:
            return True
        # Through the server's maintenance database, as Django's test runner creates its own.
        with connection._nodb_cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {connection.ops.quote_name(name)}")
        return True

    def drop_sqlite_file(self, connection: BaseDatabaseWrapper) -> None:
        name = str(connection.settings_dict["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            raise CommandError(f"Not a database file: {name!r}.")
        connection.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(name + suffix).unlink(missing_ok=True)

    def drop_postgresql_tables(self, connection: BaseDatabaseWrapper) -> None:
        """Drop the tables of the installed models and the migration history (nothing else:
        ``DATABASE_URL`` might name a database that holds more than the demo)."""
        introspection = connection.introspection
        tables = introspection.django_table_names(only_existing=True, include_views=False)
        tables.append(MigrationRecorder.Migration._meta.db_table)
        quote = connection.ops.quote_name
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            for table in tables:
                cursor.execute(f"DROP TABLE IF EXISTS {quote(table)} CASCADE")
