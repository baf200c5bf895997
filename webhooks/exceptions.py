"""Exceptions raised by django-webhooks."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class WebhooksError(Exception):
    """Base class of every error this package raises on purpose."""


class WebhooksConfigurationError(WebhooksError, ImproperlyConfigured):
    """The ``WEBHOOKS`` setting is wrong. System checks report the same problems at startup."""


class UnknownEventType(WebhooksError, ValueError):
    """An event type that is not in the catalog was published."""


class InvalidOwner(WebhooksError, ValueError):
    """An owner given to :func:`webhooks.send_event` is not an instance of the owner model
    (``WEBHOOKS_OWNER_MODEL``) nor a valid primary key of it."""


class InvalidInstance(WebhooksError, ValueError):
    """An instance given to :func:`webhooks.send_model_event` cannot have events: it is not
    saved (no primary key to count its events by), or its model is not in
    ``WEBHOOKS["MODELS"]``."""


class PayloadError(WebhooksError, ValueError):
    """An event's payload could not be built or serialized as JSON.

    ``path`` says where, when one value is to blame: ``data["items"][2]["price"]``.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ServiceError(WebhooksError):
    """An operation of :mod:`webhooks.services` was refused.

    ``message`` is meant for people (the admin, the API and the commands show it as it is);
    ``code`` is a stable short name for the reason.
    """

    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidReplayWindow(ServiceError, ValueError):
    """A replay was asked to go back further than ``REPLAY_WINDOW``."""

    code = "too_old"


class DisabledByStaff(ServiceError):
    """The owner asked to switch on an endpoint that staff switched off: only staff may."""

    code = "disabled_by_staff"


class EndpointDisabled(ServiceError):
    """The operation needs an active endpoint, and this one is disabled."""

    code = "endpoint_disabled"
