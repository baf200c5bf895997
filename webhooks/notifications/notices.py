"""The notice rule: when an endpoint's owner is told about trouble, and that it is told once.

An endpoint remembers the last notice its owner got in ``notified_state``: ``""`` (nothing, or
recovered since), ``"failing"`` or ``"disabled"``. Every notice changes that column with a
compare-and-set ``UPDATE`` (its ``WHERE`` holds the state the notice leaves), so when two
workers record the same change at once, one row is updated and one notice is sent:

* **disabled**: the endpoint is switched off because of trouble (``410 Gone``, sustained
  failure, staff). The ``UPDATE`` that switches it off (``WHERE is_active``) also sets the
  state: whoever switches it off notifies, once per switch. An owner switching it off
  (:data:`webhooks.services.DISABLED_BY_OWNER`) is no trouble and notifies nobody.
* **failing**: every delivery has failed for ``NOTIFY_FAILING_AFTER`` seconds
  (``failing_since`` is that old; any success resets it), the endpoint is active and its
  owner was not told already (the state is not ``"failing"``).
* **recovered**: the last attempt of a batch to the endpoint succeeded while the state is
  ``"failing"`` or ``"disabled"``: recovery follows only a notice that was sent.

So a flapping endpoint (failures between successes) is never failing for long enough to
notify, and an endpoint that fails for days sends one failing notice, then one disabled
notice. The notices reach the site as signals, sent once the change is committed
(:func:`send_all`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from webhooks.conf import webhooks_settings as conf
from webhooks.models import Endpoint, NotifiedState
from webhooks.signals import endpoint_disabled, endpoint_failing, endpoint_recovered, send

#: The kinds of notice (the first two are also ``notified_state`` values).
DISABLED = NotifiedState.DISABLED.value
FAILING = NotifiedState.FAILING.value
RECOVERED = "recovered"
KINDS = (DISABLED, FAILING, RECOVERED)


@dataclass(frozen=True)
class Notice:
    """One change of state an owner hears about. ``endpoint`` is the row as saved by it."""

    kind: str
    endpoint: Endpoint
    #: When the state changed (``notified_at``).
    at: datetime
    #: disabled: its ``disabled_reason``; failing: what the last attempt got.
    reason: str = ""
    #: When the trouble began: disabled and failing: ``failing_since``; recovered: when the
    #: trouble it recovers from began.
    since: datetime | None = None
    #: recovered: the notice it follows (``"failing"`` or ``"disabled"``).
    previous: str = ""

    def send(self) -> None:
        """Send this notice's signal (``send_robust``: a raising receiver is logged)."""
        if self.kind == DISABLED:
            send(endpoint_disabled, Endpoint, endpoint=self.endpoint, reason=self.reason)
        elif self.kind == FAILING:
            send(endpoint_failing, Endpoint, endpoint=self.endpoint, since=self.since,
                 reason=self.reason)
        else:
            send(endpoint_recovered, Endpoint, endpoint=self.endpoint, since=self.since,
                 previous=self.previous)


def disable(using: str, endpoint_ids: Iterable[Any], state: Mapping[str, Any],
            ) -> list[Notice]:
    """Switch off the endpoints of ``endpoint_ids`` that are still active, writing ``state``
    (``is_active``, ``disabled_reason``, ``disabled_at``) and the disabled notice: one
    compare-and-set ``UPDATE`` per endpoint, so that of two callers (two workers, a worker and
    staff) only one switches it off and notifies. Returns those notices, to send once the
    transaction commits."""
    at = state["disabled_at"]
    endpoints = Endpoint.objects.using(using)
    notices = []
    for pk in endpoint_ids:
        if endpoints.filter(pk=pk, is_active=True).update(
                **state, notified_state=DISABLED, notified_at=at):
            endpoint = endpoints.get(pk=pk)
            notices.append(Notice(DISABLED, endpoint, at, reason=endpoint.disabled_reason,
                                  since=endpoint.failing_since))
    return notices


def failing(using: str, last_errors: Mapping[Any, str], now: datetime) -> list[Notice]:
    """Failing notices for the endpoints of ``last_errors`` (``{endpoint pk: what its last
    attempt got}``, endpoints that just failed) that have failed without a break for
    ``NOTIFY_FAILING_AFTER`` seconds, are active, and whose owner was not told yet."""
    after = conf.NOTIFY_FAILING_AFTER
    if after is None or not last_errors:
        return []
    cutoff = now - timedelta(seconds=after)
    endpoints = Endpoint.objects.using(using)

    def due(*pks: Any) -> Any:
        return endpoints.filter(pk__in=pks, is_active=True, failing_since__lte=cutoff).exclude(
            notified_state=FAILING)

    notices = []
    for pk in list(due(*last_errors).values_list("pk", flat=True)):
        if due(pk).update(notified_state=FAILING, notified_at=now):
            endpoint = endpoints.get(pk=pk)
            notices.append(Notice(FAILING, endpoint, now, reason=last_errors[pk],
                                  since=endpoint.failing_since))
    return notices


def recovered(using: str, before: Sequence[Endpoint], now: datetime) -> list[Notice]:
    """Recovered notices for the endpoints ``before`` (each as the claim read it, before its
    successful attempts) whose owner was told about trouble.

    The claim's copy spares the healthy endpoints (nearly all of them) a query on every
    batch. When another worker's notice landed after the claim read the row, the copy says
    "nothing" and this success passes unnoticed: the next success, read afresh, notifies.
    """
    endpoints = Endpoint.objects.using(using)
    notices = []
    for old in before:
        if old.notified_state == NotifiedState.NONE:
            continue
        row = (endpoints.filter(pk=old.pk).exclude(notified_state=NotifiedState.NONE)
               .values_list("notified_state", "notified_at").first())
        if row is None:
            continue
        previous, told_at = row
        if endpoints.filter(pk=old.pk, notified_state=previous).update(
                notified_state=NotifiedState.NONE, notified_at=now):
            since = (old.failing_since or told_at) if previous == FAILING else told_at
            notices.append(Notice(RECOVERED, endpoints.get(pk=old.pk), now, since=since,
                                  previous=previous))
    return notices


def send_all(notices: Iterable[Notice]) -> None:
    """Send each notice's signal: call it after the transaction that made them commits."""
    for notice in notices:
        notice.send()


def send_on_commit(using: str, notices: list[Notice]) -> None:
    """Send the notices' signals once the current transaction on ``using`` commits (at once
    outside a transaction)."""
    if notices:
        transaction.on_commit(lambda: send_all(notices), using=using)
