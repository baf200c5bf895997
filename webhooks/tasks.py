"""django-q2 entry points. The only module that imports django-q2.

``dispatch`` fans out newly committed events and delivers; ``drain`` delivers what is due;
``sweep`` runs on a django-q2 schedule and recovers whatever a lost task or a dead worker left
behind (events not fanned out, retries that came due, expired claims). ``prune`` runs on a
second schedule and applies the retention settings. ``notify`` emails an endpoint's owner
about trouble (``webhooks.notifications``). ``ensure_schedule_after_migrate`` (a
``post_migrate`` receiver) keeps both schedules in line with the settings.

``connect_wakeups`` carries the next retry's time from a worker's task to the cluster's monitor
process, where :mod:`webhooks.wakeup` keeps the timer that wakes the workers for it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.db import connections, router, transaction
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.humanhash import uuid as humanhash_uuid
from django_q.models import OrmQ, Schedule
from django_q.signals import post_execute, pre_enqueue, pre_execute
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from webhooks import delivery, retention
from webhooks.conf import webhooks_settings as conf
from webhooks.cursors import run
from webhooks.models import Delivery, DispatchToken
from webhooks.notifications import mail

logger = logging.getLogger("webhooks")

SWEEP_SCHEDULE_NAME = "webhooks.sweep"
WAKEUP_SCHEDULE_NAME = "webhooks.wakeup"
PRUNE_SCHEDULE_NAME = "webhooks.prune"
#: An event younger than this is left to its own dispatch task by the sweep.
SWEEP_GRACE = timedelta(seconds=30)
#: How far past ``SWEEP_INTERVAL`` the waker is armed: the sweep's schedule runs every interval
#: plus up to the 30 s django-q2's scheduler takes to see it, so the last sweep before any retry
#: is never further from it than this.
WAKE_HORIZON_SLACK = timedelta(seconds=60)
#: The key of a task package that carries the next due time (a ``time.time()`` value) from the
#: worker that ran the task to the cluster's monitor.
WAKE_KEY = "webhooks_wake_at"


_brokers: dict[tuple[int, str | None], Any] = {}


def _broker(cluster: str | None) -> Any:
    """One broker per process and cluster: django-q2 would build (and, for Redis, connect) a new
    one for every task otherwise."""
    key = (os.getpid(), cluster)
    broker = _brokers.get(key)
    if broker is None:
        broker = _brokers[key] = get_broker(cluster)
    return broker


def _task_options(task: str) -> dict[str, Any]:
    cluster = conf.TASK_CLUSTER
    options: dict[str, Any] = {"save": False, "task_name": f"webhooks.{task}",
                               "broker": _broker(cluster)}
    if cluster:
        options["cluster"] = cluster
    return options


def _package(task: str, args: tuple[Any, ...], options: dict[str, Any]) -> str:
    """The signed task package django-q2's ``async_task`` would queue for
    ``webhooks.tasks.<task>(*args)`` with ``options`` (not in sync mode): the same members, the
    same ``pre_enqueue`` signal, without the log line ``async_task`` writes for every task (a
    dispatch is queued for most commits of a busy site)."""
    tag = humanhash_uuid()
    package: dict[str, Any] = {"id": tag[1], "name": options["task_name"],
                               "func": f"webhooks.tasks.{task}", "args": args,
                               "save": options["save"]}
    if "cluster" in options:
        package["cluster"] = options["cluster"]
    if Conf.CACHED:
        package["cached"] = Conf.CACHED
    if Conf.ACK_FAILURES:
        package["ack_failure"] = Conf.ACK_FAILURES
    package["kwargs"] = {}
    package["started"] = timezone.now()
    pre_enqueue.send(sender="django_q", task=package)
    return str(SignedPackage.dumps(package))


def _is_redis(broker: Any) -> bool:
    """Whether ``broker`` is django-q2's Redis broker, without importing its module: that
    imports the ``redis`` package, which a site on the ORM broker need not have installed (a
    Redis broker was built by that module, so it is loaded whenever one exists)."""
    module = sys.modules.get("django_q.brokers.redis_broker")
    return module is not None and isinstance(broker, module.Redis)


def enqueue(task: str, *args: Any) -> None:
    """Queue ``webhooks.tasks.<task>`` without storing its result on success."""
    options = _task_options(task)
    if not Conf.SYNC and _is_redis(options["broker"]):
        options["broker"].enqueue(_package(task, args, options))
        return
    if Conf.ORM and not Conf.SYNC:
        # Outside a transaction django-q2's ORM broker closes every "old" database connection
        # first, which (with CONN_MAX_AGE = 0) is the caller's own: wrap the insert instead.
        with transaction.atomic(using=Conf.ORM):
            async_task(f"webhooks.tasks.{task}", *args, q_options=options)
    else:
        async_task(f"webhooks.tasks.{task}", *args, q_options=options)


def enqueue_in_transaction(using: str, task: str) -> bool:
    """Queue ``webhooks.tasks.<task>`` inside the current transaction on ``using``, when the
    broker is django-q2's ORM broker on that same database (and tasks are not run inline).

    The task row then commits (or rolls back) with the caller's events: the commit pays no
    write transaction of its own for it. ``False`` (nothing done) for any other broker, or
    outside a transaction; the caller then enqueues after the commit.
    """
    if Conf.SYNC or using != Conf.ORM or not transaction.get_connection(using).in_atomic_block:
        return False
    options = _task_options(task)
    broker = options["broker"]
    from django_q.brokers.orm import ORM

    if not isinstance(broker, ORM):
        return False
    # What the ORM broker's enqueue writes, as one statement on the outbox's cursor.
    connection = connections[using]
    table = connection.ops.quote_name(OrmQ._meta.db_table)
    q = connection.ops.quote_name
    run(connection,
        f"INSERT INTO {table} ({q('key')}, {q('payload')}, {q('lock')}) "  # noqa: S608
        "VALUES (%s, %s, %s)",
        [broker.list_key or Conf.CLUSTER_NAME, _package(task, (), options),
         connection.ops.adapt_datetimefield_value(timezone.now())])
    return True


#: Redis key suffix of the dispatch token kept in the broker (see :func:`take_queue_token`).
QUEUE_TOKEN_SUFFIX = ":webhooks-dispatch-token"  # noqa: S105 - a key name


def _redis_queue(cluster: str | None) -> tuple[Any, str] | None:
    """``(redis client, token key)`` when the broker is django-q2's Redis broker (and tasks
    are not run inline), else ``None``."""
    if Conf.SYNC:
        return None
    broker = _broker(cluster)
    if not _is_redis(broker):
        return None
    return broker.connection, broker.list_key + QUEUE_TOKEN_SUFFIX


def take_queue_token() -> bool | None:
    """Take the dispatch token kept in the broker: ``True`` when this call took it (so must
    enqueue a dispatch), ``False`` when a queued dispatch holds it, ``None`` when the broker
    keeps no token (use :class:`~webhooks.models.DispatchToken` in the database).

    With the Redis broker the token is a key set with ``SET NX PX``: one round trip to Redis
    instead of a database transaction (and its commit) after every committing transaction.
    It expires after ``TASK_TIME_LIMIT`` seconds, as a stale database token is taken over, so
    a lost task never holds commits back for longer. Raises what the Redis client raises.
    """
    queue = _redis_queue(conf.TASK_CLUSTER)
    if queue is None:
        return None
    client, key = queue
    ttl = max(1, int(conf.TASK_TIME_LIMIT * 1000))
    return bool(client.set(key, b"1", nx=True, px=ttl))


def release_queue_token() -> bool:
    """Give the broker's dispatch token back; ``False`` when the broker keeps none."""
    queue = _redis_queue(conf.TASK_CLUSTER)
    if queue is None:
        return False
    client, key = queue
    client.delete(key)
    return True


