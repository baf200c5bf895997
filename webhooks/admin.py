"""Django admin: endpoints, events, deliveries and their attempts."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from webhooks.emit import retry_deliveries, send_test_event
from webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event, Subscription


class SubscriptionInline(admin.TabularInline):
    model = Subscription
    extra = 1


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "owner", "is_active", "consecutive_failures", "last_success_at",
                    "disabled_reason", "created_at"]
    list_filter = ["is_active"]
    list_select_related = ["owner"]
    search_fields = ["url", "description"]
    raw_id_fields = ["owner"]
    readonly_fields = ["masked_secret", "disabled_at", "failing_since", "consecutive_failures",
                       "last_success_at", "last_failure_at", "created_at", "updated_at"]
    inlines = [SubscriptionInline]
    actions = ["send_test", "enable", "disable"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description=_("signing secret"))
    def masked_secret(self, obj: Endpoint) -> str:
        return obj.secret[:10] + "…" if obj.pk else "—"

    @admin.action(description=_("Send a test event"))
    def send_test(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        count = 0
        for endpoint in queryset:
            send_test_event(endpoint)
            count += 1
        self.message_user(request, ngettext("Sent a test event to %d endpoint.",
                                            "Sent a test event to %d endpoints.", count) % count,
                          messages.SUCCESS)

    @admin.action(description=_("Enable"))
    def enable(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        count = queryset.filter(is_active=False).update(
            is_active=True, disabled_reason="", disabled_at=None, failing_since=None,
            consecutive_failures=0)
        self.message_user(request, ngettext("Enabled %d endpoint.", "Enabled %d endpoints.",
                                            count) % count, messages.SUCCESS)

    @admin.action(description=_("Disable"))
    def disable(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        count = queryset.filter(is_active=True).update(
            is_active=False, disabled_reason=str(_("Disabled by staff.")))
        self.message_user(request, ngettext("Disabled %d endpoint.", "Disabled %d endpoints.",
                                            count) % count, messages.SUCCESS)


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AttemptInline(ReadOnlyMixin, admin.TabularInline):
    model = DeliveryAttempt
    fields = ("number", "created_at", "status_code", "duration", "error_class", "error",
              "response_body")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["number"]


@admin.register(Event)
class EventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["__str__", "type", "owner", "created_at", "dispatched_at"]
    list_filter = ["type"]
    list_select_related = ["owner"]
    search_fields = ["type", "=id"]
    readonly_fields = ["id", "type", "owner", "created_at", "dispatched_at", "payload", "error"]
    show_full_result_count = False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["id", "event", "endpoint", "status", "attempts", "last_status_code",
                    "next_attempt_at", "created_at"]
    list_filter = ["status"]
    list_select_related = ["event", "endpoint"]
    raw_id_fields = ["event", "endpoint"]
    readonly_fields = ["event", "endpoint", "status", "attempts", "next_attempt_at",
                       "last_attempt_at", "last_status_code", "last_error", "created_at"]
    inlines = [AttemptInline]
    actions = ["retry_now"]
    show_full_result_count = False

    @admin.action(description=_("Retry now"))
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = retry_deliveries(queryset)
        self.message_user(request, ngettext("Queued %d delivery for retry.",
                                            "Queued %d deliveries for retry.", count) % count,
                          messages.SUCCESS)
