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
        from webhooks import checks, events

        checks.register()
        events.connect()
        post_migrate.connect(_ensure_schedule, sender=self,
                             dispatch_uid="webhooks.ensure_schedule")


def _ensure_schedule(using: str = "default", **kwargs: Any) -> None:
    from django.apps import apps

    if not apps.is_installed("django_q"):
        return
    from webhooks.tasks import ensure_schedule

    ensure_schedule()
