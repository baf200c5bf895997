from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings

from webhooks.checks import check_catalog, check_settings, check_task_queue
from webhooks.conf import webhooks_settings


def ids_of(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def all_checks() -> list[str]:
    return ids_of(check_settings() + check_catalog() + check_task_queue())


@override_settings(DEBUG=True)
def test_the_test_settings_pass() -> None:
    assert all_checks() == []


@override_settings(WEBHOOKS=["not", "a", "dict"])
def test_webhooks_must_be_a_dict() -> None:
    assert all_checks() == ["webhooks.E001"]


@override_settings(WEBHOOKS={"RETRY_SHEDULE": [1]})
def test_unknown_key_is_an_error_with_the_valid_keys_as_hint() -> None:
    (message,) = check_settings()
    assert message.id == "webhooks.E002"
    assert "RETRY_SCHEDULE" in message.hint


@pytest.mark.parametrize("key,value", [
    ("RETRY_SCHEDULE", [5, -1]),
    ("RETRY_SCHEDULE", "5,10"),
    ("RETRY_SCHEDULE", [5, "10"]),
    ("TIMEOUT", 0),
    ("TIMEOUT", "10"),
    ("BATCH_SIZE", 2.5),
    ("REQUIRE_HTTPS", "yes"),
    ("ALLOWED_NETWORKS", "127.0.0.1/32"),
    ("ALLOWED_NETWORKS", ["not-a-network"]),
    ("RETRY_JITTER", 2),
    ("TASK_CLUSTER", ""),
    ("EVENTS", {"a.b": 3}),
])
def test_bad_values_are_errors(key: str, value: Any) -> None:
    with override_settings(WEBHOOKS={key: value}):
        assert "webhooks.E003" in ids_of(check_settings())


@override_settings(WEBHOOKS={"RETRY_SCHEDULE": []})
def test_an_empty_retry_schedule_is_allowed() -> None:
    assert check_settings() == []


@override_settings(WEBHOOKS={"TIMEOUT": 30, "CLAIM_TTL": 20})
def test_claim_must_outlast_an_attempt() -> None:
    assert ids_of(check_settings()) == ["webhooks.E004"]


@override_settings(WEBHOOKS={"ALLOWED_NETWORKS": ["10.0.0.0/8"]}, DEBUG=False)
def test_allowed_networks_in_production_warns() -> None:
    assert ids_of(check_settings()) == ["webhooks.W001"]


@pytest.mark.parametrize("models,fragment", [
    ({"nope.Model": {}}, "not an installed model"),
    ({"testapp.Order": {"events": ["paid"]}}, "must be a non-empty list"),
    ({"testapp.Order": {"events": "created"}}, "must be a non-empty list"),
    ({"testapp.Order": {"serializer": "tests.testapp.nope.Serializer"}}, "cannot be imported"),
    ({"testapp.Order": {"serializer": "tests.testapp.models.Order"}}, "not a DRF serializer"),
    ({"testapp.Order": {"owner": "buyer"}}, "has no field 'buyer'"),
    ({"testapp.Order": {"owner": "status"}}, "not a foreign key"),
    ({"testapp.LineItem": {"owner": "order"}}, "must end at the owner model auth.User"),
    ({"testapp.Order": {"colour": "red"}}, "unknown options"),
    ({"testapp.Order": {"name": "Bad Name"}}, "lowercase"),
    ({"webhooks.Delivery": {}}, "without end"),
])
def test_bad_model_declarations_are_errors(models: dict[str, Any], fragment: str) -> None:
    with override_settings(WEBHOOKS={"MODELS": models}):
        (message,) = check_catalog()
        assert message.id == "webhooks.E010"
        assert fragment in message.msg


@pytest.mark.parametrize("webhooks", [
    {"EVENTS": {"NotDotted": "x"}},
    {"EVENTS": {"order.created": "x"}, "MODELS": {"testapp.Order": {}}},
])
def test_bad_or_duplicate_event_types_are_errors(webhooks: dict[str, Any]) -> None:
    with override_settings(WEBHOOKS=webhooks):
        assert ids_of(check_catalog()) == ["webhooks.E011"]


def test_django_q_timeouts_must_cover_our_tasks() -> None:
    longest = webhooks_settings.max_task_seconds
    with override_settings(Q_CLUSTER={"timeout": longest - 1, "retry": longest + 10}):
        assert ids_of(check_task_queue()) == ["webhooks.E021"]
    with override_settings(Q_CLUSTER={"timeout": longest + 5, "retry": longest + 5}):
        [error] = check_task_queue()
        assert error.id == "webhooks.E022"
        assert f"not greater than Q_CLUSTER['timeout'] ({longest + 5}s)" in error.msg
    with override_settings(Q_CLUSTER={"retry": 60},
                           WEBHOOKS={"CLAIM_TTL": 60, "TASK_TIME_LIMIT": 10}):
        assert ids_of(check_task_queue()) == ["webhooks.E022"]


def test_django_q_must_be_installed(settings: Any) -> None:
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "django_q"]
    assert ids_of(check_task_queue()) == ["webhooks.E020"]


