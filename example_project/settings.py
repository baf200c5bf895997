"""Settings of the demo site.

Read from the environment (django-environ), with defaults that work on a laptop:

- ``DATABASE_URL``: any database URL; default a SQLite file, ``var/demo.sqlite3``.
- ``REDIS_URL``: when set, django-q2 uses Redis as its broker; otherwise the database.
- ``DEBUG`` (default on), ``SECRET_KEY`` (a development key), ``ALLOWED_HOSTS``.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any

import environ

import webhooks

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default="django-insecure-demo-key-do-not-use-in-production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "rest_framework",
    "webhooks",
    "example_project.shop",
    "example_project.receiver",
]
# The OpenAPI schema and its Swagger UI / Redoc pages (from local static files, no CDN).
HAS_SCHEMA = find_spec("drf_spectacular") is not None and \
    find_spec("drf_spectacular_sidecar") is not None
if HAS_SCHEMA:
    INSTALLED_APPS += ["drf_spectacular", "drf_spectacular_sidecar"]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database ----------------------------------------------------------------------------------

VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'demo.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # runserver and the qcluster workers all write to the file: wait for the lock instead of
    # failing, and take it at the start of each transaction so that none has to be retried.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- task queue (django-q2): run it with `python manage.py qcluster` ---------------------------

REDIS_URL = env.str("REDIS_URL", default="")
Q_CLUSTER: dict[str, Any] = {
    "name": "demo",
    "workers": 2,
    "timeout": 120,
    "retry": 180,
    "save_limit": 100,
    "catch_up": False,
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER.update({"orm": "default", "poll": 0.2})

def _dev_key() -> str:
    """A development encryption key, generated on first use and kept in var/ (git-ignored)."""
    from cryptography.fernet import Fernet

    path = VAR_DIR / "encryption.key"
    if not path.exists():
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    return path.read_text().strip()


# --- webhooks ----------------------------------------------------------------------------------

# Organizations own webhook endpoints and events, not single users: every member of an
# organization manages the same endpoints (docs/owners.md). Chosen before the first migrate.
WEBHOOKS_OWNER_MODEL = "shop.Organization"

WEBHOOKS = {
    # Model events, declared without code: order.created, order.updated, order.deleted, ...
    "MODELS": {
        "shop.Order": {
            "events": ["created", "updated", "deleted"],
            "serializer": "example_project.shop.serializers.OrderSerializer",
            # An order's events go to its organization's endpoints (and to site-wide ones).
            "owner": "organization",
            # order.shipped: an order's own event, sent from code with
            # webhooks.send_model_event(order, "shipped") (the admin's "Mark as shipped").
            "actions": ["shipped"],
            "description": {"shipped": "An order left the warehouse."},
        },
        "shop.Product": {"events": ["created", "updated"]},
    },
    # Custom events, sent from code with webhooks.send_event(), each with a description and
    # (optional) the JSON Schema of its data: event-types/ and the OpenAPI document publish it.
    "EVENTS": {
        "invoice.paid": {
            "description": "An invoice was paid.",
            "schema": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "integer", "description": "The order paid for."},
                    "amount": {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2}$",
                               "description": "The amount paid, a decimal string."},
                },
                "required": ["order_id", "amount"],
                "examples": [{"order_id": 42, "amount": "19.90"}],
            },
        },
    },
    # Whom the REST API acts for: the organization the X-Organization header picks among the
    # user's memberships, else the user's first one.
    "API_OWNER": "example_project.shop.owners.request_organization",
    # Development escape hatch: the demo receiver lives on this very site, on the loopback
    # address, which the SSRF guard refuses by default. Keep this empty in production.
    "ALLOWED_NETWORKS": ["127.0.0.1/32"],
    # Quick retries, so that the demo shows them without waiting for hours.
    "RETRY_SCHEDULE": [5, 30, 120],
    # Endpoint secrets and custom headers are encrypted at rest. In production the keys come
    # from the environment; the demo makes its own development key once, in var/.
    "ENCRYPTION_KEYS": env.list("WEBHOOKS_ENCRYPTION_KEYS", default=[]) or [_dev_key()],
}

# --- the REST API (webhooks.api) ---------------------------------------------------------------

REST_FRAMEWORK: dict[str, Any] = {
    # The webhooks API uses whatever the site configured. The demo takes sessions (the
    # browsable API and Swagger UI after logging in to the admin) and HTTP Basic (curl, see
    # docs/api.md); a real site would rather use tokens (TokenAuthentication, OAuth, ...).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    # Scopes of the webhooks API: every request, and the ones that send (test/replay/retry).
    # These are the defaults; set a scope to None to switch it off.
    "DEFAULT_THROTTLE_RATES": {"webhooks": "120/minute", "webhooks_send": "10/minute"},
}
if HAS_SCHEMA:
    REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] = "drf_spectacular.openapi.AutoSchema"
SPECTACULAR_SETTINGS = {
    "TITLE": "Demo shop: webhooks API",
    "DESCRIPTION": "Register your webhook endpoints, read your delivery log, replay, rotate "
                   "your signing secret. See docs/api.md.",
    "VERSION": webhooks.__version__,
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # OpenAPI 3.1, so that the document can list the webhooks we send (one per event type,
    # with the JSON Schema of its body): Swagger UI and Redoc show them in their own section.
    "OAS_VERSION": "3.1.0",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "webhooks.api.schema.event_webhooks"],
}

# --- the rest ----------------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"webhooks": {"handlers": ["console"], "level": "INFO"}},
}
