"""``demo_smoke``: place an order and wait until the demo receiver got its verified webhook.

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
from example_project.shop.models import Order, Product
from webhooks.models import Event

EVENT_TYPE = "order.created"


def _data_id(body: str) -> Any:
    try:
        return json.loads(body)["data"]["id"]
    except (ValueError, KeyError, TypeError):
        return None


class Command(BaseCommand):
    help = "Create an order for alice and wait for its verified order.created webhook."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--timeout", type=float, default=60.0,
                            help="Seconds to wait for the webhook (default 60).")

    def handle(self, *args: Any, timeout: float, **options: Any) -> None:
        alice = get_user_model().objects.filter(username="alice").first()
        product = Product.objects.order_by("pk").first()
        if alice is None or product is None:
            raise CommandError("Run `python manage.py demo_setup` first.")
        started = timezone.now()
        order = Order.objects.create(customer=alice, total=product.price)
        self.stdout.write(f"Created {order} for alice; waiting up to {timeout:g}s for "
                          f"a verified {EVENT_TYPE} webhook...")

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.received(order, started):
                self.stdout.write(self.style.SUCCESS(
                    f"OK: the receiver verified {EVENT_TYPE} for {order} "
                    f"after {(timezone.now() - started).total_seconds():.1f}s."
                ))
                return
            time.sleep(0.5)

        self.report(order, started)
        raise CommandError(f"No verified {EVENT_TYPE} webhook for {order} within {timeout:g}s.")

    def received(self, order: Order, since: datetime) -> bool:
        rows = ReceivedWebhook.objects.filter(
            verified=True, event_type=EVENT_TYPE, received_at__gte=since
        ).values_list("body", flat=True)
        return any(_data_id(body) == order.pk for body in rows)

    def report(self, order: Order, since: datetime) -> None:
        """Print what happened on both sides, to tell where the chain broke."""
        write = self.stdout.write
        events = [e for e in Event.objects.filter(type=EVENT_TYPE, created_at__gte=since)
                  if isinstance(e.data, dict) and e.data.get("id") == order.pk]
        if not events:
            write(f"No {EVENT_TYPE} event was recorded for {order}: is the WEBHOOKS setting "
                  "right?")
        for event in events:
            dispatched = event.dispatched_at or "never (is qcluster running?)"
            write(f"Event {event.public_id}: dispatched {dispatched}; error: {event.error or '-'}")
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
        for row in received.order_by("received_at"):
            write(f"  {row.received_at:%H:%M:%S} {row.event_type or '?'} {row.webhook_id} "
                  f"verified={row.verified} {row.error}")
