"""django-webhooks: outgoing, signed, retried webhooks for Django sites.

The public API is small: :func:`send_event` publishes a custom event from code; model events
are declared in the ``WEBHOOKS["MODELS"]`` setting and need no code at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "send_event"]

if TYPE_CHECKING:  # pragma: no cover
    from django.db.models import Model

    from webhooks.models import Event


def send_event(event_type: str, data: Any, *, owner: Any = None,
               sequence_key: str | Model | None = None) -> Event:
    """Publish a custom event of ``event_type`` with ``data`` as its payload.

    The event is written in the caller's database transaction (a transactional outbox): if the
    transaction rolls back, nothing is sent; once it commits, the event is delivered at least
    once to every active endpoint subscribed to ``event_type`` that belongs to ``owner`` (a user
    instance or primary key) or to the site (endpoints without an owner). ``data`` must be a
    dict (a JSON object: wrap a list or a single value in one, ``{"items": [...]}``) of
    JSON-serializable values (dates, decimals and UUIDs are converted the way Django's JSON
    encoder does). Raises :class:`webhooks.exceptions.UnknownEventType` for a type that is not
    in the catalog and :class:`webhooks.exceptions.PayloadError` for ``data`` that is not a dict
    or cannot be serialized; its message and ``path`` name the value to blame
    (``data["items"][2]["price"]``).

    ``sequence_key`` gives the event a ``"sequence"`` number, so receivers can order it: the
    events sent with one key are numbered 1, 2, 3… in the order their transactions commit. A
    string (``"invoice:42"``) or a saved model instance, which shares the counter of that
    object's model events (``order.updated`` and a custom ``order.shipped`` of one order are
    numbered together). Without it the event has no ``"sequence"``.
    """
    from webhooks.outbox import emit_custom_event

    return emit_custom_event(event_type, data, owner=owner, sequence_key=sequence_key)