@pytest.mark.django_db
def test_migrations_are_complete() -> None:
    call_command("makemigrations", "webhooks", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_migrating_webhooks_before_django_q_does_not_crash() -> None:
    from django.db import connection
    from django_q.models import Schedule

    call_command("migrate", "django_q", "zero", verbosity=0)
    assert Schedule._meta.db_table not in connection.introspection.table_names()
    call_command("migrate", "webhooks", verbosity=0)  # post_migrate runs; no schedule table
    call_command("migrate", verbosity=0)
    assert Schedule.objects.filter(name="webhooks.sweep").exists()


def test_api_permission_classes_must_import() -> None:
    from tests.helpers import override_webhooks

    with override_webhooks(API_PERMISSION_CLASSES=["rest_framework.permissions.Nope"]):
        assert "webhooks.E005" in ids_of(check_settings())


def test_default_descriptions_read_well() -> None:
    from webhooks.events.catalog import get_catalog

    assert get_catalog().types["order.created"].description == "An order was created."
    assert get_catalog().types["product.created"].description == "A product was created."


@pytest.mark.parametrize("key,value", [
    ("RETENTION", {"pending": 30}),
    ("RETENTION", {"succeeded": 0}),
    ("RETENTION", {"failed": "90"}),
    ("RETENTION", [30, 90]),
    ("EVENT_RETENTION", -1),
    ("RESPONSE_RETENTION", "14"),
    ("PRUNE_INTERVAL", 1.5),
    ("PRUNE_INTERVAL", -5),
    ("PRUNE_BATCH_SIZE", 0),
    ("PRUNE_BATCH_SIZE", 50_000),
])
def test_bad_retention_settings_are_errors(key: str, value: Any) -> None:
    with override_settings(WEBHOOKS={key: value}):
        (message,) = check_settings()
        assert message.id == "webhooks.E003" and key in message.msg


def test_pending_retention_is_refused_with_a_reason() -> None:
    with override_settings(WEBHOOKS={"RETENTION": {"pending": 30}}):
        (message,) = check_settings()
        assert "pending deliveries are never pruned" in message.hint


@pytest.mark.parametrize("webhooks", [
    {"RETENTION": {"failed": None}, "EVENT_RETENTION": None, "RESPONSE_RETENTION": 0.5},
    {"RETENTION": {}, "PRUNE_INTERVAL": None},
    {"PRUNE_INTERVAL": 0, "PRUNE_BATCH_SIZE": 10_000},
])
def test_good_retention_settings_pass(webhooks: dict[str, Any]) -> None:
    with override_settings(WEBHOOKS=webhooks):
        assert check_settings() == []
    with override_settings(WEBHOOKS={"RETENTION": {"failed": None}}):
        assert webhooks_settings.RETENTION == {"succeeded": 30, "failed": None}
        assert webhooks_settings.PRUNE_INTERVAL == 60
    with override_settings(WEBHOOKS={"PRUNE_INTERVAL": 0}):
        assert webhooks_settings.PRUNE_INTERVAL is None


# --- checks a user can act on (issue 15) --------------------------------------------------------


@pytest.mark.parametrize("key,suggestion", [
    ("RETRY_SHEDULE", "RETRY_SCHEDULE"),
    ("retry_schedule", "RETRY_SCHEDULE"),
    ("TIMEOUTS", "TIMEOUT"),
    ("ENCRYPTION_KEY", "ENCRYPTION_KEYS"),
])
def test_a_misspelt_key_suggests_the_closest_valid_one(key: str, suggestion: str) -> None:
    with override_settings(WEBHOOKS={key: 1}):
        (message,) = check_settings()
    assert message.id == "webhooks.E002"
    assert message.hint.startswith(f"Did you mean {suggestion!r}?"), message.hint


def test_the_owner_model_inside_webhooks_points_to_its_own_setting() -> None:
    with override_settings(WEBHOOKS={"OWNER_MODEL": "accounts.Organization"}):
        (message,) = check_settings()
    assert message.hint.startswith("Did you mean 'WEBHOOKS_OWNER_MODEL'?")


def test_an_unknown_key_like_no_other_lists_the_valid_ones() -> None:
    with override_settings(WEBHOOKS={"XYZZY": 1}):
        (message,) = check_settings()
    assert message.hint.startswith("Valid keys: ") and "RETRY_SCHEDULE" in message.hint


def test_the_api_urls_need_rest_framework_installed(settings: Any) -> None:
    from webhooks.checks import check_api_urls

    assert check_api_urls() == []  # tests/urls.py includes the API; DRF is installed
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "rest_framework"]
    (message,) = check_api_urls()
    assert message.id == "webhooks.E060"
    assert "'rest_framework'" in message.hint
    settings.ROOT_URLCONF = "tests.receiving_urls"  # no API there: nothing to say
    assert check_api_urls() == []
    settings.ROOT_URLCONF = "tests.no_such_urls"  # Django's own url checks report this one
    assert check_api_urls() == []


