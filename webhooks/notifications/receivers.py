"""From the endpoint signals to a worker that emails the owner.

The receivers only queue the ``webhooks.tasks.notify`` task (through
:func:`webhooks.dispatch.enqueue`): the email is rendered and sent by a worker, so a slow or
broken mail server never holds up a delivery, an admin request or a transaction. They run when
the change of state is committed (the signals are sent then).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from webhooks import dispatch
from webhooks.conf import webhooks_settings
from webhooks.models import Endpoint
from webhooks.notifications.notices import DISABLED, FAILING, RECOVERED
from webhooks.signals import endpoint_disabled, endpoint_failing, endpoint_recovered


def connect() -> None:
    """Connect the receivers (``AppConfig.ready``)."""
    endpoint_disabled.connect(on_disabled, sender=Endpoint,
                              dispatch_uid="webhooks.notifications.disabled")
    endpoint_failing.connect(on_failing, sender=Endpoint,
                             dispatch_uid="webhooks.notifications.failing")
    endpoint_recovered.connect(on_recovered, sender=Endpoint,
                               dispatch_uid="webhooks.notifications.recovered")


def on_disabled(sender: Any, endpoint: Endpoint, reason: str = "", **kwargs: Any) -> None:
    """``endpoint_disabled``: email the disabled notice."""
    queue_email(DISABLED, endpoint, reason=reason, since=endpoint.failing_since)


def on_failing(sender: Any, endpoint: Endpoint, since: datetime | None = None,
               reason: str = "", **kwargs: Any) -> None:
    """``endpoint_failing``: email the failing notice."""
    queue_email(FAILING, endpoint, reason=reason, since=since)


def on_recovered(sender: Any, endpoint: Endpoint, since: datetime | None = None,
                 previous: str = "", **kwargs: Any) -> None:
    """``endpoint_recovered``: email the recovered notice."""
    queue_email(RECOVERED, endpoint, since=since, previous=previous)


def queue_email(kind: str, endpoint: Endpoint, *, reason: str = "",
                since: datetime | None = None, previous: str = "") -> None:
    """Queue ``webhooks.tasks.notify`` for this notice, unless ``NOTIFY_BY_EMAIL`` is off.

    The task gets plain values (the notice as it happened), not the endpoint: by the time it
    runs, the endpoint may have changed again (its own notice follows).
    """
    if not webhooks_settings.NOTIFY_BY_EMAIL:
        return
    at = endpoint.notified_at or endpoint.disabled_at
    dispatch.enqueue("notify", {
        "endpoint_id": endpoint.public_id,
        "kind": kind,
        "at": at.isoformat() if at else None,
        "since": since.isoformat() if since else None,
        "reason": str(reason),
        "previous": previous,
    })
