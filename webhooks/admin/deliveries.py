"""The deliveries admin (with a retry button and action), the failed deliveries that need
attention, and the attempt log. All read-only but for retries, which go through
:func:`webhooks.services.retry_deliveries`."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
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
from webhooks.models import Delivery, DeliveryAttempt

from .base import (
    INLINE_BODY_CHARS,
    RELATED_ENDPOINT_HEAVY,
    CappedInlineFormSet,
    LargeTableAdmin,
    LeanChangeList,
    ReadOnlyAdminMixin,
    admin_link,
    catalog_types,
    clipped,
    clipped_url,
    quiet,
    short_datetime,
    status_badge,
    with_lean_endpoint,
)
from .exchange import attempt_block, outcome, request_block, response_block
from .filters import AttemptOutcomeFilter, DeliveryEventTypeFilter, EndpointFilter
from .health import format_latency


class DeliveryDisplayMixin:
    """Columns a delivery shows alike in an event's inline and in the deliveries admin."""

    @admin.display(description=_("endpoint"))
    def endpoint_link(self, obj: Delivery) -> SafeString:
        return admin_link(obj.endpoint, clipped(obj.endpoint.url))

    @admin.display(description=_("status"), ordering="status")
    def status_label(self, obj: Delivery) -> SafeString:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description=_("status"), ordering="status")
    def status_summary(self, obj: Delivery) -> SafeString:
        """The status, then when the next attempt is due (pending) or the last HTTP status."""
        below: Any = ""
        if obj.status == Delivery.Status.PENDING and obj.next_attempt_at:
            below = format_html("{} {}", _("next"), short_datetime(obj.next_attempt_at))
        elif obj.last_status_code:
            below = f"HTTP {obj.last_status_code}"
        return format_html("{}{}", self.status_label(obj), quiet(below))

    @admin.display(description=_("last error"))
    def last_error_display(self, obj: Delivery) -> SafeString:
        return clipped(obj.last_error, lines=2)


class AttemptInline(ReadOnlyAdminMixin, admin.StackedInline):
    """A delivery's first attempts, one readable block each: request and response side by
    side, headers one per line, the body pretty-printed when JSON and folded when HTML or
    long. Headers and bodies are capped (each attempt's own page shows them whole), so the
    delivery's page stays small however many attempts it has."""

    model = DeliveryAttempt
    fk_name = "delivery"
    formset = CappedInlineFormSet
    template = "admin/webhooks/delivery/attempts_inline.html"
    readonly_fields = ("exchange",)
    fields = readonly_fields
    extra = 0
    ordering = ["number"]
    verbose_name_plural = _("attempts (the first 100)")

    @admin.display(description=_("attempt"))
    def exchange(self, obj: DeliveryAttempt) -> SafeString:
        return attempt_block(obj, INLINE_BODY_CHARS)


class DeliveryAdmin(DeliveryDisplayMixin, LargeTableAdmin):
    """Deliveries, with their attempts; retried from the list or the delivery's page."""

    list_display = ["created", "event_type", "endpoint_url", "status_summary", "attempts",
                    "last_error_display"]
    list_display_links = ["created"]
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

    @admin.display(description=_("ID"))
    def delivery_id(self, obj: Delivery) -> str:
        return obj.public_id

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, obj: Delivery) -> SafeString:
        """When it was created (the link to the delivery; its id in the tooltip)."""
        return short_datetime(obj.created_at, obj.public_id)

    @admin.display(description=_("event type"))
    def event_type(self, obj: Delivery) -> SafeString:
        return clipped(obj.event.type)

    @admin.display(description=_("endpoint"))
    def endpoint_url(self, obj: Delivery) -> SafeString:
        return clipped_url(obj.endpoint.url)

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


