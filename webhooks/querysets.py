"""Querysets with adjective-named filters for the hot queries (``.due()``, ``.pending()``)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.db import models
from django.utils import timezone

if TYPE_CHECKING:  # pragma: no cover
    from webhooks.models import Delivery, Endpoint, Event  # noqa: F401 - named in generics


class EndpointQuerySet(models.QuerySet["Endpoint"]):
    """Endpoints; flow-control and matching queries live with the delivery code."""


class EventQuerySet(models.QuerySet["Event"]):
    def undispatched(self) -> EventQuerySet:
        """Events not yet fanned out into deliveries (the outbox backlog)."""
        return self.filter(dispatched_at__isnull=True)


class DeliveryQuerySet(models.QuerySet["Delivery"]):
    def pending(self) -> DeliveryQuerySet:
        return self.filter(status="pending")

    def due(self, now: datetime | None = None) -> DeliveryQuerySet:
        """Pending deliveries whose next attempt time has come (an expired claim counts).

        Served by the partial index ``webhooks_delivery_due`` on ``next_attempt_at``.
        """
        return self.filter(status="pending", next_attempt_at__lte=now or timezone.now())
