"""What the admin, the REST API and the management commands do to endpoints and deliveries.

Each operation, and each rule behind it, is written here once: creating an endpoint within the
owner's limit, subscriptions and their payload field allowlists, switching an endpoint on or
off, rotating its secret, test events, retries and replays (with the replay window). The
admin, the API and the commands only turn their input into these calls, and the results and
errors (:class:`~webhooks.exceptions.ServiceError`, Django's ``ValidationError`` from model
validation) into their own answers. Nothing here knows about requests, forms or serializers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from webhooks import ids
from webhooks.conf import webhooks_settings
from webhooks.dispatch import enqueue
from webhooks.events.catalog import TEST_EVENT_TYPE, get_catalog
from webhooks.events.payloads import payload_fields, payload_parts, subscriber_payload
from webhooks.exceptions import DisabledByStaff, EndpointDisabled, InvalidReplayWindow
from webhooks.models import (
    WILDCARD,
    Delivery,
    DisabledBy,
    Endpoint,
    Event,
    Subscription,
    owner_may_enable,
)
from webhooks.notifications import notices
from webhooks.outbox import EVENT_COLUMNS, insert_event
from webhooks.owners import get_owner_model

#: ``disabled_reason`` of an endpoint switched off in the admin. Its owner cannot switch it
#: on again (``disabled_by`` staff), like any reason but :data:`DISABLED_BY_OWNER`.
DISABLED_BY_STAFF = gettext_lazy("Disabled by staff.")
#: ``disabled_reason`` of an endpoint switched off by its owner (the API).
DISABLED_BY_OWNER = gettext_lazy("Disabled by its owner.")

PayloadFields = Mapping[str, Iterable[str]]
#: Why an endpoint was switched off: text, or lazily translated text.
Reason = str | Promise


# --- endpoints -------------------------------------------------------------------------------


def subscribable_types() -> dict[str, str]:
    """The event types an endpoint can subscribe to, name to description, in catalog order:
    every type of the catalog but the test event (sent on request only, to one endpoint).

    Raises :class:`~webhooks.exceptions.WebhooksConfigurationError` when ``WEBHOOKS`` is
    broken.
    """
    return {t.name: t.description for t in get_catalog().types.values()
            if t.name != TEST_EVENT_TYPE}


def validate_payload_fields(payload: PayloadFields, events: Collection[str],
                            ) -> dict[str, list[str]]:
    """What is wrong with ``payload`` (field allowlists per event type) for an endpoint
    subscribed to ``events``: ``{event type: [messages]}``, empty when nothing is.

    Every restricted type must be one of ``events``; when the catalog knows the fields of a
    type (its serializer declares them), only those may be named.
    """
    errors: dict[str, list[str]] = {}
    for event_type, names in payload.items():
        if event_type not in events:
            errors[event_type] = [_("%(type)s is not one of this endpoint's events.")
                                  % {"type": event_type}]
            continue
        known = payload_fields(event_type)
        unknown = sorted(set(names) - set(known)) if known is not None else []
        if unknown:
            errors[event_type] = [_("%(type)s has no field %(fields)s.")
                                  % {"type": event_type, "fields": ", ".join(unknown)}]
    return errors


def create_endpoint(owner: Any, events: Iterable[str], payload: PayloadFields | None = None,
                    **fields: Any) -> Endpoint:
    """Create an endpoint of ``owner`` (``None``: site-wide) with ``fields``, subscribed to
    ``events`` (see :func:`insert_endpoint`)."""
    return insert_endpoint(Endpoint(owner=owner, **fields), events, payload)


def insert_endpoint(endpoint: Endpoint, events: Iterable[str],
                    payload: PayloadFields | None = None) -> Endpoint:
    """Save a new ``endpoint`` subscribed to ``events``, with ``payload`` field allowlists.

    ``MAX_ENDPOINTS_PER_OWNER`` is checked under a lock on the owner's row, so that concurrent
    requests cannot both take the last place: Django's ``ValidationError`` when it is reached.
    """
    using = router.db_for_write(Endpoint)
    with transaction.atomic(using=using):
        if endpoint.owner_id is not None:
            owners = get_owner_model()._default_manager.using(using)
            list(owners.select_for_update().filter(pk=endpoint.owner_id).values_list("pk"))
        endpoint.clean()
        endpoint.save(using=using, force_insert=True)
        set_subscriptions(endpoint, events, payload)
    return endpoint


def update_endpoint(endpoint: Endpoint, fields: Iterable[str], *, disabled_reason: Reason,
                    events: Iterable[str] | None = None,
                    payload: PayloadFields | None = None) -> Endpoint:
    """Save the named ``fields`` of ``endpoint`` (already set on it), and only them.

    Workers update the health and flow-control columns of the same row at any moment; a full
    save would write stale values over them. When ``is_active`` is among ``fields``, the
    switch's rule applies (see :func:`endpoint_state`; ``disabled_reason`` says who acts:
    :data:`DISABLED_BY_OWNER` the owner, any other reason staff; any reason but the owner's
    notifies the owner, see :func:`disable_endpoints`). The owner cannot switch on an
    endpoint that staff switched off: :class:`~webhooks.exceptions.DisabledByStaff`, and
    nothing is saved. With ``events`` or ``payload``, the subscriptions are set in the same
    transaction (``payload`` alone keeps the subscribed types).
    """
    changed = {"updated_at", *fields}
    using = router.db_for_write(Endpoint)
    with transaction.atomic(using=using):
        if "is_active" in changed and endpoint.is_active:
            require_may_enable(endpoint, disabled_reason, using)
        state: dict[str, Any] = {}
        if "is_active" in changed:
            state = endpoint_state(endpoint.is_active, disabled_reason)
            for name, value in state.items():
                setattr(endpoint, name, value)
                changed.add(name)
        if state and not endpoint.is_active and is_trouble(disabled_reason):
            told = notices.disable(using, [endpoint.pk], state)
            for notice in told:
                endpoint.notified_state = notice.endpoint.notified_state
                endpoint.notified_at = notice.endpoint.notified_at
            notices.send_on_commit(using, told)
        endpoint.save(update_fields=sorted(changed))
        if events is not None or payload is not None:
            set_subscriptions(endpoint, endpoint.event_types if events is None else events,
                              payload)
    return endpoint


def set_subscriptions(endpoint: Endpoint, events: Iterable[str],
                      payload: PayloadFields | None = None) -> None:
    """Make ``endpoint`` subscribe to exactly ``events``; with ``payload``, set each
    subscription's field allowlist too (types left out get every field). See
    :meth:`webhooks.models.Endpoint.set_subscriptions`."""
    endpoint.set_subscriptions(events, payload)


def disabled_by(reason: Reason) -> DisabledBy:
    """Who switches an endpoint off (or on) for ``reason``: its owner for
    :data:`DISABLED_BY_OWNER`, else staff (the admin, a command, the site's own code: a
    decision the owner cannot undo). The workers' automatic disables are
    :attr:`~webhooks.models.DisabledBy.SYSTEM` (see :mod:`webhooks.delivery.recording`)."""
    if reason is DISABLED_BY_OWNER or str(reason) == str(DISABLED_BY_OWNER):
        return DisabledBy.OWNER
    return DisabledBy.STAFF


def require_may_enable(endpoint: Endpoint, reason: Reason, using: str | None = None) -> None:
    """Refuse (:class:`~webhooks.exceptions.DisabledByStaff`) to let the owner (``reason`` is
    :data:`DISABLED_BY_OWNER`) switch on ``endpoint`` when staff switched it off, as the
    database says now (its row is locked until the transaction ends). Staff may always."""
    if disabled_by(reason) != DisabledBy.OWNER:
        return
    current = (Endpoint.objects.using(using or router.db_for_write(Endpoint))
               .select_for_update().filter(pk=endpoint.pk)
               .values_list("disabled_by", flat=True).first())
    if current is not None and not owner_may_enable(current):
        raise DisabledByStaff(_("This endpoint was disabled by staff: only staff can enable "
                                "it again."))


def endpoint_state(active: bool, disabled_reason: Reason = "") -> dict[str, Any]:
    """The columns switching an endpoint on or off sets.

    Switching on is a fresh start: why, by whom and since when it was off, its run of failures
    and any pause (a 429, an open circuit) are forgotten. Switching off records why, by whom
    (:func:`disabled_by`) and when.
    """
    if active:
        return {"is_active": True, "disabled_reason": "", "disabled_by": DisabledBy.NONE,
                "disabled_at": None, "failing_since": None, "consecutive_failures": 0,
                "paused_until": None, "pause_reason": ""}
    return {"is_active": False, "disabled_reason": str(disabled_reason),
            "disabled_by": disabled_by(disabled_reason), "disabled_at": timezone.now()}


def enable_endpoints(endpoints: QuerySet[Endpoint]) -> int:
    """Switch on the disabled ones of ``endpoints``; returns how many."""
    return int(endpoints.filter(is_active=False).update(**endpoint_state(True)))


def is_trouble(reason: Reason) -> bool:
    """Whether switching an endpoint off for ``reason`` is news for its owner: any reason
    (staff's, a command's) but :data:`DISABLED_BY_OWNER`, the owner's own decision."""
    return disabled_by(reason) != DisabledBy.OWNER


