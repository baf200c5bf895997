"""``demo_setup``: demo users and organizations, products, and webhook endpoints that post to
the demo receiver: one site-wide, one owned by each organization.

Idempotent: ``scripts/demo.sh`` runs it on every start.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from example_project.receiver.models import Inbox
from example_project.shop.models import Membership, Organization, Product
from webhooks.models import Endpoint, Subscription

PRODUCTS = [("Coffee beans, 1 kg", Decimal("24.00")), ("Espresso cup", Decimal("9.50"))]

#: Demo customers (the password is the user name).
USERS = ["alice", "bob", "carol"]


@dataclass(frozen=True)
class DemoOrganization:
    """An organization of the demo, its members and the receiver inbox of its endpoint."""

    name: str
    email: str
    members: tuple[str, ...]
    inbox: str


#: Two organizations: alice and bob share Acme's endpoints; bob is in Globex too (the API
#: picks one with the X-Organization header); carol sees only Globex's.
ORGANIZATIONS = [
    DemoOrganization("Acme Coffee", "webhooks@acme.example.com", ("alice", "bob"), "acme"),
    DemoOrganization("Globex Tea", "webhooks@globex.example.com", ("carol", "bob"), "globex"),
]
#: What an organization's endpoint subscribes to: its orders and invoices.
ORGANIZATION_EVENTS = ["order.created", "order.updated", "order.deleted", "order.shipped",
                       "invoice.paid"]
#: The site-wide endpoint's inbox: it gets every event, whoever owns it.
SITE_INBOX = "demo"


def endpoint_description(owner: Organization | None) -> str:
    """How ``demo_setup`` recognises the endpoints it made (one per owner)."""
    whose = "site-wide" if owner is None else str(owner)
    return f"Demo receiver, {whose} (created by demo_setup)"


def demo_endpoint(owner: Organization | None) -> Endpoint | None:
    """The endpoint ``demo_setup`` made for ``owner`` (``None``: the site-wide one)."""
    return Endpoint.objects.filter(owner=owner, description=endpoint_description(owner)).first()


class Command(BaseCommand):
    help = ("Create the demo users, organizations, products, receiver inboxes and webhook "
            "endpoints (idempotent).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000,
                            help="Port the demo site runs on (default 8000).")

    def handle(self, *args: Any, port: int, **options: Any) -> None:
        site = f"http://127.0.0.1:{port}"
        base = f"{site}/receiver"
        with transaction.atomic():
            self.create_users()
            endpoints = [self.create_endpoint(None, f"{base}/{SITE_INBOX}/", SITE_INBOX, ["*"])]
            for spec in ORGANIZATIONS:
                organization = self.create_organization(spec)
                endpoints.append(self.create_endpoint(
                    organization, f"{base}/{spec.inbox}/", spec.inbox, ORGANIZATION_EVENTS))
            # After the endpoints: a first start shows their product.created webhooks.
            for name, price in PRODUCTS:
                Product.objects.get_or_create(name=name, defaults={"price": price})

        for endpoint in endpoints:
            if not endpoint.is_active:
                self.stdout.write(self.style.WARNING(
                    f"The endpoint {endpoint.description!r} is disabled "
                    f"({endpoint.disabled_reason or 'by hand'}); re-enable it in the admin to "
                    "receive its webhooks again."
                ))
        self.stdout.write(self.style.SUCCESS("Demo ready."))
        self.stdout.write(f"  Admin:    {site}/admin/   (log in as admin / admin)")
        self.stdout.write(f"  Receiver: {base}/   (what each inbox got)")
        for spec in ORGANIZATIONS:
            self.stdout.write(f"  {spec.name}: members {', '.join(spec.members)} "
                              f"(password = user name), endpoint -> inbox {spec.inbox!r}")
        self.stdout.write("  Try it:   add or change an Order of an organization in the admin, "
                          "then watch the receiver page.")

    def create_users(self) -> None:
        user_model = get_user_model()
        if not user_model.objects.filter(username="admin").exists():
            user_model.objects.create_superuser("admin", "admin@example.com", "admin")
            self.stdout.write("Created superuser admin (password admin).")
        for name in USERS:
            if not user_model.objects.filter(username=name).exists():
                user_model.objects.create_user(name, f"{name}@example.com", name)
                self.stdout.write(f"Created customer {name} (password {name}).")

    def create_organization(self, spec: DemoOrganization) -> Organization:
        organization, created = Organization.objects.get_or_create(
            name=spec.name, defaults={"email": spec.email}
        )
        if created:
            self.stdout.write(f"Created organization {spec.name} "
                              f"(members {', '.join(spec.members)}).")
        for user in get_user_model().objects.filter(username__in=spec.members):
            Membership.objects.get_or_create(organization=organization, user=user)
        return organization

    def create_endpoint(self, owner: Organization | None, url: str, inbox_slug: str,
                        event_types: list[str]) -> Endpoint:
        """The demo endpoint of ``owner`` (``None``: site-wide) and the receiver inbox it posts
        to (which verifies its signatures with its key, looked up by its URL)."""
        endpoint = demo_endpoint(owner)
        if endpoint is None:
            endpoint = Endpoint.objects.create(
                url=url, owner=owner, description=endpoint_description(owner))
            whose = "site-wide" if owner is None else f"owned by {owner}"
            self.stdout.write(f"Created endpoint {url} ({whose}: {', '.join(event_types)}).")
        elif endpoint.url != url:
            endpoint.url = url
            endpoint.save(update_fields=["url", "updated_at"])
            self.stdout.write(f"Endpoint moved to {url}.")
        for event_type in event_types:
            Subscription.objects.get_or_create(endpoint=endpoint, event_type=event_type)
        # The receiver verifies with the key of every endpoint that posts to the inbox's URL
        # (as a third party would copy it from the site's API or admin): nothing to copy here.
        Inbox.objects.get_or_create(slug=inbox_slug)
        return endpoint
