"""Django admin: endpoints (with health), events, deliveries, failed deliveries and attempts.

Built for large tables: lists of events, deliveries and attempts never count a whole table
(:class:`CappedCountPaginator`), read a constant number of queries per page, and every default
filter and ordering has an index behind it. Nothing here is built from settings when the
module is imported: the event catalog is read when a form or filter is instantiated.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections, models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from webhooks import ids
from webhooks.adminhealth import (
    Health,
    chart_svg,
    format_latency,
    health_by_endpoint,
    hourly_buckets,
    summary_html,
)
from webhooks.conf import webhooks_settings
from webhooks.emit import replay, retry_deliveries, send_test_event
from webhooks.events.catalog import TEST_EVENT_TYPE, get_catalog
from webhooks.events.payloads import payload_fields
from webhooks.exceptions import WebhooksConfigurationError
from webhooks.models import (
    WILDCARD,
    Delivery,
    DeliveryAttempt,
    Endpoint,
    Event,
    FailedDelivery,
)

#: Columns of an endpoint never needed by a list of events, deliveries or attempts (and
#: expensive: they are decrypted on load).
ENDPOINT_HEAVY = ("signing_secret", "previous_secret", "headers")
#: Characters of a response body shown in a list of attempts (the attempt page shows it all).
INLINE_BODY_CHARS = 2000
#: Rows an inline shows at most (the rest is one click away in a filtered list).
INLINE_ROWS = 100
MASK = "••••••••••••••••"


# --- building blocks -------------------------------------------------------------------------


class CappedCountPaginator(Paginator):
    """Counts at most ``cap`` rows, so a page of a huge table never scans all of it.

    Up to ``cap`` the count is exact. Beyond it, PostgreSQL's planner estimate is used when
    there is one; otherwise the count is ``cap`` (pages past it are reached by filtering).
    ``capped`` tells the template to say "more than".
    """

    cap = 10_000
    capped = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return len(queryset)
        counted = int(queryset.order_by()[: self.cap + 1].count())
        if counted <= self.cap:
            return counted
        self.capped = True
        return max(self.cap, estimate_rows(queryset) or 0)


def estimate_rows(queryset: QuerySet[Any]) -> int | None:
    """The planner's row estimate for ``queryset`` (PostgreSQL), else ``None``."""
    if connections[queryset.db].vendor != "postgresql":
        return None
    try:
        plan = json.loads(queryset.order_by().explain(format="json"))
        return int(plan[0]["Plan"]["Plan Rows"])
    except (ValueError, KeyError, IndexError, TypeError):  # pragma: no cover - odd planners
        return None


class LeanChangeList(ChangeList):
    """A changelist that leaves out columns its model admin names in ``list_defer``."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
        queryset = super().get_queryset(request, exclude_parameters)
        defer = getattr(self.model_admin, "list_defer", ())
        return queryset.defer(*defer) if defer else queryset


class CappedInlineFormSet(forms.BaseInlineFormSet):
    """An inline formset that shows the first ``INLINE_ROWS`` rows only."""

    def get_queryset(self) -> Any:
        if not hasattr(self, "_capped_queryset"):
            self._capped_queryset = super().get_queryset()[:INLINE_ROWS]
        return self._capped_queryset


class ReadOnlyAdminMixin:
    """View-only: no add, change or delete (actions declare their own permissions)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def parse_id(term: str, prefix: str) -> uuid.UUID | None:
    """A UUID from ``prefix_…`` (our public ids) or a plain UUID; ``None`` for anything else."""
    term = term.strip()
    try:
        if term.startswith(f"{prefix}_"):
            return ids.from_public(prefix, term)
        return uuid.UUID(term)
    except ValueError:
        return None


def catalog_types() -> list[tuple[str, str]]:
    """``(name, description)`` of every catalog type, or just the test type when the
    ``WEBHOOKS`` setting is broken (the system checks report that)."""
    try:
        return [(t.name, t.description) for t in get_catalog().types.values()]
    except WebhooksConfigurationError:
        return [(TEST_EVENT_TYPE, "")]