def disable_endpoints(endpoints: QuerySet[Endpoint], reason: Reason) -> int:
    """Switch off the active ones of ``endpoints``, saying why; returns how many.

    Unless ``reason`` is :data:`DISABLED_BY_OWNER`, each owner hears about it (the
    ``endpoint_disabled`` signal and its email, once the transaction commits; see
    :mod:`webhooks.notifications.notices`), and the disable is staff's (:func:`disabled_by`):
    the ones of ``endpoints`` already off for another reason (their owner's, a 410) become
    staff's too, so that their owner cannot switch them on either; they count.
    """
    state = endpoint_state(False, reason)
    if not is_trouble(reason):
        return int(endpoints.filter(is_active=True).update(**state))
    # The database the queryset was pointed at, else the one its update would write to.
    using = getattr(endpoints, "_db", None) or router.db_for_write(Endpoint)
    with transaction.atomic(using=using):
        # In primary-key order, as the workers lock endpoint rows: no deadlock with them.
        active = (endpoints.using(using).filter(is_active=True).order_by("pk")
                  .values_list("pk", flat=True))
        told = notices.disable(using, list(active), state)
        notices.send_on_commit(using, told)
        taken_over = (endpoints.using(using).filter(is_active=False)
                      .exclude(disabled_by=state["disabled_by"])
                      .update(disabled_by=state["disabled_by"],
                              disabled_reason=state["disabled_reason"]))
    return len(told) + int(taken_over)


