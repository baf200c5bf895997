"""The deliveries admin (with a retry button and action), the failed deliveries that need
attention, and the attempt log. All read-only but for retries, which go through
:func:`webhooks.services.retry_deliveries`."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from webhooks import ids, services
from webhooks.conf import webhooks_settings
from webhooks.models import Delivery, DeliveryAttempt

from .base import (
    INLINE_BODY_CHARS,
    RELATED_ENDPOINT_HEAVY,
    CappedInlineFormSet,
    LargeTableAdmin,
    ReadOnlyAdminMixin,
    admin_link,
    capped_text,
    catalog_types,
    pretty_json,
    status_badge,
    with_lean_endpoint,
)
from .filters import AttemptOutcomeFilter, DeliveryEventTypeFilter, EndpointFilter
from .health import format_latency


class DeliveryDisplayMixin:
    """Columns a delivery shows alike in an event's inline and in the deliveries admin."""

    @admin.display(description=_("endpoint"))
    def endpoint_link(self, obj: Delivery) -> SafeString:
        return admin_link(obj.endpoint, obj.endpoint.url)

    @admin.display(description=_("status"), ordering="status")
    def status_label(self, obj: Delivery) -> SafeString:
        return status_badge(obj.status, obj.get_status_display())


class AttemptDisplayMixin:
    """Columns an attempt shows alike in the delivery's inline and on its own page."""

    #: Characters of the request and of the response headers shown (``None``: all).
    header_chars: int | None = None

    @admin.display(description=_("duration"), ordering="duration")
    def duration_ms(self, obj: DeliveryAttempt) -> str:
        return format_latency(obj.duration)

    @admin.display(description=_("request headers"))
    def request_headers_pretty(self, obj: DeliveryAttempt) -> SafeString:
        return pretty_json(obj.request_headers, self.header_chars)

    @admin.display(description=_("response headers"))
    def response_headers_pretty(self, obj: DeliveryAttempt) -> SafeString:
        return pretty_json(obj.response_headers, self.header_chars)


class AttemptInline(AttemptDisplayMixin, ReadOnlyAdminMixin, admin.TabularInline):
    """A delivery's first attempts, headers and response bodies capped (each attempt's own
    page shows them whole): the delivery's page stays small however many attempts it has."""

    model = DeliveryAttempt
    fk_name = "delivery"
    formset = CappedInlineFormSet
    readonly_fields = (
        "attempt_link", "created_at", "status_code", "duration_ms", "error_class",
        "error", "request_headers_pretty", "response_headers_pretty", "response_preview",
    )
    fields = readonly_fields
    extra = 0
    ordering = ["number"]
    header_chars = INLINE_BODY_CHARS

    @admin.display(description=_("attempt"))
    def attempt_link(self, obj: DeliveryAttempt) -> SafeString:
        return admin_link(obj, f"#{obj.number}")

    @admin.display(description=_("response body"))
    def response_preview(self, obj: DeliveryAttempt) -> SafeString:
        return capped_text(obj.response_body, INLINE_BODY_CHARS)


