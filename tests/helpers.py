"""Plain helper functions that build test data."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model

from webhooks.models import Endpoint, Subscription


def make_user(username: str = "alice") -> Any:
    return get_user_model().objects.create_user(username=username, password="pw")


def make_endpoint(url: str, *types: str, owner: Any = None, **fields: Any) -> Endpoint:
    endpoint = Endpoint.objects.create(url=url, owner=owner, **fields)
    for event_type in types or ("*",):
        Subscription.objects.create(endpoint=endpoint, event_type=event_type)
    return endpoint


def override_webhooks(**values: Any) -> Any:
    """``override_settings`` for some ``WEBHOOKS`` keys, keeping the others of the test settings.

    Usable as a decorator or a context manager.
    """
    from django.conf import settings
    from django.test import override_settings

    return override_settings(WEBHOOKS={**settings.WEBHOOKS, **values})
