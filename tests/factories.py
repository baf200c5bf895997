"""Plain functions that build test data: users, endpoints, events, deliveries and attempts.

Each takes keyword arguments for what a test varies and writes rows straight to the database
(no engine code runs), except :func:`publish` and :func:`make_event` given ``data``, which go
through ``webhooks.send_event`` (and, for ``publish``, the fan-out) as a site and a worker
would. Ages are in days.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

import webhooks
from webhooks.delivery.fanout import fan_out
from webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event, Subscription


def make_user(username: str = "alice") -> Any:
    """A user with password ``pw``."""
    return get_user_model().objects.create_user(username=username, password="pw")


def organizations_own() -> bool:
    """Whether this run's configuration has organizations as owners (``tests.settings_org``)."""
    return getattr(settings, "WEBHOOKS_OWNER_MODEL", None) is not None


def make_owner(name: str = "alice", *members: Any) -> Any:
    """An owner of this configuration: a user named ``name`` (with password ``pw``), or an
    organization named ``name`` whose members are ``members`` (default: a new user ``name``)."""
    if not organizations_own():
        return make_user(name)
    from tests.testapp.models import Membership, Organization

    organization = Organization.objects.create(name=name, email=f"{name}@example.com")
    for user in members or (make_user(name),):
        Membership.objects.create(organization=organization, user=user)
    return organization


def member_of(owner: Any) -> Any:
    """A user who acts for ``owner`` in the API: the user itself, or the organization's first
    member."""
    if not organizations_own():
        return owner
    return owner.members.order_by("pk").first()


def owned_order(owner: Any, **fields: Any) -> Any:
    """A ``testapp.Order`` of ``owner`` (its customer, or its organization)."""
    from tests.testapp.models import Order

    key = "organization" if organizations_own() else "customer"
    return Order.objects.create(**{key: owner}, **fields)


def make_endpoint(url: str, *types: str, owner: Any = None, **fields: Any) -> Endpoint:
    """An endpoint subscribed to ``types`` (default: every type, ``"*"``)."""
    endpoint = Endpoint.objects.create(url=url, owner=owner, **fields)
    for event_type in types or ("*",):
        Subscription.objects.create(endpoint=endpoint, event_type=event_type)
    return endpoint


def days_ago(days: float) -> datetime:
    """The time ``days`` days before now."""
    return timezone.now() - timedelta(days=days)


def make_event(event_type: str = "invoice.paid", data: Any = None, *, owner: Any = None,
               age: float = 0.0, dispatched: bool = True) -> Event:
    """An event created ``age`` days ago and dispatched then (``dispatched=False``: not yet).

    With ``data`` the event is written by ``webhooks.send_event`` (its real payload, with
    ``data`` and the event's id); without, it is a bare row whose payload has empty ``data``.
    """
    created = days_ago(age)
    dispatched_at = created if dispatched else None
    if data is None:
        return Event.objects.create(type=event_type, payload='{"data":{}}', owner=owner,
                                    created_at=created, dispatched_at=dispatched_at)
    event = webhooks.send_event(event_type, data, owner=owner)
    Event.objects.filter(pk=event.pk).update(created_at=created, dispatched_at=dispatched_at)
    event.created_at, event.dispatched_at = created, dispatched_at
    return event


def make_attempts(delivery: Delivery, count: int, *, status_code: int | None = 200,
                  duration: float = 0.1, ago: timedelta = timedelta(0),
                  last_ago: timedelta | None = None, now: datetime | None = None,
                  response_body: str | None = None,
                  response_headers: dict[str, str] | None = None) -> list[DeliveryAttempt]:
    """``count`` attempt rows of ``delivery``, numbered after the ones it has, made ``ago``
    (default: now), the last of them ``last_ago`` (default: ``ago`` too), both counted back
    from ``now`` (default: the current time). The delivery row is left as it is
    (:func:`make_delivery` counts its own attempts).

    ``status_code=None`` is an attempt that got no answer (a timeout). An answer's body is
    ``"ok"`` and its headers name a content type unless given.
    """
    now = now or timezone.now()
    at, last_at = now - ago, now - (ago if last_ago is None else last_ago)
    answered = status_code is not None
    body = response_body if response_body is not None else "ok" if answered else ""
    headers = (response_headers if response_headers is not None
               else {"Content-Type": "text/plain"} if answered else {})
    first = DeliveryAttempt.objects.filter(delivery=delivery).count() + 1
    return DeliveryAttempt.objects.bulk_create([
        DeliveryAttempt(delivery=delivery, endpoint_id=delivery.endpoint_id, number=first + n,
                        created_at=last_at if n == count - 1 else at, url=delivery.endpoint.url,
                        request_headers={"webhook-id": delivery.event.public_id},
                        status_code=status_code, response_headers=headers,
                        response_body=body, duration=duration,
                        error_class="" if answered else "timeout")
        for n in range(count)
    ])


def make_delivery(endpoint: Endpoint, event_type: str = "invoice.paid", *,
                  event: Event | None = None, data: Any = None, status: str = "failed",
                  age: float = 0.0, attempts: int = 0, last_attempt: float | None = None,
                  attempt_status: int | None = 200, response_body: str | None = None,
                  response_headers: dict[str, str] | None = None,
                  **fields: Any) -> Delivery:
    """A delivery to ``endpoint`` created ``age`` days ago, of ``event`` (default: a new
    dispatched event of ``event_type`` and that age, owned like the endpoint, see
    :func:`make_event` for ``data``). A pending one is due at its creation.

    With ``attempts``, that many attempts (see :func:`make_attempts`: ``attempt_status``,
    ``response_body``, ``response_headers``) made at its creation, the last one
    ``last_attempt`` days ago if given, counted on the delivery as the engine would.
    ``fields`` are set on the delivery.
    """
    now = timezone.now()
    created = now - timedelta(days=age)
    last_ago = timedelta(days=age if last_attempt is None else last_attempt)
    if event is None:
        event = make_event(event_type, data, owner=endpoint.owner, age=age)
    fields.setdefault("next_attempt_at", created if status == "pending" else None)
    # Counted at creation: no UPDATE for tests that watch the statements run.
    fields.setdefault("attempts", attempts)
    fields.setdefault("last_attempt_at", now - last_ago if attempts else None)
    delivery = Delivery.objects.create(event=event, endpoint=endpoint, status=status,
                                       created_at=created, **fields)
    if attempts:
        make_attempts(delivery, attempts, status_code=attempt_status, ago=timedelta(days=age),
                      last_ago=last_ago, now=now, response_body=response_body,
                      response_headers=response_headers)
    return delivery


def publish(event_type: str = "invoice.paid", data: Any = None, *, owner: Any = None,
            count: int = 1) -> Event:
    """Send ``count`` events through ``webhooks.send_event`` and fan them out (deliveries are
    created, nothing is sent). ``data`` defaults to ``{"n": 1}``, ``{"n": 2}``… Returns the
    last event (the only one by default)."""
    events = [webhooks.send_event(event_type, data if data is not None else {"n": n + 1},
                                  owner=owner)
              for n in range(count)]
    ids = [str(event.id) for event in events]
    while fan_out(ids):
        pass
    return events[-1]


def make_due(*deliveries: Delivery) -> None:
    """Make ``deliveries`` (default: every pending one) due now."""
    queryset = (Delivery.objects.filter(pk__in=[d.pk for d in deliveries]) if deliveries
                else Delivery.objects.pending())
    queryset.update(next_attempt_at=timezone.now())