def require_active(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` if it is active, else :class:`~webhooks.exceptions.EndpointDisabled`.

    The API asks for it before it sends anything: an owner switches the endpoint on first.
    Staff and the commands may send to a disabled endpoint on purpose (its deliveries then
    fail at once as ``endpoint_disabled``; a replay only makes its failures due again).
    """
    if not endpoint.is_active:
        raise EndpointDisabled(_("The endpoint is disabled: enable it first."))
    return endpoint


def rotate_secret(endpoint: Endpoint, grace: timedelta | None = None) -> str:
    """Give ``endpoint`` a new signing secret; the old one keeps signing for ``grace``
    (default ``SECRET_ROTATION_GRACE``, at most 7 days). Returns the new secret."""
    return endpoint.rotate_secret(grace)


def sent_payload(delivery: Delivery) -> str:
    """The body ``delivery`` sends its endpoint (one query): the event's payload, restricted by
    the allowlist of the endpoint's subscription (``""`` when the payload could not be built)."""
    event = delivery.event
    allowlists = dict(Subscription.objects.filter(
        endpoint_id=delivery.endpoint_id, event_type__in=[event.type, WILDCARD],
    ).values_list("event_type", "fields"))
    return subscriber_payload(event.payload, event.type,
                              {name: fields or () for name, fields in allowlists.items()})


# --- sending again ---------------------------------------------------------------------------


def _drain_on_commit(using: str) -> None:
    """Ask a worker to send what is due once the current transaction commits."""
    # dispatch.enqueue goes through the active dispatcher when the hook runs (a capture in
    # webhooks.testing queues nothing).
    transaction.on_commit(lambda: enqueue("drain"), using=using)


def send_test_event(endpoint: Endpoint) -> Delivery:
    """Send a ``webhook.test`` event to ``endpoint`` only (no fan-out), whatever it subscribes."""
    now = timezone.now()
    using = router.db_for_write(Delivery)
    with transaction.atomic(using=using):
        event_id = ids.uuid7()
        data = {"endpoint_id": endpoint.public_id, "message": "This is a test webhook."}
        parts = payload_parts(event_id, TEST_EVENT_TYPE, now, data)
        _inserted, payload = insert_event(connections[using], event_id, TEST_EVENT_TYPE,
                                          endpoint.owner_id, now, parts, "", None,
                                          dispatched_at=now)
        event = Event.from_db(using, EVENT_COLUMNS, [
            event_id, TEST_EVENT_TYPE, endpoint.owner_id, now, payload, "", now, None])
        delivery = Delivery.objects.using(using).create(
            event=event, endpoint=endpoint, next_attempt_at=now
        )
        _drain_on_commit(using)
    return delivery


def retry_deliveries(deliveries: QuerySet[Delivery]) -> int:
    """Make ``deliveries`` due now for one more attempt. Returns the count.

    Finished deliveries get one more attempt; pending ones waiting for a retry are brought
    forward; ones a worker holds right now are left alone (so 0 for one delivery means: it is
    being sent right now).
    """
    using = deliveries.db
    with transaction.atomic(using=using):
        count = deliveries.exclude(
            status=Delivery.Status.PENDING, claim_token__isnull=False
        ).update(
            status=Delivery.Status.PENDING, next_attempt_at=timezone.now(), claim_token=None
        )
        if count:
            _drain_on_commit(using)
    return int(count)


def check_replay_window(since: datetime, now: datetime | None = None) -> datetime:
    """``since``, when a replay may go back that far (``REPLAY_WINDOW``); otherwise
    :class:`~webhooks.exceptions.InvalidReplayWindow`."""
    window = webhooks_settings.REPLAY_WINDOW
    if since < (now or timezone.now()) - timedelta(seconds=window):
        raise InvalidReplayWindow(_("A replay can go back %(hours)d hours at most.")
                                  % {"hours": window // 3600})
    return since


def replay(endpoint: Endpoint, since: datetime) -> tuple[int, int]:
    """Send ``endpoint`` again what it did not get since ``since``. Returns (retried, added).

    Its failed deliveries created since then become due now, and, when the endpoint is
    active, events it would have received but has no delivery for (it was disabled, or
    subscribed later) get one. ``since`` may go back ``REPLAY_WINDOW`` seconds at most
    (:func:`check_replay_window`).
    """
    now = timezone.now()
    check_replay_window(since, now)
    using = router.db_for_write(Delivery)
    with transaction.atomic(using=using):
        retried = Delivery.objects.using(using).filter(
            endpoint=endpoint, status=Delivery.Status.FAILED, created_at__gte=since,
        ).update(status=Delivery.Status.PENDING, next_attempt_at=now, claim_token=None)
        added = 0
        if endpoint.is_active:
            types = set(endpoint.subscriptions.values_list("event_type", flat=True))
            missed = (Event.objects.using(using)
                      .filter(created_at__gte=since, dispatched_at__isnull=False, error="")
                      .exclude(type=TEST_EVENT_TYPE)
                      .exclude(deliveries__endpoint=endpoint))
            if WILDCARD not in types:
                missed = missed.filter(type__in=types)
            if endpoint.owner_id is not None:
                missed = missed.filter(owner_id=endpoint.owner_id)
            new = [Delivery(event_id=pk, endpoint=endpoint, next_attempt_at=now, created_at=now)
                   for pk in missed.values_list("pk", flat=True).iterator()]
            Delivery.objects.using(using).bulk_create(new, ignore_conflicts=True,
                                                      batch_size=1000)
            added = len(new)
        if retried or added:
            _drain_on_commit(using)
    return int(retried), added
