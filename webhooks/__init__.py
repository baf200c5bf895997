"""django-webhooks: outgoing, signed, retried webhooks for Django sites.

The public API is small: :func:`send_event` publishes a custom event from code; model events
are declared in the ``WEBHOOKS["MODELS"]`` setting and need no code at all, except a model's
custom actions (``order.shipped``), which :func:`send_model_event` publishes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "send_event", "send_model_event"]

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


def send_model_event(instance: Model, action: str) -> Event:
    """Publish ``<model>.<action>`` about ``instance``, a saved instance of a model in
    ``WEBHOOKS["MODELS"]``: ``order.shipped`` for ``send_model_event(order, "shipped")``.

    ``action`` is one of the custom actions the model's entry declares (``"actions":
    ["shipped", "refunded"]``), or one of its built-in ``events`` (``"updated"`` after a
    ``QuerySet.update()``, which fires no signal). The event is the model's like its
    ``created``/``updated``/``deleted`` ones: ``data`` is the entry's serializer output (or the
    thin ``{"id", "url"}``), it goes to the owner the entry's owner path leads to (and to the
    site's endpoints), subscriptions' payload field allowlists apply, and its ``"sequence"`` is
    the next number of the object's counter, shared with its other events. Like
    :func:`send_event` it is written in the caller's transaction and sent once that commits.

    Raises :class:`webhooks.exceptions.UnknownEventType` for an action the entry does not
    declare, :class:`webhooks.exceptions.InvalidInstance` for an unsaved instance or a model
    that publishes no events, :class:`webhooks.exceptions.PayloadError` when the data cannot
    be serialized, and whatever the serializer raises (unlike the model's automatic events,
    which are kept with an ``error`` so that a save never fails).
    """
    from webhooks.outbox import emit_model_event

    return emit_model_event(instance, action)
