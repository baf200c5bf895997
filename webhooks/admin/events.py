"""The events admin (read-only), with each event's deliveries."""

from __future__ import annotations

import json

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from webhooks.models import Delivery, Event, PublicIdModel

from .base import (
    CappedInlineFormSet,
    LargeTableAdmin,
    ReadOnlyAdminMixin,
    admin_link,
    dash,
    pretty_json,
    short_datetime,
    status_badge,
    with_lean_endpoint,
)
from .deliveries import DeliveryDisplayMixin
from .filters import EventTypeFilter


class DeliveryInline(DeliveryDisplayMixin, ReadOnlyAdminMixin, admin.TabularInline):
    """An event's first deliveries."""

    model = Delivery
    formset = CappedInlineFormSet
    readonly_fields = ("delivery_link", "endpoint_link", "status_summary", "attempts",
                       "last_error_display")
    fields = readonly_fields
    extra = 0
    ordering = ["created_at"]
    verbose_name_plural = _("deliveries (first 100)")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return with_lean_endpoint(super().get_queryset(request))

    @admin.display(description=_("delivery"))
    def delivery_link(self, obj: Delivery) -> SafeString:
        return admin_link(obj, obj.public_id)


class EventAdmin(LargeTableAdmin):
    """Events: searched by id or type, never counted in full."""

    list_display = ["public_id", "type", "owner", "created", "dispatched", "failed"]
    list_filter = [EventTypeFilter, ("created_at", admin.DateFieldListFilter)]
    list_select_related = ["owner"]
    list_defer = ("payload",)
    search_fields = ["type"]
    search_help_text = _("An event id (evt_…), or an event type or its beginning.")
    readonly_fields = (
        "public_id", "type", "owner", "created_at", "dispatched_at",
        "payload_pretty", "error",
    )
    fields = readonly_fields
    inlines = [DeliveryInline]

    def search(self, queryset: QuerySet, term: str) -> QuerySet:
        pk = Event.parse_id(term)
        if pk is not None:
            return queryset.filter(pk=pk)
        return queryset.filter(type__startswith=term.lower())

    @admin.display(description=_("ID"))
    def public_id(self, obj: PublicIdModel) -> SafeString:
        """The id receivers see (``webhook-id``); the UUID in the tooltip."""
        return format_html('<span class="webhooks-clip-1 webhooks-id" title="{}">{}</span>',
                           obj.pk, obj.public_id)

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, obj: Event) -> SafeString:
        return short_datetime(obj.created_at)

    @admin.display(description=_("dispatched"), ordering="dispatched_at")
    def dispatched(self, obj: Event) -> SafeString:
        return short_datetime(obj.dispatched_at)

    @admin.display(description=_("payload"))
    def failed(self, obj: Event) -> SafeString:
        """``failed`` (the error in its tooltip) when the payload could not be built."""
        if not obj.error:
            return dash()
        return format_html('<span title="{}">{}</span>', obj.error,
                           status_badge("failed", _("failed")))

    @admin.display(description=_("payload"))
    def payload_pretty(self, obj: Event) -> SafeString:
        if not obj.payload:
            return dash()
        return pretty_json(json.loads(obj.payload))
