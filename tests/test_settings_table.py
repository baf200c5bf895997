"""The settings table in webhooks/conf.py: its defaults, its checks and its generated docs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from webhooks import conf
from webhooks.conf import SETTINGS, WebhooksSettings, webhooks_settings

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
REGENERATE = "python -m webhooks.conf docs/configuration.md"

#: The defaults as they were before the table (the DEFAULTS dict of conf.py): none may change.
FORMER_DEFAULTS: dict[str, Any] = {
    "MODELS": {},
    "EVENTS": {},
    # Issue 14 changed it (was [5, 300, 1800, 7200, 18000, 36000, 36000], about 28 hours):
    # retries now span more than 3 days, as Standard Webhooks recommends.
    "RETRY_SCHEDULE": [5, 300, 1800, 7200, 18000, 36000, 43200, 43200, 43200, 43200, 43200],
    "RETRY_JITTER": 0.1,
    "TIMEOUT": 15.0,
    "CONNECT_TIMEOUT": 5.0,
    "READ_TIMEOUT": 10.0,
    "ALLOWED_NETWORKS": [],
    "REQUIRE_HTTPS": False,
    "ENCRYPTION_KEYS": [],
    "CA_BUNDLE": None,
    "BATCH_SIZE": 100,
    "CLAIM_TTL": 45.0,
    "TASK_TIME_LIMIT": 10.0,
    "DISABLE_AFTER": 5 * 24 * 3600,
    "DISABLE_AFTER_FAILURES": 10,
    "MAX_CONCURRENCY": None,
    "SEND_CONCURRENCY": 8,
    "CIRCUIT_BREAKER_THRESHOLD": 5,
    "CIRCUIT_BREAKER_COOLDOWN": 10.0,
    "CIRCUIT_BREAKER_MAX_COOLDOWN": 600.0,
    "MAX_THROTTLE_PAUSE": 3600.0,
    "MAX_RESPONSE_BYTES": 64 * 1024,
    "STORED_RESPONSE_BYTES": 20_000,
    "MAX_URL_LENGTH": 2048,
    "MAX_PAYLOAD_BYTES": 256 * 1024,
    "MAX_HEADERS": 20,
    "MAX_HEADER_LENGTH": 2048,
    "MAX_ENDPOINTS_PER_OWNER": 20,
    "SECRET_ROTATION_GRACE": 24 * 3600,
    "REPLAY_WINDOW": 14 * 24 * 3600,
    "SWEEP_INTERVAL": 1,
    "TASK_CLUSTER": None,
    "API_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EVENT_EXAMPLES": {},
    "METRICS": False,
    "RETENTION": {"succeeded": 30, "failed": 90},
    "EVENT_RETENTION": 30,
    "RESPONSE_RETENTION": 14,
    "PRUNE_INTERVAL": 60,
    "PRUNE_BATCH_SIZE": 1000,
}


def test_the_committed_reference_matches_the_table() -> None:
    committed = REFERENCE.read_text(encoding="utf-8")
    assert committed.count(conf.REFERENCE_START) == 1
    assert committed.count(conf.REFERENCE_END) == 1
    if conf.with_reference(committed) != committed:
        pytest.fail(f"docs/configuration.md is out of date with webhooks/conf.py; run: "
                    f"{REGENERATE}", pytrace=False)


#: Settings added since the table was introduced (each with its release's changelog entry).
ADDED = {"API_OWNER": None, "NOTIFY_BY_EMAIL": True, "NOTIFY_FAILING_AFTER": 3600,
         "OWNER_EMAILS": None, "SITE_EMAILS": None, "NOTIFY_LINK": None,
         "MAX_RESPONSE_HEADER_BYTES": 16 * 1024, "MAX_RESPONSE_HEADERS": 100,
         # Issue 17: the payload encoder, CloudEvents, and the webhook-endpoint header.
         "JSON_ENCODER": "django.core.serializers.json.DjangoJSONEncoder",
         "CLOUDEVENTS_SOURCE": None, "CLOUDEVENTS_TYPE_PREFIX": "", "ENDPOINT_HEADER": False}


def test_every_former_key_is_in_the_table_with_the_same_default() -> None:
    assert set(SETTINGS) == set(FORMER_DEFAULTS) | set(ADDED)
    for key, default in FORMER_DEFAULTS.items():
        assert SETTINGS[key].default == default, key
        assert type(SETTINGS[key].default) is type(default), key
    assert dict(conf.DEFAULTS) == {**FORMER_DEFAULTS, **ADDED}


def test_every_setting_is_declared_whole() -> None:
    for key, setting in SETTINGS.items():
        assert setting.name == key
        assert getattr(WebhooksSettings, key) is setting
        assert setting.doc and setting.expected, key
        assert setting.valid(setting.default), f"the default of {key} fails its own check"


@override_settings(WEBHOOKS={})
def test_every_default_reads_as_its_typed_value() -> None:
    values = {key: getattr(webhooks_settings, key) for key in SETTINGS}
    assert values["TIMEOUT"] == 15.0 and isinstance(values["TIMEOUT"], float)
    assert values["BATCH_SIZE"] == 100 and isinstance(values["BATCH_SIZE"], int)
    assert values["MAX_CONCURRENCY"] is None
    assert values["RETENTION"] == {"succeeded": 30, "failed": 90}
    assert webhooks_settings.max_task_seconds == 55.0


@pytest.mark.parametrize("webhooks,key,expected", [
    ({"TIMEOUT": 3, "CONNECT_TIMEOUT": 5}, "CONNECT_TIMEOUT", 3.0),
    ({"TIMEOUT": 3, "READ_TIMEOUT": 10}, "READ_TIMEOUT", 3.0),
    ({"MAX_RESPONSE_BYTES": 100}, "STORED_RESPONSE_BYTES", 100),
    ({"CIRCUIT_BREAKER_COOLDOWN": 900}, "CIRCUIT_BREAKER_MAX_COOLDOWN", 900.0),
    ({"SECRET_ROTATION_GRACE": 10**7}, "SECRET_ROTATION_GRACE", float(conf.MAX_ROTATION_GRACE)),
    ({"RETENTION": {"failed": None}}, "RETENTION", {"succeeded": 30, "failed": None}),
    ({"PRUNE_INTERVAL": 0}, "PRUNE_INTERVAL", None),
    ({"MODELS": None}, "MODELS", {}),
])
def test_coercions_and_caps_apply_at_read_time(webhooks: dict[str, Any], key: str,
                                               expected: Any) -> None:
    with override_settings(WEBHOOKS=webhooks):
        assert getattr(webhooks_settings, key) == expected
    assert getattr(webhooks_settings, key) != expected  # back to the test settings


def test_a_setting_cannot_be_assigned() -> None:
    with pytest.raises(AttributeError, match="in the Django settings"):
        webhooks_settings.TIMEOUT = 1.0  # type: ignore[assignment]


def test_the_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert conf.main([]) == 0
    printed = capsys.readouterr().out
    assert printed == conf.settings_reference_markdown()
    assert printed.count("\n") == len(SETTINGS) + 2
    assert "| `CONNECT_TIMEOUT` | `5` |" in printed
    assert "| `DISABLE_AFTER` | `432000` (5 days) |" in printed
