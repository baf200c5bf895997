"""List filters of the admin: none of them reads a whole table to build its choices."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from webhooks import ids
from webhooks.models import Endpoint

from .base import ENDPOINT_HEAVY, catalog_types


def shorten(text: str, limit: int = 48) -> str:
    """``text``, or its beginning and end around an ellipsis when it is over ``limit``."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    return f"{text[:head]}…{text[head - limit + 1:]}"


def endpoint_labels(endpoints: list[Endpoint]) -> list[tuple[str, str]]:
    """``(id, label)`` of each endpoint: its URL (:func:`shorten`), with its owner when it
    has one; endpoints whose labels are still alike get their description, or else the end
    of their id."""
    labels = [f"{shorten(e.url)} ({e.owner})" if e.owner_id else shorten(e.url)
              for e in endpoints]
    seen = Counter(labels)
    return [(e.public_id, label if seen[label] == 1
             else f"{label} · {e.description or '…' + str(e.pk)[-8:]}")
            for e, label in zip(endpoints, labels, strict=True)]


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
    """The event type of a delivery."""

    field_path = "event__type"


class EndpointFilter(admin.SimpleListFilter):
    """The first endpoints by URL, and the chosen one (a long list belongs in search), in one
    query. Each is labelled by its URL and its owner, so endpoints that share a URL are told
    apart (those still alike by their description, or the end of their id)."""

    title = _("endpoint")
    parameter_name = "endpoint"
    shown = 30

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        chosen = Endpoint.parse_id(self.value() or "")
        rows = Endpoint.objects.select_related("owner").defer(*ENDPOINT_HEAVY).order_by("url")
        if chosen is not None:
            rows = rows.filter(pk=chosen) | rows.filter(pk__in=rows.values("pk")[: self.shown])
        else:
            rows = rows[: self.shown]
        return endpoint_labels(list(rows))

    def value(self) -> str | None:
        """The chosen endpoint's public id, also when the URL gave its bare UUID (so that the
        choice shows as selected)."""
        value = super().value()
        pk = Endpoint.parse_id(value) if value else None
        return ids.to_public(ids.ENDPOINT, pk) if pk else value

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if not self.value():
            return queryset
        chosen = Endpoint.parse_id(self.value() or "")
        return queryset.filter(endpoint_id=chosen) if chosen else queryset.none()


class ConditionFilter(admin.SimpleListFilter):
    """A filter whose every choice is a label and a condition (``conditions``)."""

    #: ``{parameter value: (label, condition)}``, in the order the choices are shown.
    conditions: dict[str, tuple[Any, models.Q]] = {}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [(value, label) for value, (label, _condition) in self.conditions.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        chosen = self.conditions.get(self.value() or "")
        return queryset.filter(chosen[1]) if chosen else queryset


_SUCCEEDED = models.Q(status_code__gte=200, status_code__lt=300)


class AttemptOutcomeFilter(ConditionFilter):
    """Attempts that succeeded, failed with a response, or got none."""

    title = _("outcome")
    parameter_name = "outcome"
    conditions = {
        "ok": (_("Succeeded (2xx)"), _SUCCEEDED),
        "http": (_("Failed with a response"), models.Q(status_code__isnull=False) & ~_SUCCEEDED),
        "error": (_("Failed without a response"), models.Q(status_code__isnull=True)),
    }


class OwnerKindFilter(ConditionFilter):
    """Site-wide endpoints, or owners' endpoints (whatever the owner model is)."""

    title = _("owner")
    parameter_name = "owned"
    conditions = {
        "site": (_("Site-wide (no owner)"), models.Q(owner__isnull=True)),
        "owner": (_("An owner's"), models.Q(owner__isnull=False)),
    }


class HealthFilter(ConditionFilter):
    """Endpoints failing now, disabled, or healthy."""

    title = _("health")
    parameter_name = "health"
    conditions = {
        "failing": (_("Failing now"), models.Q(is_active=True, consecutive_failures__gt=0)),
        "disabled": (_("Disabled"), models.Q(is_active=False)),
        "healthy": (_("Healthy"), models.Q(is_active=True, consecutive_failures=0)),
    }