def dispatch() -> None:
    """Fan out every committed event not yet dispatched, then deliver what is due.

    The dispatch token is released first (the broker's, with the Redis broker, and the
    database's), so any event committed from now on asks for a new task instead of relying on
    this one having seen it.
    """
    using = router.db_for_write(DispatchToken)
    try:
        in_broker = release_queue_token()
    except Exception:  # the token expires by itself; the fan-out must go on
        logger.warning("Could not release the dispatch token kept in Redis.", exc_info=True)
        in_broker = True
    # SQLite takes the database's token inside the saving transaction whatever the broker;
    # elsewhere, with a broker that keeps the token, the row is never written.
    if not in_broker or connections[using].vendor == "sqlite":
        DispatchToken.release(using)
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

    When nothing is due any more, the next due time (a retry, or the end of a claim) is passed
    on so that a drain runs then: to this cluster's waker (see :func:`connect_wakeups`) if it
    comes within ``SWEEP_INTERVAL`` plus a minute, and to the ``webhooks.wakeup`` schedule, the
    durable fallback, if it comes before the next sweep. A later retry is left to the sweeps:
    the last one before it passes it on.
    """
    if delivery.drain():
        enqueue("drain")
        return
    upcoming = delivery.next_attempt_time()
    if upcoming is None:
        return
    sweep_interval = timedelta(minutes=conf.SWEEP_INTERVAL)
    now = timezone.now()
    if upcoming < now + sweep_interval + WAKE_HORIZON_SLACK:
        report_wakeup(upcoming)
    if upcoming < now + sweep_interval:
        schedule_wakeup(upcoming)


def schedule_wakeup(when: datetime) -> None:
    """Make sure a one-off ``drain`` runs at ``when`` (or earlier); one wake-up at a time.

    django-q2's scheduler looks at schedules every 30 seconds, which bounds how late it runs:
    this is the fallback for a cluster whose waker is gone (its monitor process died, or the
    cluster was stopped).
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


