"""App configuration: registers checks and signal receivers, nothing else."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = _("Webhooks")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from webhooks import checks, events, metrics

        checks.register()
        events.connect()
        metrics.connect()
        post_migrate.connect(_ensure_schedule, sender=self,
                             dispatch_uid="webhooks.ensure_schedule")


def _ensure_schedule(using: str = "default", **kwargs: Any) -> None:
    """Set up the sweep's schedule once django-q2's tables exist in this database."""
    from django.apps import apps
    from django.db import connections, router

    if not apps.is_installed("django_q"):
        return
    from django_q.models import Schedule

    if not router.allow_migrate_model(using, Schedule):
        return
    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return  # a partial migrate (webhooks before django_q): the next full one does it
    from webhooks.tasks import ensure_schedule

    ensure_schedule(using)
