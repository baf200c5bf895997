"""App configuration: registers checks and signal receivers, nothing else."""

from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = _("Webhooks")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks; connect model event capture, the metrics, the owners'
        notifications, the schedules' ``post_migrate`` receiver (which lives with the rest
        of django-q2's side in :mod:`webhooks.tasks`) and the retry waker's messengers."""
        from webhooks import checks, metrics, tasks, wakeup
        from webhooks.events import capture
        from webhooks.notifications import receivers

        checks.register()
        capture.connect()
        metrics.connect()
        receivers.connect()
        post_migrate.connect(tasks.ensure_schedule_after_migrate, sender=self,
                             dispatch_uid="webhooks.ensure_schedule")
        tasks.connect_wakeups(wakeup.waker.arm)
