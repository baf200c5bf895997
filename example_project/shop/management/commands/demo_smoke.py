"""``demo_smoke``: place an order for an organization and wait until the demo receiver got its
verified webhook at that organization's inbox and at the site-wide one, and never at the other
organization's.

Needs ``demo_setup``, a running site (the receiver) and a running ``qcluster``; ``scripts/demo.sh
--smoke`` provides all three. Exits 0 on success, 1 (after printing what it saw) otherwise.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from example_project.receiver.models import ReceivedWebhook
from example_project.shop.management.commands.demo_setup import (
    ORGANIZATIONS,
    SITE_INBOX,
    demo_endpoint,
)
from example_project.shop.models import Order, Organization, Product
from webhooks.models import Delivery, Event

EVENT_TYPE = "order.created"


def _data_id(body: str) -> Any:
    try:
        return json.loads(body)["data"]["id"]
    except (ValueError, KeyError, TypeError):
        return None


class Command(BaseCommand):
    help = ("Create an order of alice's organization and wait for its verified order.created "
            "webhook at that organization's inbox and the site-wide one, not the other's.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--timeout", type=float, default=60.0,
                            help="Seconds to wait for the webhooks (default 60).")

    def handle(self, *args: Any, timeout: float, **options: Any) -> None:
        mine, other = ORGANIZATIONS[0], ORGANIZATIONS[1]
        alice = get_user_model().objects.filter(username="alice").first()
        organization = Organization.objects.filter(name=mine.name).first()
        stranger = Organization.objects.filter(name=other.name).first()
        product = Product.objects.order_by("pk").first()
        if alice is None or organization is None or stranger is None or product is None:
            raise CommandError("Run `python manage.py demo_setup` first.")
        started = timezone.now()
        order = Order.objects.create(
            organization=organization, customer=alice, total=product.price)
        expected = [mine.inbox, SITE_INBOX]
        self.stdout.write(f"Created {order} of {organization} (by alice); waiting up to "
                          f"{timeout:g}s for a verified {EVENT_TYPE} webhook at the inboxes "
                          f"{' and '.join(expected)}...")

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.received(order, started, inbox) for inbox in expected):
                self.stdout.write(self.style.SUCCESS(
                    f"OK: the receiver verified {EVENT_TYPE} for {order} at "
                    f"{' and '.join(expected)} after "
                    f"{(timezone.now() - started).total_seconds():.1f}s."
                ))
                self.check_isolation(order, started, stranger, other.inbox)
                return
            time.sleep(0.5)

        self.report(order, started)
        raise CommandError(f"No verified {EVENT_TYPE} webhook for {order} at every one of "
                           f"{', '.join(expected)} within {timeout:g}s.")

    def received(self, order: Order, since: datetime, inbox: str, verified: bool = True) -> bool:
        """Whether ``inbox`` got a (verified) webhook about ``order`` since ``since``."""
        rows = ReceivedWebhook.objects.filter(
            inbox__slug=inbox, event_type=EVENT_TYPE, received_at__gte=since)
        if verified:
            rows = rows.filter(verified=True)
        return any(_data_id(body) == order.pk for body in rows.values_list("body", flat=True))

    def check_isolation(self, order: Order, since: datetime, stranger: Organization,
                        inbox: str) -> None:
        """The other organization's endpoint got no delivery of the order's events. Every
        delivery of an event is made at once (the fan-out), so by now it would exist."""
        endpoint = demo_endpoint(stranger)
        leaked = Delivery.objects.filter(
            endpoint=endpoint, event__in=self.events(order, since)).exists()
        if leaked or self.received(order, since, inbox, verified=False):
            raise CommandError(f"{order} of {order.organization} reached {stranger}'s endpoint "
                               f"(inbox {inbox}).")
        self.stdout.write(self.style.SUCCESS(
            f"OK: {stranger}'s endpoint got nothing of {order}."))

    def events(self, order: Order, since: datetime) -> list[Event]:
        return [e for e in Event.objects.filter(type=EVENT_TYPE, created_at__gte=since)
                if isinstance(e.data, dict) and e.data.get("id") == order.pk]

    def report(self, order: Order, since: datetime) -> None:
        """Print what happened on both sides, to tell where the chain broke."""
        write = self.stdout.write
        events = self.events(order, since)
        if not events:
            write(f"No {EVENT_TYPE} event was recorded for {order}: is the WEBHOOKS setting "
                  "right?")
        for event in events:
            dispatched = event.dispatched_at or "never (is qcluster running?)"
            write(f"Event {event.public_id} (owner {event.owner_id}): dispatched {dispatched}; "
                  f"error: {event.error or '-'}")
            deliveries = event.deliveries.select_related("endpoint")
            if event.dispatched_at and not deliveries:
                write("  no deliveries: no active endpoint subscribes to it")
            for delivery in deliveries:
                write(f"  delivery to {delivery.endpoint.url}: {delivery.status}, "
                      f"{delivery.attempts} attempt(s), next at {delivery.next_attempt_at}, "
                      f"last error: {delivery.last_error or '-'}")
                for attempt in delivery.attempt_log.order_by("number"):
                    write(f"    #{attempt.number} {attempt.created_at:%H:%M:%S} "
                          f"status {attempt.status_code} {attempt.error_class} "
                          f"{attempt.error} {attempt.response_body[:200]!r}")
        received = ReceivedWebhook.objects.filter(received_at__gte=since)
        write(f"The receiver got {received.count()} webhook(s) since the order was created:")
        for row in received.select_related("inbox").order_by("received_at"):
            write(f"  {row.received_at:%H:%M:%S} {row.inbox.slug} {row.event_type or '?'} "
                  f"{row.webhook_id} verified={row.verified} {row.error}")
