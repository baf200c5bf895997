"""django-q2 entry points. The only module that imports django-q2.

``dispatch`` fans out newly committed events and delivers; ``drain`` delivers what is due;
``sweep`` runs on a django-q2 schedule and recovers whatever a lost task or a dead worker left
behind (events not fanned out, retries that came due, expired claims). ``prune`` runs on a
second schedule and applies the retention settings. ``notify`` emails an endpoint's owner
about trouble (``webhooks.notifications``). ``ensure_schedule_after_migrate`` (a
``post_migrate`` receiver) keeps both schedules in line with the settings.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.db import connections, router, transaction
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.tasks import async_task

from webhooks import delivery, retention
from webhooks.conf import webhooks_settings as conf
from webhooks.models import Delivery, DispatchToken
from webhooks.notifications import mail

logger = logging.getLogger("webhooks")

SWEEP_SCHEDULE_NAME = "webhooks.sweep"
WAKEUP_SCHEDULE_NAME = "webhooks.wakeup"
PRUNE_SCHEDULE_NAME = "webhooks.prune"
#: An event younger than this is left to its own dispatch task by the sweep.
SWEEP_GRACE = timedelta(seconds=30)


_brokers: dict[tuple[int, str | None], Any] = {}


def _broker(cluster: str | None) -> Any:
    """One broker per process and cluster: django-q2 would build (and, for Redis, connect) a new
    one for every task otherwise."""
    key = (os.getpid(), cluster)
    broker = _brokers.get(key)
    if broker is None:
        broker = _brokers[key] = get_broker(cluster)
    return broker


def enqueue(task: str, *args: Any) -> None:
    """Queue ``webhooks.tasks.<task>`` without storing its result on success."""
    cluster = conf.TASK_CLUSTER
    options: dict[str, Any] = {"save": False, "task_name": f"webhooks.{task}",
                               "broker": _broker(cluster)}
    if cluster:
        options["cluster"] = cluster
    if Conf.ORM and not Conf.SYNC:
        # Outside a transaction django-q2's ORM broker closes every "old" database connection
        # first, which (with CONN_MAX_AGE = 0) is the caller's own: wrap the insert instead.
        with transaction.atomic(using=Conf.ORM):
            async_task(f"webhooks.tasks.{task}", *args, q_options=options)
    else:
        async_task(f"webhooks.tasks.{task}", *args, q_options=options)


def dispatch() -> None:
    """Fan out every committed event not yet dispatched, then deliver what is due.

    The dispatch token is released first, so any event committed from now on asks for a new
    task instead of relying on this one having seen it.
    """
    DispatchToken.release(router.db_for_write(DispatchToken))
    # Only full rounds go round again: under a steady stream, what arrives meanwhile is left
    # to the task its commit asks for, and this one gets on with delivering.
    made = 0
    while True:
        done = delivery.fan_out_round()
        made += done.deliveries
        if done.events != delivery.FAN_OUT_CHUNK:
            break
    if made > conf.BATCH_SIZE:
        # More than one batch came in: share it. (A smaller dispatch, the common case of a
        # few events, sends at once without counting what is due.)
        call_helpers()
    drain()


def call_helpers() -> int:
    """Enqueue extra ``drain`` tasks when more is due than one worker sends in one batch, so a
    backlog is shared by the cluster's workers instead of waiting for one.

    One helper per further batch due, at most one fewer than the cluster's workers; called by
    ``dispatch`` only (not by a hand-over), so helpers never multiply, and only when its
    fan-out made more than one batch of deliveries. Returns how many.
    """
    workers = int(Conf.WORKERS or 1)
    if workers < 2 or Conf.SYNC:
        return 0
    batch = conf.BATCH_SIZE
    # A bounded read along the due index: at most one batch per worker.
    due = len(Delivery.objects.due().values_list("pk", flat=True)[:batch * workers])
    helpers = min(workers - 1, max(0, -(-due // batch) - 1))
    for _ in range(helpers):
        enqueue("drain")
    return helpers


def drain() -> None:
    """Deliver due deliveries for a while; hand over to a new task if work remains.

    When nothing is due any more, a wake-up is scheduled for the next retry (or the end of a
    claim) if that comes before the next sweep, so a retry 5 s out is not left for a minute.
    """
    if delivery.drain():
        enqueue("drain")
        return
    upcoming = delivery.next_attempt_time()
    if upcoming is not None and upcoming < timezone.now() + timedelta(
        minutes=conf.SWEEP_INTERVAL
    ):
        schedule_wakeup(upcoming)


def schedule_wakeup(when: datetime) -> None:
    """Make sure a one-off ``drain`` runs at ``when`` (or earlier); one wake-up at a time.

    django-q2's scheduler looks at schedules every 30 seconds, which bounds how late it runs.
    """
    wakeups = Schedule.objects.filter(name=WAKEUP_SCHEDULE_NAME)
    if wakeups.filter(next_run__lte=when).exists():
        return
    if not wakeups.update(next_run=when):
        Schedule.objects.create(
            name=WAKEUP_SCHEDULE_NAME, func="webhooks.tasks.drain",
            schedule_type=Schedule.ONCE, repeats=-1, next_run=when,
            cluster=conf.TASK_CLUSTER,
        )


def sweep() -> None:
    """Periodic safety net: dispatch events whose task was lost, then deliver what is due."""
    cutoff = timezone.now() - SWEEP_GRACE
    # A token older than the grace period belongs to a task that was lost: drop it so that
    # commits ask for dispatches again.
    DispatchToken.objects.using(router.db_for_write(DispatchToken)).filter(
        created_at__lt=cutoff).delete()
    while delivery.fan_out(created_before=cutoff):
        pass
    drain()


def prune() -> None:
    """Scheduled retention: prune for at most ``TASK_TIME_LIMIT`` seconds; whatever is left
    (a backlog after retention was first switched on) waits for the next run."""
    result = retention.prune(time_limit=conf.TASK_TIME_LIMIT)
    if result.total:
        logger.info("Pruned %s%s.", result, "" if result.complete else " (more next run)",
                    extra={"counts": result.counts, "complete": result.complete})


def notify(notice: dict[str, Any]) -> None:
    """Email a notice (an endpoint disabled, failing or recovered) to the endpoint's owner:
    :func:`webhooks.notifications.mail.send_notice`, which logs whatever goes wrong and never
    raises."""
    mail.send_notice(notice)


def ensure_schedule(using: str = "default") -> None:
    """Create or update the sweep's and the prune's django-q2 schedules (idempotent; run after
    ``migrate``). Without ``PRUNE_INTERVAL`` the prune's schedule is deleted."""
    _put_schedule(using, SWEEP_SCHEDULE_NAME, "webhooks.tasks.sweep", conf.SWEEP_INTERVAL)
    interval = conf.PRUNE_INTERVAL
    if interval is None:
        Schedule.objects.using(using).filter(name=PRUNE_SCHEDULE_NAME).delete()
    else:
        _put_schedule(using, PRUNE_SCHEDULE_NAME, "webhooks.tasks.prune", interval)


def ensure_schedule_after_migrate(using: str = "default", **kwargs: Any) -> None:
    """``post_migrate`` receiver (connected by ``AppConfig.ready``): set up the schedules once
    django-q2's tables exist in this database."""
    if not apps.is_installed("django_q"):
        return
    if not router.allow_migrate_model(using, Schedule):
        return
    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return  # a partial migrate (webhooks before django_q): the next full one does it
    ensure_schedule(using)


def _put_schedule(using: str, name: str, func: str, minutes: int) -> None:
    """Create the repeating schedule ``name`` or bring its fields in line."""
    defaults = {
        "func": func,
        "schedule_type": Schedule.MINUTES,
        "minutes": minutes,
        "repeats": -1,
        "cluster": conf.TASK_CLUSTER,
    }
    schedules = Schedule.objects.using(using)
    existing = schedules.filter(name=name).first()
    if existing is None:
        schedules.create(name=name, next_run=timezone.now(), **defaults)
        return
    changed = [k for k, v in defaults.items() if getattr(existing, k) != v]
    if changed:
        for key in changed:
            setattr(existing, key, defaults[key])
        existing.save(using=using, update_fields=changed)
