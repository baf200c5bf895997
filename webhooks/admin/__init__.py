"""Django admin: endpoints (with health), events, deliveries, failed deliveries and attempts.

Built for large tables: lists of events, deliveries and attempts never count a whole table
(:class:`~webhooks.admin.base.CappedCountPaginator`), read a constant number of queries per
page, and every default filter and ordering has an index behind it. Nothing here is built from
settings when the module is imported: the event catalog is read when a form or filter is
instantiated. What the actions and forms change, they change through :mod:`webhooks.services`.

The modules: :mod:`~webhooks.admin.base` (building blocks), :mod:`~webhooks.admin.filters`,
:mod:`~webhooks.admin.endpoints`, :mod:`~webhooks.admin.events`,
:mod:`~webhooks.admin.deliveries` and :mod:`~webhooks.admin.health` (the endpoint health
figures and chart). Every admin class is importable from here too, to subclass or re-register.
"""

from __future__ import annotations

from django.contrib import admin

from webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event, FailedDelivery

from .base import (
    ENDPOINT_HEAVY,
    INLINE_BODY_CHARS,
    INLINE_ROWS,
    CappedCountPaginator,
    CappedInlineFormSet,
    LargeTableAdmin,
    LeanChangeList,
    ReadOnlyAdminMixin,
)
from .deliveries import (
    AttemptInline,
    DeliveryAdmin,
    DeliveryAttemptAdmin,
    FailedDeliveryAdmin,
)
from .endpoints import EndpointAdmin, EndpointChangeList, EndpointForm, ReplayForm
from .events import DeliveryInline, EventAdmin

__all__ = [
    "ENDPOINT_HEAVY",
    "INLINE_BODY_CHARS",
    "INLINE_ROWS",
    "AttemptInline",
    "CappedCountPaginator",
    "CappedInlineFormSet",
    "DeliveryAdmin",
    "DeliveryAttemptAdmin",
    "DeliveryInline",
    "EndpointAdmin",
    "EndpointChangeList",
    "EndpointForm",
    "EventAdmin",
    "FailedDeliveryAdmin",
    "LargeTableAdmin",
    "LeanChangeList",
    "ReadOnlyAdminMixin",
    "ReplayForm",
]

admin.site.register(Endpoint, EndpointAdmin)
admin.site.register(Event, EventAdmin)
admin.site.register(Delivery, DeliveryAdmin)
admin.site.register(FailedDelivery, FailedDeliveryAdmin)
admin.site.register(DeliveryAttempt, DeliveryAttemptAdmin)
