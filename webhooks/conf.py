"""Settings: the ``WEBHOOKS`` dict, its defaults, and typed accessors read at use time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings

#: Every key the ``WEBHOOKS`` setting accepts, with its default. README.md documents each one.
DEFAULTS: dict[str, Any] = {
    # Model events: {"app_label.Model": {"events": [...], "serializer": path, "owner": path}}.
    "MODELS": {},
    # Custom event catalog: {"invoice.paid": "description"}.
    "EVENTS": {},
    # Seconds to wait before each retry after the first attempt (like Svix: 8 attempts in all).
    "RETRY_SCHEDULE": [5, 300, 1800, 7200, 18000, 36000, 36000],
    # Each retry delay is stretched by a random share of up to this fraction (never shortened).
    "RETRY_JITTER": 0.1,
    # Total wall-clock deadline of one attempt, in seconds.
    "TIMEOUT": 15.0,
    # Deadline for establishing the TCP (and TLS) connection, in seconds.
    "CONNECT_TIMEOUT": 5.0,
    # Longest silence from a receiver (between two reads), in seconds.
    "READ_TIMEOUT": 10.0,
    # SSRF escape hatch: networks deliveries may reach although they are private (CIDR list).
    "ALLOWED_NETWORKS": [],
    # Refuse plain http:// endpoint URLs.
    "REQUIRE_HTTPS": False,
    # Keys that encrypt secrets at rest (newest first).
    "ENCRYPTION_KEYS": [],
    # CA bundle (path) to verify receivers' certificates with; None: certifi's bundle.
    "CA_BUNDLE": None,
    # Deliveries claimed by one worker in one query.
    "BATCH_SIZE": 100,
    # How long a claim (lease) on a batch of deliveries lasts, in seconds. A worker that dies
    # mid-batch holds its deliveries this long at most; then any worker picks them up.
    "CLAIM_TTL": 45.0,
    # A delivery task stops claiming new batches after this many seconds and hands over to a
    # fresh task, so one task never hogs a worker.
    "TASK_TIME_LIMIT": 10.0,
    # Disable an endpoint whose deliveries have all failed for this many seconds...
    "DISABLE_AFTER": 5 * 24 * 3600,
    # ...and at least this many times in a row.
    "DISABLE_AFTER_FAILURES": 10,
    # Flow control. Most workers sending to one endpoint at the same moment, for endpoints
    # that set no limit of their own (None: no cap; each worker sends to an endpoint one
    # request at a time, so the number of workers is the cap).
    "MAX_CONCURRENCY": None,
    # Threads one worker uses to send a batch: one endpoint per thread, so a slow endpoint
    # never holds up the others (1: one request at a time).
    "SEND_CONCURRENCY": 8,
    # Circuit breaker: after this many failed attempts in a row an endpoint is paused
    # (None: never); then one probe request at a time until one succeeds.
    "CIRCUIT_BREAKER_THRESHOLD": 5,
    # The first pause, in seconds; a longer failure pauses longer, up to the maximum.
    "CIRCUIT_BREAKER_COOLDOWN": 10.0,
    "CIRCUIT_BREAKER_MAX_COOLDOWN": 600.0,
    # Longest pause a receiver's 429 Retry-After can impose on its endpoint, in seconds.
    "MAX_THROTTLE_PAUSE": 3600.0,
    # Response bytes read from a receiver (the rest is not read) and stored on the attempt.
    "MAX_RESPONSE_BYTES": 64 * 1024,
    "STORED_RESPONSE_BYTES": 20_000,
    # Longest endpoint URL accepted.
    "MAX_URL_LENGTH": 2048,
    # Largest event body (bytes of JSON); a larger event fails clearly, it is never truncated.
    "MAX_PAYLOAD_BYTES": 256 * 1024,
    # Custom headers per endpoint, and the longest value of one.
    "MAX_HEADERS": 20,
    "MAX_HEADER_LENGTH": 2048,
    # Endpoints one owner (user) may have; site-wide endpoints are not counted. None: no cap.
    "MAX_ENDPOINTS_PER_OWNER": 20,
    # Seconds a rotated-out secret keeps signing alongside the new one (at most 7 days).
    "SECRET_ROTATION_GRACE": 24 * 3600,
    # How far back (seconds) a replay of an endpoint's missed and failed deliveries may go.
    "REPLAY_WINDOW": 14 * 24 * 3600,
    # Minutes between two runs of the sweep that recovers lost tasks and due retries.
    "SWEEP_INTERVAL": 1,
    # Name of the django-q2 cluster that runs our tasks (None: the default cluster).
    "TASK_CLUSTER": None,
    # REST API (webhooks.api): DRF permission classes (dotted paths) of every API view.
    # Whatever they say, the API only ever shows a user their own objects.
    "API_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # REST API: example ``data`` per event type for the event-types catalog, for custom
    # events (model events get theirs from their serializer): {"invoice.paid": {...}}.
    "EVENT_EXAMPLES": {},
    # Prometheus metrics (webhooks.metrics; needs the "metrics" extra, prometheus-client).
    "METRICS": False,
    # Retention (webhooks.retention). Days a finished delivery is kept, with its attempts,
    # per status (counted from its creation and its last attempt); None keeps that status
    # forever. Pending deliveries are never pruned. Keys left out keep these defaults.
    "RETENTION": {"succeeded": 30, "failed": 90},
    # Days an event is kept; after that it goes once it has no delivery left. None: forever.
    "EVENT_RETENTION": 30,
    # Days an attempt keeps the response body and headers it stored (then they are blanked
    # and the attempt row stays). None: as long as the attempt.
    "RESPONSE_RETENTION": 14,
    # Minutes between two scheduled prunes (set up by ``migrate``); None or 0: no schedule.
    "PRUNE_INTERVAL": 60,
    # Rows deleted or blanked per statement (each batch is its own short transaction).
    "PRUNE_BATCH_SIZE": 1000,
}


#: The longest grace period a rotated secret can have, whatever the settings say.
MAX_ROTATION_GRACE = 7 * 24 * 3600


class WebhooksSettings:
    """Typed view of ``settings.WEBHOOKS``, read on every access so ``override_settings`` works."""

    @property
    def user_settings(self) -> Mapping[str, Any]:
        value = getattr(settings, "WEBHOOKS", None)
        return value if isinstance(value, Mapping) else {}

    def get(self, key: str) -> Any:
        return self.user_settings.get(key, DEFAULTS[key])

    @property
    def MODELS(self) -> Mapping[str, Mapping[str, Any]]:
        return self.get("MODELS") or {}

    @property
    def EVENTS(self) -> Mapping[str, str]:
        return self.get("EVENTS") or {}

    @property
    def RETRY_SCHEDULE(self) -> Sequence[float]:
        return self.get("RETRY_SCHEDULE")

    @property
    def RETRY_JITTER(self) -> float:
        return float(self.get("RETRY_JITTER"))

    @property
    def TIMEOUT(self) -> float:
        return float(self.get("TIMEOUT"))

    @property
    def CONNECT_TIMEOUT(self) -> float:
        return min(float(self.get("CONNECT_TIMEOUT")), self.TIMEOUT)

    @property
    def READ_TIMEOUT(self) -> float:
        return min(float(self.get("READ_TIMEOUT")), self.TIMEOUT)

    @property
    def ALLOWED_NETWORKS(self) -> Sequence[str]:
        return self.get("ALLOWED_NETWORKS") or []

    @property
    def REQUIRE_HTTPS(self) -> bool:
        return bool(self.get("REQUIRE_HTTPS"))

    @property
    def ENCRYPTION_KEYS(self) -> Sequence[str]:
        return self.get("ENCRYPTION_KEYS") or []

    @property
    def CA_BUNDLE(self) -> str | None:
        return self.get("CA_BUNDLE")

    @property
    def BATCH_SIZE(self) -> int:
        return int(self.get("BATCH_SIZE"))

    @property
    def CLAIM_TTL(self) -> float:
        return float(self.get("CLAIM_TTL"))

    @property
    def TASK_TIME_LIMIT(self) -> float:
        return float(self.get("TASK_TIME_LIMIT"))

    @property
    def DISABLE_AFTER(self) -> float:
        return float(self.get("DISABLE_AFTER"))

    @property
    def DISABLE_AFTER_FAILURES(self) -> int:
        return int(self.get("DISABLE_AFTER_FAILURES"))

    @property
    def MAX_CONCURRENCY(self) -> int | None:
        value = self.get("MAX_CONCURRENCY")
        return None if value is None else int(value)

    @property
    def SEND_CONCURRENCY(self) -> int:
        return int(self.get("SEND_CONCURRENCY"))

    @property
    def CIRCUIT_BREAKER_THRESHOLD(self) -> int | None:
        value = self.get("CIRCUIT_BREAKER_THRESHOLD")
        return None if value is None else int(value)

    @property
    def CIRCUIT_BREAKER_COOLDOWN(self) -> float:
        return float(self.get("CIRCUIT_BREAKER_COOLDOWN"))

    @property
    def CIRCUIT_BREAKER_MAX_COOLDOWN(self) -> float:
        return max(float(self.get("CIRCUIT_BREAKER_MAX_COOLDOWN")),
                   self.CIRCUIT_BREAKER_COOLDOWN)

    @property
    def MAX_THROTTLE_PAUSE(self) -> float:
        return float(self.get("MAX_THROTTLE_PAUSE"))

    @property
    def MAX_RESPONSE_BYTES(self) -> int:
        return int(self.get("MAX_RESPONSE_BYTES"))

    @property
    def STORED_RESPONSE_BYTES(self) -> int:
        return min(int(self.get("STORED_RESPONSE_BYTES")), self.MAX_RESPONSE_BYTES)

    @property
    def MAX_URL_LENGTH(self) -> int:
        return int(self.get("MAX_URL_LENGTH"))

    @property
    def MAX_PAYLOAD_BYTES(self) -> int:
        return int(self.get("MAX_PAYLOAD_BYTES"))

    @property
    def MAX_HEADERS(self) -> int:
        return int(self.get("MAX_HEADERS"))

    @property
    def MAX_HEADER_LENGTH(self) -> int:
        return int(self.get("MAX_HEADER_LENGTH"))

    @property
    def MAX_ENDPOINTS_PER_OWNER(self) -> int | None:
        value = self.get("MAX_ENDPOINTS_PER_OWNER")
        return None if value is None else int(value)

    @property
    def SECRET_ROTATION_GRACE(self) -> float:
        return min(float(self.get("SECRET_ROTATION_GRACE")), MAX_ROTATION_GRACE)

    @property
    def REPLAY_WINDOW(self) -> int:
        return int(self.get("REPLAY_WINDOW"))

    @property
    def SWEEP_INTERVAL(self) -> int:
        return int(self.get("SWEEP_INTERVAL"))

    @property
    def TASK_CLUSTER(self) -> str | None:
        return self.get("TASK_CLUSTER")

    @property
    def API_PERMISSION_CLASSES(self) -> Sequence[str]:
        return self.get("API_PERMISSION_CLASSES") or []

    @property
    def EVENT_EXAMPLES(self) -> Mapping[str, Any]:
        return self.get("EVENT_EXAMPLES") or {}

    @property
    def METRICS(self) -> bool:
        return bool(self.get("METRICS"))

    @property
    def RETENTION(self) -> Mapping[str, float | None]:
        """Days to keep finished deliveries per status: the user's keys over the defaults."""
        return {**DEFAULTS["RETENTION"], **(self.get("RETENTION") or {})}

    @property
    def EVENT_RETENTION(self) -> float | None:
        value = self.get("EVENT_RETENTION")
        return None if value is None else float(value)

    @property
    def RESPONSE_RETENTION(self) -> float | None:
        value = self.get("RESPONSE_RETENTION")
        return None if value is None else float(value)

    @property
    def PRUNE_INTERVAL(self) -> int | None:
        """Minutes between scheduled prunes; ``None`` when the schedule is off."""
        return int(self.get("PRUNE_INTERVAL") or 0) or None

    @property
    def PRUNE_BATCH_SIZE(self) -> int:
        return int(self.get("PRUNE_BATCH_SIZE"))

    @property
    def max_task_seconds(self) -> float:
        """Upper bound of how long one delivery task runs (last batch started at the limit)."""
        return self.TASK_TIME_LIMIT + self.CLAIM_TTL


webhooks_settings = WebhooksSettings()