class DeliveryAdmin(DeliveryDisplayMixin, LargeTableAdmin):
    """Deliveries, with their attempts; retried from the list or the delivery's page."""

    list_display = ["delivery_id", "event_type", "endpoint_url", "status_label", "attempts",
                    "last_status_code", "last_error", "next_attempt_at", "created_at"]
    list_filter = ["status", EndpointFilter, DeliveryEventTypeFilter,
                   ("created_at", admin.DateFieldListFilter)]
    list_select_related = ["event", "endpoint"]
    list_defer = ("event__payload", *RELATED_ENDPOINT_HEAVY)
    search_fields = ["endpoint__url"]
    search_help_text = _("A delivery id (dlv_…), an event id (evt_…), an endpoint id (ep_…), "
                         "an event type or a part of an endpoint URL.")
    readonly_fields = (
        "delivery_id", "event_link", "endpoint_link", "status_label", "attempts",
        "next_attempt_at", "last_attempt_at", "last_status_code", "last_error",
        "created_at",
    )
    fields = readonly_fields
    inlines = [AttemptInline]
    actions = ["retry_now"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        return with_lean_endpoint(super().get_queryset(request), "event")

    def search(self, queryset: QuerySet, term: str) -> QuerySet:
        prefix = term.partition("_")[0] if "_" in term else None
        if prefix in (ids.EVENT, ids.ENDPOINT):
            pk = ids.parse(prefix, term)
            column = "event_id" if prefix == ids.EVENT else "endpoint_id"
            return queryset.filter(**{column: pk}) if pk else queryset.none()
        pk = Delivery.parse_id(term)
        if pk is not None:  # dlv_…, or a bare UUID: of a delivery or of its event
            return queryset.filter(models.Q(pk=pk) | models.Q(event_id=pk))
        if term in dict(catalog_types()):
            return queryset.filter(event__type=term)
        return queryset.filter(endpoint__url__icontains=term)

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path("<path:object_id>/retry/", self.admin_site.admin_view(self.retry_view),
                 name="{}_{}_retry".format(*info)),
            *super().get_urls(),
        ]

    def has_retry_permission(self, request: HttpRequest) -> bool:
        """Whether the user may retry deliveries (change permission on deliveries)."""
        return request.user.has_perm("webhooks.change_delivery")

    def retryable(self, deliveries: QuerySet[Delivery]) -> QuerySet[Delivery]:
        """The ones of ``deliveries`` this admin's retries may touch: any delivery."""
        return deliveries

    def after_retry_url(self, object_id: str) -> str:
        """Where the retry button leads back to: the delivery's page."""
        return reverse("admin:webhooks_delivery_change", args=[object_id])

    @admin.display(description=_("delivery"), ordering="created_at")
    def delivery_id(self, obj: Delivery) -> str:
        return obj.public_id

    @admin.display(description=_("event type"))
    def event_type(self, obj: Delivery) -> str:
        return obj.event.type

    @admin.display(description=_("endpoint"))
    def endpoint_url(self, obj: Delivery) -> str:
        return obj.endpoint.url

    @admin.display(description=_("event"))
    def event_link(self, obj: Delivery) -> SafeString:
        return admin_link(obj.event, obj.event)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {"can_retry": self.has_retry_permission(request),
                 "retry_url": reverse("admin:webhooks_delivery_retry", args=[object_id]),
                 **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: make one delivery due again (the button on its page); 404 for one this admin
        may not retry (:meth:`retryable`)."""
        if request.method != "POST" or not self.has_retry_permission(request):
            raise PermissionDenied
        pk = Delivery.parse_id(object_id)
        deliveries = self.retryable(Delivery.objects.filter(pk=pk)) if pk else None
        if deliveries is None or not deliveries.exists():
            raise Http404(_("No such delivery to retry here."))
        if services.retry_deliveries(deliveries):
            self.message_user(request, _("The delivery was queued for retry."),
                              messages.SUCCESS)
        else:
            self.message_user(request, _("The delivery is being sent right now; it was "
                                         "left alone."), messages.WARNING)
        return HttpResponseRedirect(self.after_retry_url(object_id))

    @admin.action(description=_("Retry now"), permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        """Make the selected deliveries due again (those this admin may retry)."""
        count = services.retry_deliveries(
            self.retryable(Delivery.objects.filter(pk__in=queryset.values("pk"))))
        self.message_user(request, ngettext("Queued %d delivery for retry.",
                                            "Queued %d deliveries for retry.", count) % count,
                          messages.SUCCESS)


class FailedDeliveryAdmin(DeliveryAdmin):
    """The deliveries that need attention: every retry failed (newest first)."""

    list_filter = [EndpointFilter, DeliveryEventTypeFilter,
                   ("created_at", admin.DateFieldListFilter)]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        return super().get_queryset(request).filter(status=Delivery.Status.FAILED)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("webhooks.change_delivery") or request.user.has_perm(
            "webhooks.change_faileddelivery")

    def retryable(self, deliveries: QuerySet[Delivery]) -> QuerySet[Delivery]:
        """Failed deliveries only: this page's permission is to retry what failed, not to
        send again what succeeded or bring forward what waits (the deliveries admin can)."""
        return deliveries.filter(status=Delivery.Status.FAILED)

    def after_retry_url(self, object_id: str) -> str:
        """Back to the failed deliveries (their permission may not cover the delivery's
        page)."""
        return reverse("admin:webhooks_faileddelivery_changelist")

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:webhooks_delivery_change", args=[object_id]))


class DeliveryAttemptAdmin(AttemptDisplayMixin, LargeTableAdmin):
    """The attempt log: every HTTP request and what came back."""

    list_display = ["created_at", "attempt", "delivery_link", "endpoint_url", "status_code",
                    "duration_ms", "error_class"]
    list_display_links = ["created_at"]
    list_filter = [AttemptOutcomeFilter, EndpointFilter,
                   ("created_at", admin.DateFieldListFilter)]
    list_select_related = ["endpoint"]
    list_defer = (*RELATED_ENDPOINT_HEAVY, "response_body", "response_headers",
                  "request_headers")
    search_fields = ["delivery__id"]
    search_help_text = _("A delivery id (dlv_…) or an attempt id (att_…).")
    readonly_fields = (
        "public_id", "delivery_link", "endpoint_url", "number", "created_at", "url", "status_code",
        "duration_ms", "error_class", "error", "request_headers_pretty",
        "response_headers_pretty", "response_body_pretty",
    )
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeliveryAttempt]:
        return with_lean_endpoint(super().get_queryset(request))

    def search(self, queryset: QuerySet, term: str) -> QuerySet:
        if term.startswith(f"{ids.ATTEMPT}_"):
            pk = DeliveryAttempt.parse_id(term)
            return queryset.filter(pk=pk) if pk else queryset.none()
        pk = Delivery.parse_id(term)
        if pk is None:
            return queryset.none()
        # dlv_…, or a bare UUID: of a delivery or of an attempt
        return queryset.filter(models.Q(delivery_id=pk) | models.Q(pk=pk))

    @admin.display(description=_("attempt"))
    def attempt(self, obj: DeliveryAttempt) -> str:
        return f"#{obj.number}"

    @admin.display(description=_("delivery"))
    def delivery_link(self, obj: DeliveryAttempt) -> SafeString:
        public_id = ids.to_public(ids.DELIVERY, obj.delivery_id)
        url = reverse("admin:webhooks_delivery_change", args=[public_id])
        return format_html('<a href="{}">{}</a>', url, public_id)

    @admin.display(description=_("endpoint"))
    def endpoint_url(self, obj: DeliveryAttempt) -> str:
        return obj.endpoint.url if obj.endpoint_id and obj.endpoint else obj.url

    @admin.display(description=_("response body (as stored, capped)"))
    def response_body_pretty(self, obj: DeliveryAttempt) -> SafeString:
        return capped_text(obj.response_body, webhooks_settings.STORED_RESPONSE_BYTES)