# --- the waker's messenger ------------------------------------------------------------------
#
# A task's package (a dict) goes from the pusher to a worker, which runs it, and on to the
# monitor, which records its result: ``pre_execute`` hands the worker the very dict that is sent
# on to the monitor after the task. ``drain`` writes the next due time into it; the monitor's
# ``post_execute`` receiver arms the waker with it. The monitor outlives the workers (recycled
# after ``recycle`` tasks, killed on a timeout), so one timer per cluster covers them all.

#: The package of the task this process is running (in a worker: set by ``pre_execute``).
_running_task: dict[str, Any] | None = None
#: What arms the waker (:meth:`webhooks.wakeup.Waker.arm`), given to :func:`connect_wakeups`.
_arm: Callable[[float], None] | None = None


def connect_wakeups(arm: Callable[[float], None]) -> None:
    """Connect the two django-q2 signal receivers that carry a drain's next due time from the
    worker to the monitor, where ``arm(time.time() value)`` is called (``AppConfig.ready``)."""
    global _arm
    _arm = arm
    pre_execute.connect(_remember_task, weak=False, dispatch_uid="webhooks.remember_task")
    post_execute.connect(_arm_waker, weak=False, dispatch_uid="webhooks.arm_waker")


def report_wakeup(when: datetime) -> None:
    """Pass ``when`` on with the running task's package (the earliest time, if reported twice).

    Nothing before this process ran its first task. Outside a task (a test calling ``drain``
    after a sync-mode task), the last task's package is written to, after it went on: harmless.
    """
    task = _running_task
    if task is None:
        return
    at = when.timestamp()
    earlier = task.get(WAKE_KEY)
    task[WAKE_KEY] = at if earlier is None else min(earlier, at)


def _remember_task(sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
    """``pre_execute`` (in a worker): the package of the task about to run."""
    global _running_task
    _running_task = task


def _arm_waker(sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
    """``post_execute`` (in the monitor): arm the waker for the time the task passed on. Not in
    sync mode, where tasks run inline in the caller and no thread is wanted."""
    at = task.get(WAKE_KEY)
    if at is None or _arm is None or Conf.SYNC or task.get("sync"):
        return
    _arm(at)


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