def admin_link(obj: models.Model, text: Any) -> SafeString:
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text)


def pretty_json(value: Any) -> SafeString:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return format_html('<pre class="webhooks-pre">{}</pre>', text)


def capped_text(text: str, limit: int) -> SafeString:
    if not text:
        return format_html("{}", "—")
    more = len(text) > limit
    return format_html('<pre class="webhooks-pre">{}{}</pre>', text[:limit],
                       "…" if more else "")


def status_badge(status: str, label: Any) -> SafeString:
    colour = {"succeeded": "#70bf2b", "failed": "#ba2121"}.get(status, "#999")
    return format_html('<span style="color:{};font-weight:bold">{}</span>', colour, label)


# --- filters ---------------------------------------------------------------------------------


class EventTypeFilter(admin.SimpleListFilter):
    """Event types from the catalog (never a ``SELECT DISTINCT`` over the events table)."""

    title = _("event type")
    parameter_name = "event_type"
    field_path = "type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name, _description in catalog_types()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(**{self.field_path: value}) if value else queryset


class DeliveryEventTypeFilter(EventTypeFilter):
    field_path = "event__type"


class EndpointFilter(admin.SimpleListFilter):
    """The first endpoints by URL, and the chosen one (a long list belongs in search)."""

    title = _("endpoint")
    parameter_name = "endpoint"
    shown = 30

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        chosen = parse_id(self.value() or "", "ep")
        rows = Endpoint.objects.order_by("url").values_list("pk", "url")
        if chosen is not None:
            rows = rows.filter(pk=chosen) | rows.filter(pk__in=rows.values("pk")[: self.shown])
            return [(str(pk), url) for pk, url in rows]
        return [(str(pk), url) for pk, url in rows[: self.shown]]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if not self.value():
            return queryset
        chosen = parse_id(self.value() or "", "ep")
        return queryset.filter(endpoint_id=chosen) if chosen else queryset.none()


