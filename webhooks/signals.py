"""Signals the site can connect to. Receivers run in the worker, after the state is saved.

``delivery_succeeded(sender=Delivery, delivery, attempt)``
    A delivery got a 2xx answer. ``attempt`` is the :class:`~webhooks.models.DeliveryAttempt`.

``delivery_failed(sender=Delivery, delivery, attempt)``
    A delivery failed for good: its retry schedule is exhausted, the receiver answered
    ``410 Gone``, its endpoint is disabled, or its payload could not be built. ``attempt`` is
    the last attempt, or ``None`` when no request was made. It can still be retried by hand.

``delivery_attempted(sender=Delivery, delivery, attempt, succeeded, final)``
    After every HTTP attempt, whatever its outcome (``final``: no retry follows). The hook
    for metrics; ``webhooks.metrics`` counts with it.

``endpoint_disabled(sender=Endpoint, endpoint, reason)``
    An endpoint was disabled automatically (it kept failing, or answered ``410 Gone``).
    Tell its owner: this is the hook for an e-mail.

Receivers that raise are logged and do not disturb delivery (``send_robust``).
"""

from __future__ import annotations

from django.dispatch import Signal

delivery_attempted = Signal()
delivery_succeeded = Signal()
delivery_failed = Signal()
endpoint_disabled = Signal()
