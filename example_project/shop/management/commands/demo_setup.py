"""``demo_setup``: demo users, products, and a site-wide endpoint that posts to the demo receiver.

Idempotent: ``scripts/demo.sh`` runs it on every start.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from example_project.receiver.models import Inbox
from example_project.shop.models import Product
from webhooks.models import Endpoint, Subscription

ENDPOINT_DESCRIPTION = "Demo receiver (created by demo_setup)"
PRODUCTS = [("Coffee beans, 1 kg", Decimal("24.00")), ("Espresso cup", Decimal("9.50"))]


class Command(BaseCommand):
    help = "Create the demo users, products, receiver inbox and webhook endpoint (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000,
                            help="Port the demo site runs on (default 8000).")

    def handle(self, *args: Any, port: int, **options: Any) -> None:
        base = f"http://127.0.0.1:{port}"
        with transaction.atomic():
            self.create_users()
            endpoint = self.create_endpoint(f"{base}/receiver/demo/")
            # After the endpoint: a first start shows their product.created webhooks.
            for name, price in PRODUCTS:
                Product.objects.get_or_create(name=name, defaults={"price": price})

        if not endpoint.is_active:
            self.stdout.write(self.style.WARNING(
                f"The demo endpoint is disabled ({endpoint.disabled_reason or 'by hand'}); "
                "re-enable it in the admin to receive webhooks again."
            ))
        self.stdout.write(self.style.SUCCESS("Demo ready."))
        self.stdout.write(f"  Admin:    {base}/admin/   (log in as admin / admin)")
        self.stdout.write(f"  Receiver: {base}/receiver/   (what the receiver got)")
        self.stdout.write("  Try it:   add or change an Order in the admin, "
                          "then watch the receiver page.")

    def create_users(self) -> None:
        user_model = get_user_model()
        if not user_model.objects.filter(username="admin").exists():
            user_model.objects.create_superuser("admin", "admin@example.com", "admin")
            self.stdout.write("Created superuser admin (password admin).")
        if not user_model.objects.filter(username="alice").exists():
            user_model.objects.create_user("alice", "alice@example.com", "alice")
            self.stdout.write("Created customer alice (password alice).")

    def create_endpoint(self, url: str) -> Endpoint:
        """The site-wide endpoint (every event) and the inbox that verifies its signatures."""
        endpoint = Endpoint.objects.filter(
            owner__isnull=True, description=ENDPOINT_DESCRIPTION
        ).first()
        if endpoint is None:
            endpoint = Endpoint.objects.create(url=url, description=ENDPOINT_DESCRIPTION)
            self.stdout.write(f"Created endpoint {url} (all events).")
        elif endpoint.url != url:
            endpoint.url = url
            endpoint.save(update_fields=["url", "updated_at"])
            self.stdout.write(f"Endpoint moved to {url}.")
        Subscription.objects.get_or_create(endpoint=endpoint, event_type="*")
        # The receiver must know the secret the endpoint signs with (as a third party would
        # copy it from the site's API or admin).
        inbox, created = Inbox.objects.get_or_create(
            slug="demo", defaults={"secret": endpoint.secret}
        )
        if not created and inbox.secret != endpoint.secret:
            inbox.secret = endpoint.secret
            inbox.save(update_fields=["secret"])
        return endpoint
