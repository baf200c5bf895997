"""Filtering and pagination of the delivery log, written out by hand (no django-filter)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers
from rest_framework.filters import BaseFilterBackend
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request

from webhooks.models import Delivery, Endpoint, Event

from .serializers import IdInputField


class DeliveryFilterSerializer(serializers.Serializer):
    """Query parameters of ``deliveries/``; a bad value is a 400 naming the parameter."""

    endpoint = IdInputField(Endpoint, required=False, help_text=_(
        "Deliveries to this endpoint: its ep_… id (or its bare UUID). An endpoint that is not "
        "yours matches nothing."))
    status = serializers.ChoiceField(choices=Delivery.Status.choices, required=False)
    event_type = serializers.CharField(max_length=100, required=False,
                                       help_text=_("Deliveries of events of this type."))
    event = IdInputField(Event, required=False, help_text=_(
        "Deliveries of this event: its evt_… id, the webhook-id receivers see (or its bare "
        "UUID)."))
    created_after = serializers.DateTimeField(required=False, help_text=_(
        "Deliveries created at or after this time (ISO 8601)."))
    created_before = serializers.DateTimeField(required=False, help_text=_(
        "Deliveries created before this time (ISO 8601)."))


class DeliveryFilter(BaseFilterBackend):
    """Applies :class:`DeliveryFilterSerializer` to the list (never to one object's route)."""

    def filter_queryset(self, request: Request, queryset: QuerySet[Any],
                        view: Any) -> QuerySet[Any]:
        if getattr(view, "action", None) != "list":
            return queryset
        params = DeliveryFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        values = params.validated_data
        lookups = {
            "endpoint": "endpoint_id",
            "status": "status",
            "event_type": "event__type",
            "event": "event_id",
            "created_after": "created_at__gte",
            "created_before": "created_at__lt",
        }
        return queryset.filter(**{lookups[k]: v for k, v in values.items()})


class WebhooksPagination(CursorPagination):
    """Newest first, by cursor: no ``COUNT(*)``, and stable while new rows arrive."""

    ordering: tuple[str, ...] = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class AttemptPagination(WebhooksPagination):
    """A delivery's attempts, newest first (by number), a few a page: each may hold up to
    ``MAX_RESPONSE_HEADER_BYTES`` of headers and ``STORED_RESPONSE_BYTES`` of body."""

    ordering = ("-number",)
    page_size = 10
    max_page_size = 50
