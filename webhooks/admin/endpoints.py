"""The endpoints admin: the form (event types from the catalog, payload field allowlists),
health in the list and on the page, the signing secret, and the actions. Every change goes
through :mod:`webhooks.services`.

The owner (``WEBHOOKS_OWNER_MODEL``) follows its model's admin, looked up for each request:
an autocomplete when that admin is registered with ``search_fields``, a raw id otherwise, and
endpoints are searched by those fields of their owner (a user's username when there are
none)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import widgets
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from webhooks import services
from webhooks.conf import webhooks_settings
from webhooks.exceptions import InvalidReplayWindow, WebhooksConfigurationError
from webhooks.models import WILDCARD, Delivery, Endpoint
from webhooks.owners import get_owner_model, owner_is_user_model

from .base import (
    ENDPOINT_HEAVY,
    LeanChangeList,
    PublicIdAdminMixin,
    WebhooksMedia,
    change_url,
    clipped,
    dash,
    pretty_json,
    quiet,
    short_datetime,
    status_badge,
)
from .filters import HealthFilter, OwnerKindFilter
from .health import (
    Health,
    chart_svg,
    format_latency,
    health_by_endpoint,
    hourly_buckets,
    summary_html,
)

MASK = "••••••••••••••••"

#: The prefixes of a ``search_fields`` entry that choose its lookup (``^`` starts with, ``=``
#: exact, ``@`` full text); they stay in front when the field is reached through a relation.
SEARCH_PREFIXES = "^=@"


def related_search_field(relation: str, field: str) -> str:
    """``field`` (a ``search_fields`` entry of the related model) reached through
    ``relation``: ``("owner", "^name")`` gives ``"^owner__name"``."""
    name = field.lstrip(SEARCH_PREFIXES)
    return f"{field[:len(field) - len(name)]}{relation}__{name}"


def subscribable_choices() -> list[tuple[str, str]]:
    """``(name, label)`` of the types an endpoint can subscribe to; none when the
    ``WEBHOOKS`` setting is broken (the system checks report that)."""
    try:
        types = services.subscribable_types()
    except WebhooksConfigurationError:
        return []
    return [(name, f"{name} — {description}" if description else name)
            for name, description in types.items()]


class EndpointForm(forms.ModelForm):
    """The endpoint form; ``events`` offers the catalog's types, read when the form is built."""

    # Declared so the form needs no global setting for the scheme; the model's validators
    # (the same as the API's) still run when the form cleans the instance.
    url = forms.URLField(label=_("URL"), max_length=2048, assume_scheme="https",
                         widget=forms.URLInput(attrs={"class": "vURLField"}))
    events = forms.MultipleChoiceField(
        label=_("Event types"),
        # "radiolist": the admin's class for choices, labels as wide as their text.
        widget=forms.CheckboxSelectMultiple(attrs={"class": "radiolist"}),
        help_text=_("The events this endpoint receives. “All event types” includes types "
                    "added later. Test events are always delivered."),
    )

    payload_fields = forms.JSONField(
        label=_("Payload fields"), required=False,
        help_text=_('Send only some fields of the data, per event type, e.g. '
                    '{"order.created": ["id", "status"]}. Types left out get every field.'),
    )

    # Not required: a form posted without it (a script) keeps the endpoint's scheme.
    signature_scheme = forms.ChoiceField(
        label=_("Signature scheme"), choices=Endpoint.Scheme.choices, required=False,
        widget=forms.RadioSelect(attrs={"class": "radiolist"}),
        help_text=Endpoint._meta.get_field("signature_scheme").help_text,
    )

    # Not required either: a form posted without it keeps the endpoint's format.
    body_format = forms.ChoiceField(
        label=_("Body format"), choices=Endpoint.Format.choices, required=False,
        widget=forms.RadioSelect, help_text=Endpoint._meta.get_field("body_format").help_text,
    )

    class Meta:
        model = Endpoint
        fields = ["url", "description", "owner", "is_active", "events", "payload_fields",
                  "body_format", "headers", "rate_limit", "max_concurrency", "signature_scheme"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices: list[tuple[str, Any]] = [(WILDCARD, _("All event types (*)"))]
        choices += subscribable_choices()
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

    def clean_signature_scheme(self) -> str:
        return str(self.cleaned_data.get("signature_scheme") or self.instance.signature_scheme)

    def clean_body_format(self) -> str:
        return str(self.cleaned_data.get("body_format") or self.instance.body_format)

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
        errors = services.validate_payload_fields(restricted, cleaned.get("events") or [])
        for problems in errors.values():
            for message in problems:
                self.add_error("payload_fields", message)
        return cleaned


def pause_text(obj: Endpoint) -> str | None:
    """Until when and why deliveries to ``obj`` are held; ``None`` when they are not."""
    until = obj.paused_until
    if until is None or until <= timezone.now():
        return None
    why = {"rate_limited": _("the receiver answered 429"),
           "overloaded": _("the receiver answered 502 or 504"),
           "circuit_open": _("failing: circuit breaker open")}.get(obj.pause_reason,
                                                                  obj.pause_reason)
    when = timezone.localtime(until).strftime("%Y-%m-%d %H:%M:%S")
    return str(_("until %(when)s (%(why)s)") % {"when": when, "why": why})


class EndpointChangeList(LeanChangeList):
    """Attaches each listed endpoint's 24-hour health, read in one query for the page."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        health = health_by_endpoint(obj.pk for obj in self.result_list)
        for obj in self.result_list:
            obj.webhooks_health = health.get(obj.pk, Health())


class ReplayForm(forms.Form):
    """The intermediate page of the replay action: since when."""

    since = forms.DateTimeField(
        label=_("Replay since"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text=_("Failed deliveries created since then are sent again, and events the "
                    "endpoint missed since then are delivered (active endpoints only)."),
    )

    def clean_since(self) -> Any:
        try:
            return services.check_replay_window(self.cleaned_data["since"])
        except InvalidReplayWindow as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from None


class EndpointAdmin(WebhooksMedia, PublicIdAdminMixin, admin.ModelAdmin):
    """Endpoints, with their health, signing secret and actions.

    Its list fits 1280 px with the navigation sidebar open: the owner and description sit
    under the URL, and one *health* column says whether the endpoint is healthy, failing,
    paused or disabled (and why). Staff who may only view endpoints see read-only
    renderings of the subscriptions, payload fields, custom headers (values masked) and the
    signing key (no *Reveal* or *Rotate*)."""

    form = EndpointForm
    list_display = ["endpoint", "health", "subscribed_events", "last_24h"]
    list_display_links = ["endpoint"]
    list_filter = ["is_active", "disabled_by", HealthFilter, OwnerKindFilter]
    list_select_related = ["owner"]
    list_defer = ENDPOINT_HEAVY
    search_fields = ["url", "description"]
    search_help_text = _("A part of the URL or description, the owner, or an endpoint id "
                         "(ep_…).")
    readonly_fields = ["public_id", "secret_display", "secret_masked", "subscribed_events",
                       "payload_fields_display", "headers_masked", "health_summary",
                       "health_chart", "paused", "disabled_reason", "disabled_by",
                       "disabled_at", "failing_since", "consecutive_failures",
                       "last_success_at", "last_failure_at", "rest_hook", "created_at",
                       "updated_at"]
    actions = ["send_test", "enable", "disable", "retry_failed", "replay_since"]

    def may_reveal(self, request: HttpRequest, obj: Endpoint | None) -> bool:
        """Whether this staff user may see the endpoint's credentials (its signing secret and
        its custom header values): those who may change it."""
        return self.has_change_permission(request, obj)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """The form's fields; for staff who may only view the endpoint, read-only renderings
        of those a form field would show badly (or, for header values, not at all: custom
        header values are credentials, shown to those who may reveal the secret)."""
        view_only = obj is not None and not self.may_reveal(request, obj)
        events, payload, headers, secret = (
            ("subscribed_events", "payload_fields_display", "headers_masked", "secret_masked")
            if view_only else ("events", "payload_fields", "headers", "secret_display"))
        main = (None, {"fields": ["url", "description", "owner", "is_active", events,
                                  payload, "body_format", headers]})
        flow = (_("Flow control"), {"fields": ["rate_limit", "max_concurrency"]})
        if obj is None:
            return [main, flow, (_("Signing"), {"fields": ["signature_scheme"]})]
        return [
            main,
            flow,
            (_("Signing"), {"fields": ["signature_scheme", secret]}),
            (_("Health (last 24 hours)"), {"fields": ["health_summary", "health_chart"]}),
            (_("State"), {"fields": ["public_id", "paused", "disabled_reason", "disabled_by",
                                     "disabled_at",
                                     "failing_since", "consecutive_failures",
                                     "last_success_at", "last_failure_at", "rest_hook",
                                     "created_at", "updated_at"]}),
        ]

    # the owner: its model's admin decides how it is searched and picked, at request time

    def owner_admin(self) -> admin.ModelAdmin | None:
        """The ``ModelAdmin`` of the owner model on this admin site (``None``: unregistered)."""
        model = get_owner_model()
        if not self.admin_site.is_registered(model):
            return None
        return self.admin_site.get_model_admin(model)

    def owner_search_fields(self, request: HttpRequest) -> list[str]:
        """The owner model admin's ``search_fields``, reached through ``owner``; for users
        without a searchable admin, the username."""
        owner_admin = self.owner_admin()
        fields = list(owner_admin.get_search_fields(request)) if owner_admin else []
        if not fields and owner_is_user_model():
            fields = [get_user_model().USERNAME_FIELD]
        return [related_search_field("owner", field) for field in fields]

    def owner_autocompletes(self, request: HttpRequest) -> bool:
        """Whether the owner field is an autocomplete: the owner model's admin is registered
        with ``search_fields`` (what Django's autocomplete view requires) and lets this staff
        user view owners (the autocomplete view asks that too). Otherwise it is a raw id."""
        owner_admin = self.owner_admin()
        return bool(owner_admin and owner_admin.get_search_fields(request)
                    and owner_admin.has_view_permission(request))

    def get_autocomplete_fields(self, request: HttpRequest) -> list[str]:
        return [*super().get_autocomplete_fields(request),
                *(["owner"] if self.owner_autocompletes(request) else [])]

    def get_raw_id_fields(self, request: HttpRequest) -> list[str]:
        """The raw id fields of this request (Django only has the ``raw_id_fields``
        attribute): the owner unless it autocompletes."""
        return [*self.raw_id_fields,
                *([] if self.owner_autocompletes(request) else ["owner"])]

    def formfield_for_dbfield(self, db_field: models.Field, request: HttpRequest,
                              **kwargs: Any) -> forms.Field | None:
        if isinstance(db_field, models.ForeignKey) and (
                db_field.name in self.get_raw_id_fields(request)):
            # What Django does for raw_id_fields: the raw id widget, not wrapped in the
            # add/change links of a select.
            kwargs.setdefault("widget", widgets.ForeignKeyRawIdWidget(
                db_field.remote_field, self.admin_site, using=kwargs.get("using")))
            return self.formfield_for_foreignkey(db_field, request, **kwargs)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return [*self.search_fields, *self.owner_search_fields(request)]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet,
                           search_term: str) -> tuple[QuerySet, bool]:
        """An endpoint id (``ep_…`` or the bare UUID) finds that endpoint; anything else is
        searched in the search fields."""
        pk = Endpoint.parse_id(search_term)
        if pk is not None:
            return queryset.filter(pk=pk), False
        return super().get_search_results(request, queryset, search_term)

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

    @admin.display(description=_("endpoint"), ordering="url")
    def endpoint(self, obj: Endpoint) -> SafeString:
        """The URL (cut to the column, whole in its tooltip), then its owner and description."""
        below = " · ".join(str(part) for part in (obj.owner if obj.owner_id else "",
                                                   obj.description) if part)
        return format_html("{}{}", clipped(obj.url), quiet(below))

    @admin.display(description=_("health"), ordering="consecutive_failures")
    def health(self, obj: Endpoint) -> SafeString:
        """Disabled (and why), paused (until when), failing (how many times in a row, and
        the last success), or healthy."""
        if not obj.is_active:
            return format_html("{}{}", status_badge("failed", _("Disabled")),
                               quiet(clipped(obj.disabled_reason, lines=2)))
        paused = pause_text(obj)
        failures = obj.consecutive_failures
        if failures:
            streak = ngettext("%(count)d failure in a row", "%(count)d failures in a row",
                              failures) % {"count": failures}
            success = format_html("{} {}", _("last success"), short_datetime(
                obj.last_success_at)) if obj.last_success_at else ""
            return format_html("{}{}{}", status_badge("warning", _("Failing")),
                               quiet(paused or streak), quiet(success))
        if paused:
            return format_html("{}{}", status_badge("warning", _("Paused")), quiet(paused))
        return status_badge("succeeded", _("Healthy"))

    @admin.display(description=_("event types"))
    def subscribed_events(self, obj: Endpoint) -> SafeString:
        """``all event types`` for ``*``, else the subscribed types."""
        names = obj.event_types
        if WILDCARD in names:
            return format_html("{}", _("all event types"))
        return clipped(", ".join(sorted(names)), lines=2)

    @admin.display(description=_("payload fields"))
    def payload_fields_display(self, obj: Endpoint) -> SafeString:
        restricted = obj.payload_fields
        return pretty_json(restricted) if restricted else format_html(
            "{}", _("Every field of every event type."))

    @admin.display(description=_("custom headers"))
    def headers_masked(self, obj: Endpoint) -> SafeString:
        """The custom headers' names; their values (often tokens) masked."""
        names: list[str] = sorted(obj.headers) if isinstance(obj.headers, dict) else []
        if not names:
            return dash()
        return format_html('<pre class="webhooks-http">{}</pre>', "\n".join(
            f"{name}: {MASK}" for name in names))

    @admin.display(description=_("paused"))
    def paused(self, obj: Endpoint) -> str:
        """Why and until when deliveries to the endpoint are held (a 429, a 502 or 504, an
        open circuit); ``—`` when they are not."""
        return pause_text(obj) or "—"

    @admin.display(description=_("last 24 hours"))
    def last_24h(self, obj: Endpoint) -> SafeString:
        """The share of attempts that succeeded (of how many), then their median latency."""
        health = getattr(obj, "webhooks_health", None) or Health()
        rate = health.success_rate
        if rate is None:
            return format_html("{}", _("no attempts"))
        title = ngettext("%(ok)d of %(count)d attempt succeeded in the last 24 hours",
                         "%(ok)d of %(count)d attempts succeeded in the last 24 hours",
                         health.attempts) % {"ok": health.succeeded, "count": health.attempts}
        latency = _("median %(latency)s") % {"latency": format_latency(health.median_latency)}
        return format_html('<span class="webhooks-nowrap" title="{}">{}% ({})</span>{}', title,
                           f"{rate * 100:.1f}", health.attempts, quiet(latency))

    # change page

    @admin.display(description=_("signing secret"))
    def secret_display(self, obj: Endpoint) -> SafeString:
        """A ``v1`` endpoint's secret, masked, with *Reveal*; a ``v1a`` endpoint's public key
        in clear (it is not secret; its private key is never shown). *Rotate* for both."""
        return self.signing_key(obj, buttons=True)

    @admin.display(description=_("signing secret"))
    def secret_masked(self, obj: Endpoint) -> SafeString:
        """The signing key as staff who may only view the endpoint see it: no buttons."""
        return self.signing_key(obj, buttons=False)

    def signing_key(self, obj: Endpoint, buttons: bool) -> SafeString:
        """The masked secret or the public key, the previous key's grace period, and (with
        ``buttons``) *Reveal* and *Rotate*."""
        if not obj.pk:
            return dash()
        grace = ""
        expires = obj.previous_secret_expires_at
        if obj.previous_secret and expires and expires > timezone.now():
            grace = str(_("The previous key also signs until %(when)s.")
                        % {"when": timezone.localtime(expires).strftime("%Y-%m-%d %H:%M %Z")})
        links = []
        public_key = obj.public_key
        if public_key is None and buttons:
            links.append((change_url(obj, "secret"), _("Reveal")))
        if buttons:
            links.append((change_url(obj, "rotate_secret"), _("Rotate")))
        actions = format_html_join(" ", '<a class="button" href="{}">{}</a>', links)
        if public_key is not None:
            return format_html(
                '{} <code id="webhooks-public-key">{}</code> {} <span class="help">{} {}</span>',
                _("Public key:"), public_key, actions,
                _("Receivers verify the v1a signatures with it; the private key is never "
                  "shown."), grace)
        return format_html('<code>whsec_{}</code> {} <span class="help">{}</span>', MASK,
                           actions, grace)

    @admin.display(description=_("summary"))
    def health_summary(self, obj: Endpoint) -> SafeString:
        health = health_by_endpoint([obj.pk]).get(obj.pk, Health())
        deliveries = (reverse("admin:webhooks_delivery_changelist")
                      + f"?endpoint={obj.public_id}")
        return format_html('{} · <a href="{}">{}</a>', summary_html(health), deliveries,
                           _("See its deliveries"))

    @admin.display(description=_("attempts per hour"))
    def health_chart(self, obj: Endpoint) -> SafeString:
        return chart_svg(hourly_buckets(obj.pk))

    def changeform_view(self, request: HttpRequest, object_id: str | None = None,
                        form_url: str = "", extra_context: dict[str, Any] | None = None,
                        ) -> HttpResponse:
        """The add and change pages, never stored: the form holds custom header values."""
        response = super().changeform_view(request, object_id, form_url, extra_context)
        response["Cache-Control"] = "no-store"
        return response

    def save_model(self, request: HttpRequest, obj: Endpoint, form: Any, change: bool) -> None:
        """A change saves only what the form changed (see :func:`services.update_endpoint`);
        the subscriptions are saved with the endpoint."""
        events = form.cleaned_data["events"]
        payload = form.cleaned_data.get("payload_fields") or {}
        if not change:
            services.insert_endpoint(obj, events, payload)
            return
        columns = {f.name for f in Endpoint._meta.concrete_fields}
        services.update_endpoint(
            obj, [name for name in form.changed_data if name in columns],
            disabled_reason=services.DISABLED_BY_STAFF, events=events, payload=payload)

    # secret views (POST to act; change permission on the endpoint required)

    def _endpoint_or_deny(self, request: HttpRequest, object_id: str) -> Endpoint:
        obj = self.get_object(request, object_id)
        if obj is None:
            raise PermissionDenied
        if not self.may_reveal(request, obj):
            raise PermissionDenied
        return obj

    def secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        endpoint = self._endpoint_or_deny(request, object_id)
        if endpoint.public_key is not None:
            # v1a: the private key never leaves; the public key is on the endpoint's page.
            self.message_user(request, _("This endpoint signs with ed25519 (v1a): its private "
                                         "key is never shown. Receivers verify with the "
                                         "public key shown here."), messages.INFO)
            return HttpResponseRedirect(change_url(endpoint))
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
            services.rotate_secret(endpoint)
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
            return HttpResponseRedirect(change_url(endpoint))
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
            services.send_test_event(endpoint)
            count += 1
        self.message_user(request, ngettext("Sent a test event to %d endpoint.",
                                            "Sent a test event to %d endpoints.", count) % count,
                          messages.SUCCESS)

    @admin.action(description=_("Enable"), permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        count = services.enable_endpoints(queryset)
        self.message_user(request, ngettext("Enabled %d endpoint.", "Enabled %d endpoints.",
                                            count) % count, messages.SUCCESS)

    @admin.action(description=_("Disable"), permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        count = services.disable_endpoints(queryset, services.DISABLED_BY_STAFF)
        self.message_user(request, ngettext("Disabled %d endpoint.", "Disabled %d endpoints.",
                                            count) % count, messages.SUCCESS)

    @admin.action(description=_("Retry failed deliveries"), permissions=["change"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        count = services.retry_deliveries(Delivery.objects.filter(
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
                    one_retried, one_added = services.replay(endpoint, since)
                    retried += one_retried
                    added += one_added
                self.message_user(request, " ".join([
                    ngettext("Replayed %(count)d endpoint:", "Replayed %(count)d endpoints:",
                             len(endpoints)) % {"count": len(endpoints)},
                    ngettext("%(count)d failed delivery retried,",
                             "%(count)d failed deliveries retried,", retried)
                    % {"count": retried},
                    ngettext("%(count)d missed event queued.", "%(count)d missed events queued.",
                             added) % {"count": added},
                ]), messages.SUCCESS)
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
