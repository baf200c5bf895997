"""Settings for the test suite.

``DATABASE_URL`` picks the database (SQLite by default); ``REDIS_URL`` switches django-q2 to the
Redis broker. End-to-end tests start ``qcluster`` subprocesses with ``WEBHOOKS_TEST_ASYNC=1``
and the test database's name in ``WEBHOOKS_TEST_DB_NAME``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent
env = environ.Env()

SECRET_KEY = "tests-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_q",
    "rest_framework",
    "webhooks",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]

# TEST_DB_SUFFIX lets several test runs share a machine without sharing a database.
_suffix = os.environ.get("TEST_DB_SUFFIX", "")
_sqlite_path = BASE_DIR.parent / "var" / "tests.sqlite3"
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{_sqlite_path}")}
_db = DATABASES["default"]
if _suffix and not _db["ENGINE"].endswith("sqlite3"):
    _db["TEST"] = {"NAME": f"test_{_db['NAME']}{_suffix}"}
if _db["ENGINE"].endswith("sqlite3"):
    # A file, not memory: qcluster subprocesses must see the test database.
    _db["TEST"] = {"NAME": str(BASE_DIR.parent / "var" / f"test-db{_suffix}.sqlite3")}
    _db.setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
    _sqlite_path.parent.mkdir(exist_ok=True)
if os.environ.get("WEBHOOKS_TEST_DB_NAME"):
    # A qcluster subprocess started by a test: talk straight to the test database.
    _db["NAME"] = os.environ["WEBHOOKS_TEST_DB_NAME"]
    # Fault tests run some clusters with persistent, health-checked connections
    # (docs/production.md's advice) to show they survive a database restart too.
    _db["CONN_MAX_AGE"] = int(os.environ.get("WEBHOOKS_TEST_CONN_MAX_AGE", "0"))
    _db["CONN_HEALTH_CHECKS"] = os.environ.get("WEBHOOKS_TEST_CONN_HEALTH_CHECKS") == "1"

# One queue name per test session, inherited by qcluster subprocesses, so that leftovers of
# another run (in Redis) are never picked up.
os.environ.setdefault("WEBHOOKS_TEST_QUEUE", f"tests-{uuid.uuid4().hex[:8]}")
Q_CLUSTER = {
    "name": os.environ["WEBHOOKS_TEST_QUEUE"],
    # Fault tests (tests/test_faults.py) start clusters with more workers.
    "workers": int(os.environ.get("WEBHOOKS_TEST_WORKERS", "2")),
    "timeout": 60,
    "retry": 90,
    # tests/test_wakeup.py's on-time retries run with django-q2's default poll (0.2 s), no
    # scheduler (so that only the waker can be on time), and workers recycled after each task.
    "poll": float(os.environ.get("WEBHOOKS_TEST_POLL", "0.05")),
    "scheduler": os.environ.get("WEBHOOKS_TEST_SCHEDULER", "1") == "1",
    "recycle": int(os.environ.get("WEBHOOKS_TEST_RECYCLE", "500")),
    "guard_cycle": 0.1,
    "catch_up": False,
    "orm": "default",
    # Unit tests run tasks inline; e2e tests start real clusters with WEBHOOKS_TEST_ASYNC=1.
    "sync": os.environ.get("WEBHOOKS_TEST_ASYNC") != "1",
}
if os.environ.get("REDIS_URL"):
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["redis"] = os.environ["REDIS_URL"]

WEBHOOKS = {
    "MODELS": {
        "testapp.Order": {
            "events": ["created", "updated", "deleted"],
            "owner": "customer",
        },
        "testapp.Product": {
            "events": ["created"],
            "serializer": "tests.testapp.serializers.ProductSerializer",
        },
        "testapp.LineItem": {"events": ["created"], "owner": "order__customer"},
    },
    "EVENTS": {
        "invoice.paid": "An invoice was paid.",
        "ping.sent": "A ping.",
    },
    # Loopback receivers are the point of these tests.
    "ALLOWED_NETWORKS": ["127.0.0.0/8"],
    "RETRY_SCHEDULE": [int(s) if s.isdigit() else float(s) for s in
                       os.environ.get("WEBHOOKS_TEST_RETRY_SCHEDULE", "1,1").split(",")],
    "RETRY_JITTER": float(os.environ.get("WEBHOOKS_TEST_RETRY_JITTER", "0")),
    "TIMEOUT": 5,
    "CONNECT_TIMEOUT": 2,
    "CLAIM_TTL": 10,
    "TASK_TIME_LIMIT": 5,
    "BATCH_SIZE": int(os.environ.get("WEBHOOKS_TEST_BATCH_SIZE", "100")),
    # Fixed test keys (never use these anywhere else): newest first.
    "ENCRYPTION_KEYS": ["uJz1c9m2iB8m1Vb3y1bW7sY4bm9JZ0p7dS8k2oWvQxQ=",
                        "Vqkq7uO2mGgTzq4pQ0r3b7gC3dD6yHq1a8KXbVtP1hY="],
}
SILENCED_SYSTEM_CHECKS = ["webhooks.W001"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"webhooks": {"handlers": ["console"], "level": "WARNING"}},
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_URL = "/static/"
# Owners' notification emails: kept in memory (the qcluster subprocesses of e2e tests too, which
# Django's test setup does not reach); tests/test_notifications.py also sends to a real SMTP
# server of its own.
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
