"""Rate limits of the API: DRF throttles with the scopes ``webhooks`` (every request) and
``webhooks_send`` (requests that make us send HTTP: test, replay, retry).

Rates come from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` like any DRF scope, read at
request time; a scope the site does not list gets the default below, and ``None`` turns it
off. Requests are counted per user (per client address for anonymous ones).
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

#: Rates used when ``DEFAULT_THROTTLE_RATES`` does not name the scope.
DEFAULT_RATES: dict[str, str | None] = {
    "webhooks": "120/minute",
    "webhooks_send": "10/minute",
}


class WebhooksThrottle(SimpleRateThrottle):
    """Every request to the webhooks API: scope ``webhooks``."""

    scope = "webhooks"

    def get_rate(self) -> str | None:
        rates = api_settings.DEFAULT_THROTTLE_RATES or {}
        rate = rates[self.scope] if self.scope in rates else DEFAULT_RATES[self.scope]
        return None if rate is None else str(rate)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        ident = user.pk if user and user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class WebhooksSendThrottle(WebhooksThrottle):
    """Requests that send webhooks (test, replay, retry): scope ``webhooks_send``."""

    scope = "webhooks_send"
