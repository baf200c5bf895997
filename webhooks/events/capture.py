"""Model event capture: the ``pre_save``/``post_save``/``post_delete`` receivers that write
``<model>.created``/``.updated``/``.deleted`` events into the outbox, in the saving transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.core.signals import setting_changed
from django.db import models
from django.db.models.signals import post_delete, post_migrate, post_save, pre_save

from webhooks import owners
from webhooks.events import catalog, payloads
from webhooks.events.catalog import ModelEvents, get_catalog
from webhooks.exceptions import WebhooksConfigurationError
from webhooks.outbox import forget_function, write_model_event

logger = logging.getLogger("webhooks")


def _model_events_for(sender: type[models.Model]) -> ModelEvents | None:
    try:
        return get_catalog().models.get(sender)
    except WebhooksConfigurationError:
        # Reported by the system checks; a broken setting must not break the site's saves.
        logger.exception("WEBHOOKS setting is invalid; model events are not recorded")
        return None


def on_post_save(
    sender: type[models.Model], instance: models.Model, created: bool = False,
    raw: bool = False, using: str = "default", **kwargs: Any,
) -> None:
    """Record ``<model>.created`` / ``<model>.updated``. Never raises into the caller's save."""
    if raw:
        return
    config = _model_events_for(sender)
    if config is None:
        return
    action = "created" if created else "updated"
    changes = None
    if config.track and action == "updated":
        changes, relevant = config.changes(instance, kwargs.get("update_fields"))
        if not relevant:
            return
    if action in config.actions:
        record_model_event(config, action, instance, using, changes=changes)


def on_post_delete(
    sender: type[models.Model], instance: models.Model, using: str = "default",
    origin: Any = None, **kwargs: Any,
) -> None:
    """Record ``<model>.deleted``."""
    config = _model_events_for(sender)
    if config is not None and "deleted" in config.actions:
        record_model_event(config, "deleted", instance, using)


def on_pre_save(
    sender: type[models.Model], instance: models.Model, raw: bool = False,
    using: str = "default", update_fields: Any = None, **kwargs: Any,
) -> None:
    """Read old values for models that track fields; nothing at all for the others."""
    if raw:
        return
    config = _model_events_for(sender)
    if config is not None and config.track and "updated" in config.actions:
        try:
            config.read_old_values(instance, using, update_fields)
        except Exception:  # never break the caller's save; the event goes out without a diff
            logger.exception("Could not read the old values of %s", config.label)


def record_model_event(
    config: ModelEvents, action: str, instance: models.Model, using: str,
    changes: Mapping[str, Any] | None = None,
) -> None:
    """Write the event; a failure to serialize is recorded on the event itself, never raised
    into the caller's save (see :func:`webhooks.outbox.write_model_event`)."""
    write_model_event(config, action, instance, using, changes=changes, strict=False,
                      returning=False)


def connect() -> None:
    """Connect the model signal receivers, and the receivers that forget what was derived from
    the settings when they change, or from the database's schema when it is migrated (called
    once from ``AppConfig.ready``)."""
    post_save.connect(on_post_save, dispatch_uid="webhooks.events.on_post_save")
    pre_save.connect(on_pre_save, dispatch_uid="webhooks.events.on_pre_save")
    post_delete.connect(on_post_delete, dispatch_uid="webhooks.events.on_post_delete")
    setting_changed.connect(catalog.clear_caches,
                            dispatch_uid="webhooks.events.catalog.clear_caches")
    setting_changed.connect(payloads.clear_caches,
                            dispatch_uid="webhooks.events.payloads.clear_caches")
    setting_changed.connect(owners.clear_caches, dispatch_uid="webhooks.owners.clear_caches")
    post_migrate.connect(forget_function, dispatch_uid="webhooks.outbox.forget_function")