class AttemptChangeList(LeanChangeList):
    """Attaches the event type of each listed attempt's delivery, read in one query for the
    page (a join would make SQLite read every delivery to sort the attempts)."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        types = dict(Delivery.objects.filter(
            pk__in={obj.delivery_id for obj in self.result_list}).values_list("pk", "event__type"))
        for obj in self.result_list:
            obj.webhooks_event_type = types.get(obj.delivery_id, "")


class DeliveryAttemptAdmin(LargeTableAdmin):
    """The attempt log: every HTTP request and what came back."""

    list_display = ["sent_at", "attempt", "delivery_link", "endpoint_url", "status",
                    "duration_ms", "error_display"]
    list_display_links = ["sent_at"]
    list_filter = [AttemptOutcomeFilter, EndpointFilter,
                   ("created_at", admin.DateFieldListFilter)]
    list_select_related = ["endpoint"]
    list_defer = (*RELATED_ENDPOINT_HEAVY, "response_body", "response_headers",
                  "request_headers")
    search_fields = ["delivery__id"]
    search_help_text = _("A delivery id (dlv_…) or an attempt id (att_…).")
    readonly_fields = ("public_id", "delivery_page_link", "number", "created_at", "duration_ms",
                       "error_display", "request", "response")
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeliveryAttempt]:
        return with_lean_endpoint(super().get_queryset(request))

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return AttemptChangeList

    def search(self, queryset: QuerySet, term: str) -> QuerySet:
        if term.startswith(f"{ids.ATTEMPT}_"):
            pk = DeliveryAttempt.parse_id(term)
            return queryset.filter(pk=pk) if pk else queryset.none()
        pk = Delivery.parse_id(term)
        if pk is None:
            return queryset.none()
        # dlv_…, or a bare UUID: of a delivery or of an attempt
        return queryset.filter(models.Q(delivery_id=pk) | models.Q(pk=pk))

    @admin.display(description=_("sent at"), ordering="created_at")
    def sent_at(self, obj: DeliveryAttempt) -> SafeString:
        return short_datetime(obj.created_at)

    @admin.display(description=_("attempt"))
    def attempt(self, obj: DeliveryAttempt) -> str:
        return f"#{obj.number}"

    @admin.display(description=_("delivery"))
    def delivery_link(self, obj: DeliveryAttempt) -> SafeString:
        """The delivery, by the type of its event (its id in the tooltip)."""
        public_id = ids.to_public(ids.DELIVERY, obj.delivery_id)
        url = reverse("admin:webhooks_delivery_change", args=[public_id])
        return format_html('<a href="{}" title="{}">{}</a>', url, public_id,
                           clipped(getattr(obj, "webhooks_event_type", "") or public_id))

    @admin.display(description=_("delivery"))
    def delivery_page_link(self, obj: DeliveryAttempt) -> SafeString:
        """The delivery's id and its event's type, the id a link to the delivery."""
        delivery = Delivery.objects.select_related("event").only(
            "pk", "event__type").get(pk=obj.delivery_id)
        return format_html("{} ({})", admin_link(delivery, delivery.public_id),
                           delivery.event.type)

    @admin.display(description=_("URL"))
    def endpoint_url(self, obj: DeliveryAttempt) -> SafeString:
        """Where the attempt was sent (the endpoint's URL then)."""
        return clipped_url(obj.url)

    @admin.display(description=_("status code"), ordering="status_code")
    def status(self, obj: DeliveryAttempt) -> SafeString:
        if obj.status_code is None:
            return status_badge("other", "—")
        return status_badge(outcome(obj), obj.status_code)

    @admin.display(description=_("duration"), ordering="duration")
    def duration_ms(self, obj: DeliveryAttempt) -> str:
        return format_latency(obj.duration)

    @admin.display(description=_("error"))
    def error_display(self, obj: DeliveryAttempt) -> SafeString:
        text = ": ".join(part for part in (obj.error_class, obj.error) if part)
        return clipped(text, lines=2)

    @admin.display(description=_("request"))
    def request(self, obj: DeliveryAttempt) -> SafeString:
        return request_block(obj)

    @admin.display(description=_("response (as stored)"))
    def response(self, obj: DeliveryAttempt) -> SafeString:
        return response_block(obj)
