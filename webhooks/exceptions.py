"""Exceptions raised by django-webhooks."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class WebhooksError(Exception):
    """Base class of every error this package raises on purpose."""


class WebhooksConfigurationError(WebhooksError, ImproperlyConfigured):
    """The ``WEBHOOKS`` setting is wrong. System checks report the same problems at startup."""


class UnknownEventType(WebhooksError, ValueError):
    """An event type that is not in the catalog was published."""


class PayloadError(WebhooksError, ValueError):
    """An event's payload could not be built or serialized as JSON."""


class DeliveryError(WebhooksError):
    """One delivery attempt failed. Carries what the receiver answered, when it answered.

    ``error_class`` is a stable, short name for the kind of failure (``timeout``,
    ``connection_error``, ``http_status``…) as stored on :class:`~webhooks.models.DeliveryAttempt`.
    """

    def __init__(
        self,
        message: str,
        *,
        error_class: str,
        status_code: int | None = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.status_code = status_code
        self.retryable = retryable