class AttemptOutcomeFilter(admin.SimpleListFilter):
    title = _("outcome")
    parameter_name = "outcome"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("ok", _("Succeeded (2xx)")), ("http", _("Failed with a response")),
                ("error", _("Failed without a response"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        ok = models.Q(status_code__gte=200, status_code__lt=300)
        if self.value() == "ok":
            return queryset.filter(ok)
        if self.value() == "http":
            return queryset.filter(status_code__isnull=False).exclude(ok)
        if self.value() == "error":
            return queryset.filter(status_code__isnull=True)
        return queryset


class OwnerKindFilter(admin.SimpleListFilter):
    title = _("owner")
    parameter_name = "owned"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("site", _("Site-wide (no owner)")), ("user", _("A user's"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "site":
            return queryset.filter(owner__isnull=True)
        if self.value() == "user":
            return queryset.filter(owner__isnull=False)
        return queryset


class HealthFilter(admin.SimpleListFilter):
    title = _("health")
    parameter_name = "health"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("failing", _("Failing now")), ("disabled", _("Disabled")),
                ("healthy", _("Healthy"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "failing":
            return queryset.filter(is_active=True, consecutive_failures__gt=0)
        if self.value() == "disabled":
            return queryset.filter(is_active=False)
        if self.value() == "healthy":
            return queryset.filter(is_active=True, consecutive_failures=0)
        return queryset


# --- endpoints -------------------------------------------------------------------------------


class EndpointForm(forms.ModelForm):
    """The endpoint form; ``events`` offers the catalog's types, read when the form is built."""

    # Declared so the form needs no global setting for the scheme; the model's validators
    # (the same as the API's) still run when the form cleans the instance.
    url = forms.URLField(label=_("URL"), max_length=2048, assume_scheme="https",
                         widget=forms.URLInput(attrs={"class": "vURLField"}))
    events = forms.MultipleChoiceField(
        label=_("Event types"),
        widget=forms.CheckboxSelectMultiple,
        help_text=_("The events this endpoint receives. “All event types” includes types "
                    "added later. Test events are always delivered."),
    )

    payload_fields = forms.JSONField(
        label=_("Payload fields"), required=False,
        help_text=_('Send only some fields of the data, per event type, e.g. '
                    '{"order.created": ["id", "status"]}. Types left out get every field.'),
    )

    class Meta:
        model = Endpoint
        fields = ["url", "description", "owner", "is_active", "events", "payload_fields",
                  "headers", "rate_limit", "max_concurrency"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices: list[tuple[str, Any]] = [(WILDCARD, _("All event types (*)"))]
        choices += [(name, f"{name} — {description}" if description else name)
                    for name, description in catalog_types() if name != TEST_EVENT_TYPE]
        current: list[str] = []
        adding = self.instance._state.adding
        if not adding:
            current = sorted(self.instance.subscriptions.values_list("event_type", flat=True))
            known = {name for name, _label in choices}
            choices += [(name, _("%(name)s (no longer in the catalog)") % {"name": name})
                        for name in current if name not in known]
        events = self.fields["events"]
        assert isinstance(events, forms.MultipleChoiceField)  # noqa: S101 - for the type checker
        events.choices = choices
        if not self.is_bound:
            self.initial["events"] = [WILDCARD] if adding else current
            self.initial["payload_fields"] = {} if adding else self.instance.payload_fields

    def clean_events(self) -> list[str]:
        chosen: list[str] = self.cleaned_data["events"]
        return [WILDCARD] if WILDCARD in chosen else chosen

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        restricted = cleaned.get("payload_fields") or {}
        if not isinstance(restricted, dict) or not all(
            isinstance(v, list) and all(isinstance(n, str) for n in v)
            for v in restricted.values()
        ):
            self.add_error("payload_fields", _("Give an object of event type to a list of "
                                               "field names."))
            return cleaned
        events = cleaned.get("events") or []
        for event_type, names in restricted.items():
            if event_type not in events:
                self.add_error("payload_fields", _("%(type)s is not one of the chosen event "
                                                   "types.") % {"type": event_type})
                continue
            known = payload_fields(event_type)
            unknown = sorted(set(names) - set(known)) if known is not None else []
            if unknown:
                self.add_error("payload_fields", _("%(type)s has no field %(fields)s.")
                               % {"type": event_type, "fields": ", ".join(unknown)})
        return cleaned


class EndpointChangeList(LeanChangeList):
    """Attaches each listed endpoint's 24-hour health, read in one query for the page."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        health = health_by_endpoint(obj.pk for obj in self.result_list)
        for obj in self.result_list:
            obj.webhooks_health = health.get(obj.pk, Health())


class ReplayForm(forms.Form):
    since = forms.DateTimeField(
        label=_("Replay since"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text=_("Failed deliveries created since then are sent again, and events the "
                    "endpoint missed since then are delivered (active endpoints only)."),
    )

    def clean_since(self) -> Any:
        since = self.cleaned_data["since"]
        window = webhooks_settings.REPLAY_WINDOW
        if since < timezone.now() - timedelta(seconds=window):
            raise forms.ValidationError(
                _("A replay can go back %(hours)d hours at most."),
                code="too_old", params={"hours": window // 3600})
        return since


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ["url", "owner", "is_active", "subscribed_events", "success_rate",
                    "median_latency", "last_success_at", "consecutive_failures",
                    "disabled_why"]
    list_display_links = ["url"]
    list_filter = ["is_active", HealthFilter, OwnerKindFilter]
    list_select_related = ["owner"]
    list_defer = ENDPOINT_HEAVY
    search_fields = ["url", "description"]
    raw_id_fields = ["owner"]
    readonly_fields = ["secret_display", "health_summary", "health_chart", "paused",
                       "disabled_reason",
                       "disabled_at", "failing_since", "consecutive_failures",
                       "last_success_at", "last_failure_at", "created_at", "updated_at"]
    actions = ["send_test", "enable", "disable", "retry_failed", "replay_since"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        main = (None, {"fields": ["url", "description", "owner", "is_active", "events",
                                  "payload_fields", "headers"]})
        flow = (_("Flow control"), {"fields": ["rate_limit", "max_concurrency"]})
        if obj is None:
            return [main, flow]
        return [
            main,
            flow,
            (_("Signing secret"), {"fields": ["secret_display"]}),
            (_("Health (last 24 hours)"), {"fields": ["health_summary", "health_chart"]}),
            (_("State"), {"fields": ["paused", "disabled_reason", "disabled_at", "failing_since",
                                     "consecutive_failures", "last_success_at",
                                     "last_failure_at", "created_at", "updated_at"]}),
        ]

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        user_model = get_user_model()
        return [*self.search_fields, f"owner__{user_model.USERNAME_FIELD}"]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return EndpointChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[Endpoint]:
        return super().get_queryset(request).prefetch_related("subscriptions")

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        info = self.opts.app_label, self.opts.model_name
        return [
            path("<path:object_id>/secret/", view(self.secret_view),
                 name="{}_{}_secret".format(*info)),
            path("<path:object_id>/rotate-secret/", view(self.rotate_secret_view),
                 name="{}_{}_rotate_secret".format(*info)),
            *super().get_urls(),
        ]

    # list columns

    @admin.display(description=_("events"))
    def subscribed_events(self, obj: Endpoint) -> str:
        names = obj.event_types
        text = ", ".join(sorted(names)) or "—"
        return text if len(text) <= 60 else text[:59] + "…"

    @admin.display(description=_("disabled reason"), ordering="disabled_reason")
    def disabled_why(self, obj: Endpoint) -> SafeString:
        reason = obj.disabled_reason
        if len(reason) <= 40:
            return format_html("{}", reason or "—")
        return format_html('<span title="{}">{}…</span>', reason, reason[:39])

    @admin.display(description=_("paused"))
    def paused(self, obj: Endpoint) -> str:
        """Why and until when deliveries to the endpoint are held (a 429, an open circuit)."""
        until = obj.paused_until
        if until is None or until <= timezone.now():
            return "—"
        why = {"rate_limited": _("the receiver answered 429"),
               "circuit_open": _("failing: circuit breaker open")}.get(obj.pause_reason,
                                                                      obj.pause_reason)
        when = timezone.localtime(until).strftime("%Y-%m-%d %H:%M:%S")
        return str(_("until %(when)s (%(why)s)") % {"when": when, "why": why})

    @admin.display(description=_("success (24 h)"))
    def success_rate(self, obj: Endpoint) -> str:
        health = getattr(obj, "webhooks_health", None) or Health()
        rate = health.success_rate
        return "—" if rate is None else f"{rate * 100:.1f}% ({health.attempts})"

    @admin.display(description=_("median latency (24 h)"))
    def median_latency(self, obj: Endpoint) -> str:
        health = getattr(obj, "webhooks_health", None) or Health()
        return format_latency(health.median_latency)

    # change page

    @admin.display(description=_("signing secret"))
    def secret_display(self, obj: Endpoint) -> SafeString:
        if not obj.pk:
            return format_html("{}", "—")
        info = self.opts.app_label, self.opts.model_name
        reveal = reverse("admin:{}_{}_secret".format(*info), args=[obj.pk])
        rotate = reverse("admin:{}_{}_rotate_secret".format(*info), args=[obj.pk])
        grace = ""
        expires = obj.previous_secret_expires_at
        if obj.previous_secret and expires and expires > timezone.now():
            grace = str(_("The previous secret also signs until %(when)s.")
                        % {"when": timezone.localtime(expires).strftime("%Y-%m-%d %H:%M %Z")})
        return format_html(
            '<code>whsec_{}</code> <a class="button" href="{}">{}</a> '
            '<a class="button" href="{}">{}</a> <span class="help">{}</span>',
            MASK, reveal, _("Reveal"), rotate, _("Rotate"), grace)

    @admin.display(description=_("summary"))
    def health_summary(self, obj: Endpoint) -> SafeString:
        health = health_by_endpoint([obj.pk]).get(obj.pk, Health())
        deliveries = reverse("admin:webhooks_delivery_changelist") + f"?endpoint={obj.pk}"
        return format_html('{} · <a href="{}">{}</a>', summary_html(health), deliveries,
                           _("See its deliveries"))

    @admin.display(description=_("attempts per hour"))
    def health_chart(self, obj: Endpoint) -> SafeString:
        return chart_svg(hourly_buckets(obj.pk))

    def save_model(self, request: HttpRequest, obj: Endpoint, form: Any, change: bool) -> None:
        """A change saves only what the form changed: workers update the health and
        flow-control fields of the same row at any moment, and must not be overwritten."""
        if not change:
            super().save_model(request, obj, form, change)
            return
        columns = {f.name for f in Endpoint._meta.concrete_fields}
        fields = {name for name in form.changed_data if name in columns} | {"updated_at"}
        if "is_active" in form.changed_data:
            if obj.is_active:
                obj.disabled_reason, obj.disabled_at, obj.failing_since = "", None, None
                obj.consecutive_failures = 0
                obj.paused_until, obj.pause_reason = None, ""
                fields |= {"disabled_reason", "disabled_at", "failing_since",
                           "consecutive_failures", "paused_until", "pause_reason"}
            else:
                obj.disabled_reason = str(_("Disabled by staff."))
                obj.disabled_at = timezone.now()
                fields |= {"disabled_reason", "disabled_at"}
        obj.save(update_fields=sorted(fields))

    def save_related(self, request: HttpRequest, form: Any, formsets: Any,
                     change: bool) -> None:
        super().save_related(request, form, formsets, change)
        form.instance.set_subscriptions(form.cleaned_data["events"],
                                        form.cleaned_data.get("payload_fields") or {})

    # secret views (POST to act; change permission on the endpoint required)

    def _endpoint_or_deny(self, request: HttpRequest, object_id: str) -> Endpoint:
        obj = self.get_object(request, object_id)
        if obj is None:
            raise PermissionDenied
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        return obj

    def secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        endpoint = self._endpoint_or_deny(request, object_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts, "original": endpoint, "title": _("Signing secret"),
            "secret": None,
        }
        if request.method == "POST":
            context["secret"] = endpoint.secret
            self.log_change(request, endpoint, str(_("Revealed the signing secret.")))
        response = TemplateResponse(request, "admin/webhooks/endpoint/secret.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def rotate_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        endpoint = self._endpoint_or_deny(request, object_id)
        if request.method == "POST":
            endpoint.rotate_secret()
            self.log_change(request, endpoint, str(_("Rotated the signing secret.")))
            expires = endpoint.previous_secret_expires_at
            message: Any
            if expires:
                message = _("The secret was rotated. The previous one keeps signing until "
                            "%(when)s.") % {"when": timezone.localtime(expires)
                                            .strftime("%Y-%m-%d %H:%M %Z")}
            else:
                message = _("The secret was rotated.")
            self.message_user(request, message, messages.SUCCESS)
            return HttpResponseRedirect(
                reverse("admin:webhooks_endpoint_change", args=[endpoint.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts, "original": endpoint, "title": _("Rotate the signing secret"),
            "grace_hours": webhooks_settings.SECRET_ROTATION_GRACE / 3600,
        }
        return TemplateResponse(request, "admin/webhooks/endpoint/rotate_secret.html", context)

    # actions

    @admin.action(description=_("Send a test event"), permissions=["change"])
    def send_test(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        count = 0
        for endpoint in queryset.defer(None):
            send_test_event(endpoint)
            count += 1
        self.message_user(request, ngettext("Sent a test event to %d endpoint.",
                                            "Sent a test event to %d endpoints.", count) % count,
                          messages.SUCCESS)

    @admin.action(description=_("Enable"), permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        count = queryset.filter(is_active=False).update(
            is_active=True, disabled_reason="", disabled_at=None, failing_since=None,
            consecutive_failures=0, paused_until=None, pause_reason="")
        self.message_user(request, ngettext("Enabled %d endpoint.", "Enabled %d endpoints.",
                                            count) % count, messages.SUCCESS)

    @admin.action(description=_("Disable"), permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        count = queryset.filter(is_active=True).update(
            is_active=False, disabled_reason=str(_("Disabled by staff.")),
            disabled_at=timezone.now())
        self.message_user(request, ngettext("Disabled %d endpoint.", "Disabled %d endpoints.",
                                            count) % count, messages.SUCCESS)

    @admin.action(description=_("Retry failed deliveries"), permissions=["change"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        count = retry_deliveries(Delivery.objects.filter(
            endpoint__in=queryset.values("pk"), status=Delivery.Status.FAILED))
        self.message_user(request, ngettext("Queued %d failed delivery for retry.",
                                            "Queued %d failed deliveries for retry.",
                                            count) % count, messages.SUCCESS)

    @admin.action(description=_("Replay since a chosen time…"), permissions=["change"])
    def replay_since(self, request: HttpRequest,
                     queryset: QuerySet[Endpoint]) -> HttpResponse | None:
        if "apply" in request.POST:
            form = ReplayForm(request.POST)
            if form.is_valid():
                since = form.cleaned_data["since"]
                endpoints = list(queryset.defer(None))
                retried = added = 0
                for endpoint in endpoints:
                    one_retried, one_added = replay(endpoint, since)
                    retried += one_retried
                    added += one_added
                self.message_user(request, ngettext(
                    "Replayed %(endpoints)d endpoint: %(retried)d failed deliveries retried, "
                    "%(added)d missed events queued.",
                    "Replayed %(endpoints)d endpoints: %(retried)d failed deliveries retried, "
                    "%(added)d missed events queued.", len(endpoints),
                ) % {"endpoints": len(endpoints), "retried": retried, "added": added},
                    messages.SUCCESS)
                return None
        else:
            form = ReplayForm(initial={"since": timezone.localtime() - timedelta(hours=24)})
        context = {
            **self.admin_site.each_context(request),
            "title": _("Replay deliveries"),
            "opts": self.opts,
            "queryset": queryset,
            "form": form,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/webhooks/endpoint/replay.html", context)


# --- events ----------------------------------------------------------------------------------


class DeliveryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Delivery
    formset = CappedInlineFormSet
    readonly_fields = ("delivery_link", "endpoint_link", "status_label", "attempts",
                       "last_status_code", "last_error", "next_attempt_at")
    fields = readonly_fields
    extra = 0
    ordering = ["created_at"]
    verbose_name_plural = _("deliveries (first 100)")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("endpoint").defer(
            *(f"endpoint__{name}" for name in ENDPOINT_HEAVY))

    @admin.display(description=_("delivery"))
    def delivery_link(self, obj: Delivery) -> SafeString:
        return admin_link(obj, obj.public_id)

    @admin.display(description=_("endpoint"))
    def endpoint_link(self, obj: Delivery) -> SafeString:
        return admin_link(obj.endpoint, obj.endpoint.url)

    @admin.display(description=_("status"))
    def status_label(self, obj: Delivery) -> SafeString:
        return status_badge(obj.status, obj.get_status_display())


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["public_id", "type", "owner", "created_at", "dispatched_at", "failed"]
    list_filter = [EventTypeFilter, ("created_at", admin.DateFieldListFilter)]
    list_select_related = ["owner"]
    list_defer = ("payload",)
    search_fields = ["type"]
    search_help_text = _("An event id (evt_…), or an event type or its beginning.")
    readonly_fields = (
        "public_id", "id", "type", "owner", "created_at", "dispatched_at",
        "payload_pretty", "error",
    )
    fields = readonly_fields
    inlines = [DeliveryInline]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts would scan the whole table
    paginator = CappedCountPaginator

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LeanChangeList

    def get_search_results(self, request: HttpRequest, queryset: QuerySet,
                           search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        pk = parse_id(term, "evt")
        if pk is not None:
            return queryset.filter(pk=pk), False
        return queryset.filter(type__startswith=term.lower()), False

    @admin.display(description=_("id"))
    def public_id(self, obj: Event) -> str:
        return obj.public_id

    @admin.display(description=_("payload error"), boolean=True)
    def failed(self, obj: Event) -> bool:
        return bool(obj.error)

    @admin.display(description=_("payload"))
    def payload_pretty(self, obj: Event) -> SafeString:
        if not obj.payload:
            return format_html("{}", "—")
        return pretty_json(json.loads(obj.payload))


# --- deliveries and attempts -----------------------------------------------------------------



class AttemptDisplayMixin:
    """Columns an attempt shows alike in the delivery's inline and on its own page."""

    @admin.display(description=_("duration"), ordering="duration")
    def duration_ms(self, obj: DeliveryAttempt) -> str:
        return format_latency(obj.duration)

    @admin.display(description=_("request headers"))
    def request_headers_pretty(self, obj: DeliveryAttempt) -> SafeString:
        return pretty_json(obj.request_headers)

    @admin.display(description=_("response headers"))
    def response_headers_pretty(self, obj: DeliveryAttempt) -> SafeString:
        return pretty_json(obj.response_headers)

class AttemptInline(AttemptDisplayMixin, ReadOnlyAdminMixin, admin.TabularInline):
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

    @admin.display(description=_("attempt"))
    def attempt_link(self, obj: DeliveryAttempt) -> SafeString:
        return admin_link(obj, f"#{obj.number}")

    @admin.display(description=_("response body"))
    def response_preview(self, obj: DeliveryAttempt) -> SafeString:
        return capped_text(obj.response_body, INLINE_BODY_CHARS)


class DeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["delivery_id", "event_type", "endpoint_url", "status_label", "attempts",
                    "last_status_code", "last_error", "next_attempt_at", "created_at"]
    list_filter = ["status", EndpointFilter, DeliveryEventTypeFilter,
                   ("created_at", admin.DateFieldListFilter)]
    list_select_related = ["event", "endpoint"]
    list_defer = ("event__payload", *(f"endpoint__{name}" for name in ENDPOINT_HEAVY))
    search_fields = ["endpoint__url"]
    search_help_text = _("A delivery id (dlv_…), an event id (evt_…), an event type or a "
                         "part of an endpoint URL.")
    readonly_fields = (
        "delivery_id", "event_link", "endpoint_link", "status_label", "attempts",
        "next_attempt_at", "last_attempt_at", "last_status_code", "last_error",
        "created_at",
    )
    fields = readonly_fields
    inlines = [AttemptInline]
    actions = ["retry_now"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts would scan the whole table
    paginator = CappedCountPaginator

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LeanChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        return super().get_queryset(request).select_related("event", "endpoint").defer(
            *(f"endpoint__{name}" for name in ENDPOINT_HEAVY))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet,
                           search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("evt_"):
            event_id = parse_id(term, "evt")
            return (queryset.filter(event_id=event_id) if event_id else queryset.none()), False
        pk = parse_id(term, "dlv")
        if pk is not None:
            return queryset.filter(models.Q(pk=pk) | models.Q(event_id=pk)), False
        if term in dict(catalog_types()):
            return queryset.filter(event__type=term), False
        return queryset.filter(endpoint__url__icontains=term), False

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path("<path:object_id>/retry/", self.admin_site.admin_view(self.retry_view),
                 name="{}_{}_retry".format(*info)),
            *super().get_urls(),
        ]

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("webhooks.change_delivery")

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

    @admin.display(description=_("endpoint"))
    def endpoint_link(self, obj: Delivery) -> SafeString:
        return admin_link(obj.endpoint, obj.endpoint.url)

    @admin.display(description=_("status"), ordering="status")
    def status_label(self, obj: Delivery) -> SafeString:
        return status_badge(obj.status, obj.get_status_display())

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {"can_retry": self.has_retry_permission(request),
                 "retry_url": reverse("admin:webhooks_delivery_retry", args=[object_id]),
                 **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST" or not self.has_retry_permission(request):
            raise PermissionDenied
        pk = parse_id(object_id, "dlv")
        count = retry_deliveries(Delivery.objects.filter(pk=pk)) if pk else 0
        if count:
            self.message_user(request, _("The delivery was queued for retry."),
                              messages.SUCCESS)
        else:
            self.message_user(request, _("The delivery is being sent right now; it was "
                                         "left alone."), messages.WARNING)
        return HttpResponseRedirect(reverse("admin:webhooks_delivery_change", args=[object_id]))

    @admin.action(description=_("Retry now"), permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = retry_deliveries(Delivery.objects.filter(pk__in=queryset.values("pk")))
        self.message_user(request, ngettext("Queued %d delivery for retry.",
                                            "Queued %d deliveries for retry.", count) % count,
                          messages.SUCCESS)


admin.site.register(Delivery, DeliveryAdmin)


@admin.register(FailedDelivery)
class FailedDeliveryAdmin(DeliveryAdmin):
    """The deliveries that need attention: every retry failed (newest first)."""

    list_filter = [EndpointFilter, DeliveryEventTypeFilter,
                   ("created_at", admin.DateFieldListFilter)]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        return super().get_queryset(request).filter(status=Delivery.Status.FAILED)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("webhooks.change_delivery") or request.user.has_perm(
            "webhooks.change_faileddelivery")

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:webhooks_delivery_change", args=[object_id]))


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(AttemptDisplayMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "attempt", "delivery_link", "endpoint_url", "status_code",
                    "duration_ms", "error_class"]
    list_display_links = ["created_at"]
    list_filter = [AttemptOutcomeFilter, EndpointFilter,
                   ("created_at", admin.DateFieldListFilter)]
    list_select_related = ["endpoint"]
    list_defer = (*(f"endpoint__{name}" for name in ENDPOINT_HEAVY), "response_body",
                  "response_headers", "request_headers")
    search_fields = ["delivery__id"]
    search_help_text = _("A delivery id (dlv_…) or an attempt id.")
    readonly_fields = (
        "delivery_link", "endpoint_url", "number", "created_at", "url", "status_code",
        "duration_ms", "error_class", "error", "request_headers_pretty",
        "response_headers_pretty", "response_body_pretty",
    )
    fields = readonly_fields
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts would scan the whole table
    paginator = CappedCountPaginator

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LeanChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeliveryAttempt]:
        return super().get_queryset(request).select_related("endpoint").defer(
            *(f"endpoint__{name}" for name in ENDPOINT_HEAVY))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet,
                           search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        pk = parse_id(term, "dlv")
        if pk is None:
            return queryset.none(), False
        return queryset.filter(models.Q(delivery_id=pk) | models.Q(pk=pk)), False

    @admin.display(description=_("attempt"))
    def attempt(self, obj: DeliveryAttempt) -> str:
        return f"#{obj.number}"

    @admin.display(description=_("delivery"))
    def delivery_link(self, obj: DeliveryAttempt) -> SafeString:
        url = reverse("admin:webhooks_delivery_change", args=[obj.delivery_id])
        return format_html('<a href="{}">{}</a>', url, ids.to_public("dlv", obj.delivery_id))

    @admin.display(description=_("endpoint"))
    def endpoint_url(self, obj: DeliveryAttempt) -> str:
        return obj.endpoint.url if obj.endpoint_id and obj.endpoint else obj.url

    @admin.display(description=_("response body (as stored, capped)"))
    def response_body_pretty(self, obj: DeliveryAttempt) -> SafeString:
        return capped_text(obj.response_body, webhooks_settings.STORED_RESPONSE_BYTES)