def test_the_api_urls_check_runs_with_manage_py_check(settings: Any) -> None:
    from django.core.management.base import SystemCheckError

    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "rest_framework"]
    with pytest.raises(SystemCheckError, match=r"webhooks\.E060"):
        call_command("check", "--tag", "urls")


@pytest.mark.django_db
def test_keys_that_cannot_decrypt_the_stored_secrets_are_a_database_check_error() -> None:
    from django.core.management.base import SystemCheckError

    from tests.factories import make_endpoint
    from tests.helpers import override_webhooks
    from webhooks.checks import check_stored_secrets
    from webhooks.encryption import generate_key

    assert check_stored_secrets(databases=["default"]) == []  # no endpoint yet
    make_endpoint("https://example.com/h")
    assert check_stored_secrets(databases=["default"]) == []
    with override_webhooks(ENCRYPTION_KEYS=[generate_key()]):
        (message,) = check_stored_secrets(databases=["default"])
        assert message.id == "webhooks.E032"
        assert "webhooks_reencrypt" in message.hint
        # Like Django's database checks: only with `check --database` (and `migrate`).
        assert check_stored_secrets() == []
        call_command("check", verbosity=0)
        with pytest.raises(SystemCheckError, match=r"webhooks\.E032"):
            call_command("check", "--database", "default", verbosity=0)
    with override_webhooks(ENCRYPTION_KEYS=["not-a-fernet-key"]):  # E031 says why
        assert check_stored_secrets(databases=["default"]) == []


@pytest.mark.parametrize("database_url,manage_py", [
    ("sqlite:///{tmp}/fresh.sqlite3", True),  # before the first migrate: no tables
    # A database that cannot be reached (Django's own `check --database` fails on it).
    ("sqlite:///{tmp}/no/such/dir/db.sqlite3", False),
])
def test_the_stored_secrets_check_never_breaks_manage_py(
    database_url: str, manage_py: bool, tmp_path: Any,
) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "DATABASE_URL": database_url.format(tmp=tmp_path),
           "DJANGO_SETTINGS_MODULE": "tests.settings"}
    script = ("import django; django.setup(); from webhooks.checks import check_stored_secrets; "
              "print(check_stored_secrets(databases=['default']))")
    done = subprocess.run([sys.executable, "-c", script], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
    if manage_py:
        done = subprocess.run(
            [sys.executable, "-m", "django", "check", "--database", "default"],
            cwd=root, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
