"""Building blocks of the admin: capped counts, lean change lists, the large-table
configuration, read-only admins and small display helpers."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connections, models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from webhooks.events.catalog import TEST_EVENT_TYPE, get_catalog
from webhooks.exceptions import WebhooksConfigurationError
from webhooks.models import PublicIdModel

#: Columns of an endpoint never needed by a list of events, deliveries or attempts (and
#: expensive: they are decrypted on load).
ENDPOINT_HEAVY = ("signing_secret", "previous_secret", "headers")
#: The same columns, reached from a delivery or an attempt.
RELATED_ENDPOINT_HEAVY = tuple(f"endpoint__{name}" for name in ENDPOINT_HEAVY)
#: Characters of a response body shown in a list of attempts (the attempt page shows it all).
INLINE_BODY_CHARS = 2000
#: Rows an inline shows at most (the rest is one click away in a filtered list).
INLINE_ROWS = 100


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
    """A changelist that leaves out columns its model admin names in ``list_defer``, and
    links each row by its public id."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
        queryset = super().get_queryset(request, exclude_parameters)
        defer = getattr(self.model_admin, "list_defer", ())
        return queryset.defer(*defer) if defer else queryset

    def url_for_result(self, result: models.Model) -> str:
        return change_url(result)


class PublicIdAdminMixin:
    """The pages of a :class:`~webhooks.models.PublicIdModel` are reached by its public id
    (``dlv_…``; what the admin links to) or by its bare UUID."""

    model: type[PublicIdModel]

    @admin.display(description=_("id"))
    def public_id(self, obj: PublicIdModel) -> str:
        """The object's id: what the API answers, the logs show and the commands take."""
        return obj.public_id

    def get_object(self, request: HttpRequest, object_id: str,
                   from_field: str | None = None) -> Any:
        if from_field in (None, "id"):
            pk = self.model.parse_id(object_id)
            if pk is None:
                return None
            object_id = str(pk)
        return super().get_object(request, object_id, from_field)  # type: ignore[misc]


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


class WebhooksMedia:
    """The app's admin stylesheet (``webhooks/admin.css``) on every page of its admins."""

    class Media:
        css = {"all": ["webhooks/admin.css"]}


class LargeTableAdmin(WebhooksMedia, PublicIdAdminMixin, ReadOnlyAdminMixin,
                      admin.ModelAdmin):
    """A read-only admin for a table that grows without bound (events, deliveries, attempts).

    Its list never counts the whole table (:class:`CappedCountPaginator`, no full result
    count, no facet counts), leaves the columns named in ``list_defer`` in the database, and
    searches with :meth:`search` only: by ids and indexed prefixes, never a scan.
    """

    #: Columns the list leaves out (see :class:`LeanChangeList`).
    list_defer: tuple[str, ...] = ()
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts would scan the whole table
    paginator = CappedCountPaginator

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LeanChangeList

    def get_search_results(self, request: HttpRequest, queryset: QuerySet,
                           search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        return (self.search(queryset, term) if term else queryset), False

    def search(self, queryset: QuerySet, term: str) -> QuerySet:
        """The rows of ``queryset`` that ``term`` (stripped, never empty) finds."""
        raise NotImplementedError


def with_lean_endpoint(queryset: QuerySet, *related: str) -> QuerySet:
    """``queryset`` (of deliveries or attempts) joined to its endpoint, and to ``related``,
    without the endpoint's encrypted columns."""
    return queryset.select_related(*related, "endpoint").defer(*RELATED_ENDPOINT_HEAVY)


def catalog_types() -> list[tuple[str, str]]:
    """``(name, description)`` of every catalog type, or just the test type when the
    ``WEBHOOKS`` setting is broken (the system checks report that)."""
    try:
        return [(t.name, t.description) for t in get_catalog().types.values()]
    except WebhooksConfigurationError:
        return [(TEST_EVENT_TYPE, "")]


def change_url(obj: models.Model, view: str = "change") -> str:
    """The URL of ``obj``'s admin page (or of another ``view`` of it, such as ``secret``): by
    its public id when it has one."""
    opts = obj._meta
    key = obj.public_id if isinstance(obj, PublicIdModel) else quote(obj.pk)
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[key])


def admin_link(obj: models.Model, text: Any) -> SafeString:
    """A link to ``obj``'s admin page."""
    return format_html('<a href="{}">{}</a>', change_url(obj), text)


def pretty_json(value: Any) -> SafeString:
    """``value`` as indented JSON in a ``<pre>``."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return format_html('<pre class="webhooks-pre">{}</pre>', text)


def status_badge(status: str, label: Any) -> SafeString:
    """A status in its colour: ``succeeded`` (green), ``failed`` (red), ``warning`` (amber),
    anything else (grey)."""
    return format_html('<strong class="webhooks-status webhooks-status-{}">{}</strong>',
                       status if status in _BADGES else "other", label)


_BADGES = ("succeeded", "failed", "warning")


def dash() -> SafeString:
    """What a column shows for nothing."""
    return format_html("{}", "—")


def short_datetime(value: datetime | None, label: str = "") -> SafeString:
    """``value`` in local time, short enough for a list column: ``Dec 2, 07:53`` this year,
    ``2025-12-02 07:53`` before; in its tooltip, ``label`` and the full date and time (with
    seconds and the time zone)."""
    if value is None:
        return dash()
    local = timezone.localtime(value)
    short = "M j, H:i" if local.year == timezone.localtime().year else "Y-m-d H:i"
    full = dateformat.format(local, "Y-m-d H:i:s T")
    return format_html('<time class="webhooks-nowrap" datetime="{}" title="{}">{}</time>',
                       value.isoformat(), f"{label} · {full}" if label else full,
                       dateformat.format(local, short))


def clipped(text: str, lines: int = 1, shown: str | None = None) -> SafeString:
    """``text`` (or ``shown`` for it) cut to its column by the stylesheet (an ellipsis after
    ``lines`` lines, 1 or 2), whole in its title (a tooltip) and in the page."""
    if not text:
        return dash()
    return format_html('<span class="webhooks-clip-{}" title="{}">{}</span>', lines, text,
                       text if shown is None else shown)


def clipped_url(url: str) -> SafeString:
    """``url`` for a narrow column: :func:`clipped`, without ``https://`` (``http://`` stays,
    to stand out)."""
    return clipped(url, shown=url.removeprefix("https://"))


def quiet(text: Any) -> SafeString:
    """A second, quieter line under a column's value (nothing for no text)."""
    return format_html('<span class="webhooks-quiet">{}</span>', text) if text else SafeString("")
