"""Signals the site can connect to. Receivers run after the state is committed.

``delivery_succeeded(sender=Delivery, delivery, attempt)``
    A delivery got a 2xx answer. ``attempt`` is the :class:`~webhooks.models.DeliveryAttempt`.

``delivery_failed(sender=Delivery, delivery, attempt)``
    A delivery failed for good: its retry schedule is exhausted, the receiver answered
    ``410 Gone``, its endpoint is disabled, or its payload could not be built. ``attempt`` is
    the last attempt, or ``None`` when no request was made. It can still be retried by hand.

``delivery_attempted(sender=Delivery, delivery, attempt, succeeded, final)``
    After every HTTP attempt, whatever its outcome (``final``: no retry follows). The hook
    for metrics; ``webhooks.metrics`` counts with it.

The three endpoint signals below are the owner's notices (``docs/notifications.md``): each is
sent once per change of state, when the change is committed, and ``webhooks.notifications``
emails the owner from them (``NOTIFY_BY_EMAIL``). Connect to them for another channel (a chat
message, an in-app banner). ``endpoint`` is the :class:`~webhooks.models.Endpoint` as saved.

``endpoint_disabled(sender=Endpoint, endpoint, reason)``
    An endpoint was switched off because of trouble: it answered ``410 Gone``, it kept
    failing (``DISABLE_AFTER``), or staff disabled it (the admin, a command:
    :func:`webhooks.services.disable_endpoints`). ``reason`` is its ``disabled_reason``. Not
    sent when its owner switches it off (the REST API).

``endpoint_failing(sender=Endpoint, endpoint, since, reason)``
    Every delivery to an active endpoint has failed for ``NOTIFY_FAILING_AFTER`` seconds
    or more. ``since``: when its run of failures began (``failing_since``, a datetime);
    ``reason``: what its last attempt got (text).

``endpoint_recovered(sender=Endpoint, endpoint, since, previous)``
    An endpoint its owner was told about (failing, or disabled) delivered again: the last
    attempt of a batch to it succeeded. ``previous``: the notice it follows (``"failing"`` or
    ``"disabled"``); ``since``: when that trouble began (a datetime).

Receivers that raise are logged and do not disturb delivery (``send_robust``).
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger("webhooks")

delivery_attempted = Signal()
delivery_succeeded = Signal()
delivery_failed = Signal()
endpoint_disabled = Signal()
endpoint_failing = Signal()
endpoint_recovered = Signal()


def send(signal: Signal, sender: Any, **arguments: Any) -> None:
    """Send ``signal`` with ``send_robust``: a receiver that raises is logged on the
    ``webhooks`` logger, and the others still run."""
    for receiver, response in signal.send_robust(sender=sender, **arguments):
        if isinstance(response, Exception):
            logger.error("Signal receiver %r raised", receiver, exc_info=response)
