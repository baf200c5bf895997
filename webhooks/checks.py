"""System checks for the ``WEBHOOKS`` setting and the django-q2 settings it depends on.

Every problem has a stable id: ``webhooks.E0xx`` for errors, ``webhooks.W0xx`` for warnings.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from webhooks import owners
from webhooks.conf import SETTINGS, is_number, webhooks_settings
from webhooks.exceptions import WebhooksConfigurationError


def register() -> None:
    checks.register(check_settings, "webhooks")
    checks.register(check_encryption, "webhooks")
    checks.register(check_stored_secrets, "webhooks", checks.Tags.database)
    checks.register(check_api_urls, "webhooks", checks.Tags.urls)
    checks.register(check_deploy, "webhooks", deploy=True)
    checks.register(check_catalog, "webhooks")
    checks.register(check_task_queue, "webhooks")
    checks.register(check_owner_model, "webhooks")
    checks.register(check_notifications, "webhooks")
    checks.register(check_json_encoder, "webhooks")


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E001 not a dict, E002 unknown key, E003 bad value, E004/E005/W001 delivery settings."""
    raw = getattr(settings, "WEBHOOKS", {})
    if not isinstance(raw, Mapping):
        return [checks.Error("WEBHOOKS must be a dict.", id="webhooks.E001",
                             hint="WEBHOOKS = {'MODELS': {...}, 'EVENTS': {...}}")]
    errors: list[checks.CheckMessage] = []
    for key in raw:
        if key not in SETTINGS:
            errors.append(checks.Error(
                f"WEBHOOKS has an unknown key {key!r}.", id="webhooks.E002",
                hint=_unknown_key_hint(key)))
    bad = set()
    for key, setting in SETTINGS.items():
        if key in raw and not setting.valid(raw[key]):
            bad.add(key)
            errors.append(checks.Error(
                f"WEBHOOKS[{key!r}] = {raw[key]!r} is not valid.", id="webhooks.E003",
                hint=f"It must be {setting.expected}.",
            ))
    if "ALLOWED_NETWORKS" not in bad:
        for network in webhooks_settings.ALLOWED_NETWORKS:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                errors.append(checks.Error(
                    f"WEBHOOKS['ALLOWED_NETWORKS'] has {network!r}, which is not a network.",
                    id="webhooks.E003", hint="Use CIDR notation such as '10.0.0.0/8'.",
                ))
        if webhooks_settings.ALLOWED_NETWORKS and not settings.DEBUG:
            errors.append(checks.Warning(
                "WEBHOOKS['ALLOWED_NETWORKS'] lets deliveries reach private networks while "
                "DEBUG is off.", id="webhooks.W001",
                hint="Keep it empty in production unless the endpoints there are trusted.",
            ))
    if "API_PERMISSION_CLASSES" not in bad:
        for path in webhooks_settings.API_PERMISSION_CLASSES:
            try:
                import_string(path)
            except ImportError as exc:
                errors.append(checks.Error(
                    f"WEBHOOKS['API_PERMISSION_CLASSES'] has {path!r}, which cannot be "
                    f"imported: {exc}", id="webhooks.E005",
                    hint="Use dotted paths of DRF permission classes, such as "
                         "'rest_framework.permissions.IsAuthenticated'."))
    if not bad & {"CLAIM_TTL", "TIMEOUT"} and (
        webhooks_settings.CLAIM_TTL < webhooks_settings.TIMEOUT + 5
    ):
        errors.append(checks.Error(
            "WEBHOOKS['CLAIM_TTL'] must exceed WEBHOOKS['TIMEOUT'] by 5 seconds at least.",
            id="webhooks.E004",
            hint="A claim must outlast a whole attempt, or a second worker could send the "
                 "same delivery while the first is still waiting for an answer.",
        ))
    if not bad & {"MAX_RESPONSE_BYTES", "STORED_RESPONSE_BYTES"} and (
        raw.get("STORED_RESPONSE_BYTES", 0) > webhooks_settings.MAX_RESPONSE_BYTES
    ):
        errors.append(checks.Warning(
            "WEBHOOKS['STORED_RESPONSE_BYTES'] is larger than MAX_RESPONSE_BYTES; only "
            "MAX_RESPONSE_BYTES are read, so that is all that is stored.", id="webhooks.W002",
        ))
    return errors


def _unknown_key_hint(key: object) -> str:
    """The closest valid key to a misspelt one (any case), then every valid key."""
    valid = f"Valid keys: {', '.join(sorted(SETTINGS))}."
    if str(key).upper() in ("OWNER_MODEL", owners.SETTING):
        return f"Did you mean {owners.SETTING!r}? It is a setting of its own, next to WEBHOOKS."
    close = difflib.get_close_matches(str(key).upper(), SETTINGS, n=1, cutoff=0.75)
    return f"Did you mean {close[0]!r}? {valid}" if close else valid


def check_owner_model(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E070 ``WEBHOOKS_OWNER_MODEL`` names no installed model; E071 its primary key cannot be
    stored on our rows; E072 ``API_OWNER`` cannot be imported; W070 owners are not users and
    ``API_OWNER`` is not set (the REST API then answers 403 to everyone)."""
    label = owners.owner_model_label()
    hint = ("Set WEBHOOKS_OWNER_MODEL = 'app_label.ModelName' (a model of an installed app) "
            "before the first migrate, or leave it out to use the user model.")
    if not isinstance(label, str) or label.count(".") != 1:
        return [checks.Error(f"{owners.SETTING} = {label!r} is not of the form "
                             "'app_label.ModelName'.", id="webhooks.E070", hint=hint)]
    try:
        model = owners.get_owner_model()
    except WebhooksConfigurationError as exc:
        return [checks.Error(str(exc), id="webhooks.E070", hint=hint)]
    errors = owner_model_problems(model)
    path = _configured("API_OWNER")
    if path is not None:
        errors += function_problems("API_OWNER", path, "webhooks.E072",
                                    "Give the dotted path of a function(request).")
    elif apps.is_installed("rest_framework") and not owners.owner_is_user_model() and (
            not _bad("API_OWNER")):
        errors.append(checks.Warning(
            f"Owners are {label} ({owners.SETTING}) but WEBHOOKS['API_OWNER'] is not set: the "
            "REST API answers 403 to every request.", id="webhooks.W070",
            hint="Set WEBHOOKS['API_OWNER'] to a function(request) that returns the "
                 f"{model.__name__} the request acts for, or None."))
    return errors


def _configured(key: str) -> Any:
    """``WEBHOOKS[key]`` when it is set to a valid value, else ``None`` (missing, or a bad value
    that ``webhooks.E003`` reports)."""
    raw = getattr(settings, "WEBHOOKS", {})
    value = raw.get(key) if isinstance(raw, Mapping) else None
    return value if value is not None and SETTINGS[key].valid(value) else None


def _bad(key: str) -> bool:
    raw = getattr(settings, "WEBHOOKS", {})
    return isinstance(raw, Mapping) and key in raw and not SETTINGS[key].valid(raw[key])


def function_problems(key: str, path: str, check_id: str, hint: str,
                      ) -> list[checks.CheckMessage]:
    """``check_id`` when the setting ``key`` (a dotted path) cannot be imported or is not
    callable."""
    try:
        function = import_string(path)
    except ImportError as exc:
        return [checks.Error(f"WEBHOOKS[{key!r}] = {path!r} cannot be imported: {exc}",
                             id=check_id, hint=hint)]
    if not callable(function):
        return [checks.Error(f"WEBHOOKS[{key!r}] = {path!r} is not callable.", id=check_id,
                             hint=hint)]
    return []


def check_notifications(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E050: ``OWNER_EMAILS`` cannot be imported or is not callable."""
    path = _configured("OWNER_EMAILS")
    if path is None:
        return []
    return function_problems("OWNER_EMAILS", path, "webhooks.E050",
                             "Give the dotted path of a function(owner) that returns a list of "
                             "email addresses.")


def check_json_encoder(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E061: ``JSON_ENCODER`` cannot be imported, is not a ``json.JSONEncoder`` subclass, or
    cannot be built the way payloads build it."""
    path = _configured("JSON_ENCODER")
    if path is None:
        return []
    from webhooks.events.payloads import encoder_class, encoder_options

    hint = ("Give the dotted path of a json.JSONEncoder subclass, such as "
            "'django.core.serializers.json.DjangoJSONEncoder' (the default), whose default() "
            "handles your types.")
    try:
        encoder_class(path)(**encoder_options())
    except WebhooksConfigurationError as exc:
        return [checks.Error(str(exc), id="webhooks.E061", hint=hint)]
    except Exception as exc:  # its __init__ refuses the options every payload is built with
        return [checks.Error(f"WEBHOOKS['JSON_ENCODER'] = {path!r} cannot be built: {exc}",
                             id="webhooks.E061", hint=hint)]
    return []


def owner_model_problems(model: Any) -> list[checks.CheckMessage]:
    """E071: ``model`` cannot own rows: abstract, a proxy, or no single-column primary key."""
    pk = model._meta.pk
    if model._meta.abstract or model._meta.proxy or pk is None or (
            pk.get_internal_type() == "CompositePrimaryKey"):
        return [checks.Error(
            f"{owners.SETTING} = {model._meta.label!r}: endpoints and events need a concrete "
            "model with a single-column primary key.", id="webhooks.E071", obj=model,
            hint="Name the concrete model (not a proxy or abstract one); composite primary "
                 "keys are not supported.")]
    return []


def check_catalog(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E010: the ``MODELS``/``EVENTS`` catalog cannot be built (bad model, serializer,
    owner path, event name, or a type declared twice); E012/W010: see
    :func:`declared_schema_problems`."""
    raw = getattr(settings, "WEBHOOKS", {})
    if not isinstance(raw, Mapping) or any(
        k in raw and not SETTINGS[k].valid(raw[k]) for k in ("MODELS", "EVENTS")
    ):
        return []  # reported by check_settings
    from webhooks.events.catalog import build_catalog, parse_model_entry

    errors: list[checks.CheckMessage] = []
    for label, options in webhooks_settings.MODELS.items():
        try:
            parse_model_entry(label, options)
        except WebhooksConfigurationError as exc:
            errors.append(checks.Error(str(exc), id="webhooks.E010",
                                       hint=_MODELS_HINT, obj=label))
    if not errors:
        try:
            build_catalog()
        except WebhooksConfigurationError as exc:
            errors.append(checks.Error(str(exc), id="webhooks.E011",
                                       hint="Every event type must be unique and dotted."))
    return errors + declared_schema_problems()


def declared_schema_problems() -> list[checks.CheckMessage]:
    """E012: a custom event's ``"schema"`` is not a valid JSON Schema (draft 2020-12); W010:
    its ``EVENT_EXAMPLES`` entry does not match it."""
    from webhooks.events.catalog import custom_event_type

    declared = {name: schema for name, entry in webhooks_settings.EVENTS.items()
                if (schema := custom_event_type(str(name), entry).schema) is not None}
    if not declared:
        return []
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    from webhooks.events.schemas import DIALECT

    problems: list[checks.CheckMessage] = []
    examples = webhooks_settings.EVENT_EXAMPLES if not _bad("EVENT_EXAMPLES") else {}
    for name, schema in declared.items():
        where = f"WEBHOOKS['EVENTS'][{name!r}]['schema']"
        try:
            if str(schema.get("$schema", DIALECT)).rstrip("#") != DIALECT:
                raise SchemaError(f"$schema is {schema['$schema']!r}, not {DIALECT!r}")
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            problems.append(checks.Error(
                f"{where} is not a valid JSON Schema: {exc.message}", id="webhooks.E012",
                obj=name, hint="Give the JSON Schema (draft 2020-12, the dialect of OpenAPI "
                               "3.1) of the event's data, such as {'type': 'object', "
                               "'properties': {'amount': {'type': 'integer'}}}."))
            continue
        if name in examples:
            validator = Draft202012Validator(
                schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
            error = next(iter(validator.iter_errors(examples[name])), None)
            if error is not None:
                problems.append(checks.Warning(
                    f"WEBHOOKS['EVENT_EXAMPLES'][{name!r}] does not match {where}: "
                    f"{error.message}", id="webhooks.W010", obj=name,
                    hint="event-types/ shows this example to receivers: make it one."))
    return problems


_MODELS_HINT = ("Example: WEBHOOKS = {'MODELS': {'shop.Order': {'events': ['created', "
                "'updated', 'deleted'], 'serializer': 'shop.api.OrderSerializer', "
                "'owner': 'customer', 'actions': ['shipped', 'refunded']}}}")


def check_task_queue(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E020 django-q2 missing; E021/E022 its ``timeout``/``retry`` too short for our tasks."""
    if not apps.is_installed("django_q"):
        return [checks.Error(
            "django-webhooks delivers through django-q2, which is not installed.",
            id="webhooks.E020", hint="Add 'django_q' to INSTALLED_APPS.",
        )]
    q_cluster = getattr(settings, "Q_CLUSTER", {}) or {}
    if not isinstance(q_cluster, Mapping):
        return []
    errors: list[checks.CheckMessage] = []
    try:
        longest = webhooks_settings.max_task_seconds
    except (TypeError, ValueError):
        return []  # bad numbers are reported by check_settings
    timeout = q_cluster.get("timeout")
    retry = q_cluster.get("retry", 60)
    if timeout is not None and is_number(timeout) and timeout <= longest:
        errors.append(checks.Error(
            f"Q_CLUSTER['timeout'] ({timeout}s) is shorter than a webhooks task can run "
            f"({longest:g}s: TASK_TIME_LIMIT + CLAIM_TTL).", id="webhooks.E021",
            hint="Raise Q_CLUSTER['timeout'] or lower WEBHOOKS['TASK_TIME_LIMIT'] / "
                 "['CLAIM_TTL']; a worker killed mid-request causes duplicate deliveries.",
        ))
    floor = max(longest, timeout if timeout is not None and is_number(timeout) else 0)
    if retry is not None and is_number(retry) and retry <= floor:
        limit = (f"Q_CLUSTER['timeout'] ({timeout}s)" if floor > longest
                 else f"the time a webhooks task can run ({longest:g}s)")
        errors.append(checks.Error(
            f"Q_CLUSTER['retry'] ({retry}s) is not greater than {limit}.", id="webhooks.E022",
            hint="django-q2 hands a task to a second worker after 'retry' seconds; set it "
                 "above both Q_CLUSTER['timeout'] and TASK_TIME_LIMIT + CLAIM_TTL.",
        ))
    return errors


def check_encryption(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E030 no keys in production, E031 a key that is not a Fernet key, W030 derived key."""
    raw = getattr(settings, "WEBHOOKS", {})
    if not isinstance(raw, Mapping) or not SETTINGS["ENCRYPTION_KEYS"].valid(
        raw.get("ENCRYPTION_KEYS", [])
    ):
        return []  # reported by check_settings
    from cryptography.fernet import Fernet

    keys = list(webhooks_settings.ENCRYPTION_KEYS)
    hint = ("Generate one with: python -c 'from webhooks.encryption import generate_key; "
            "print(generate_key())' and keep it out of the repository.")
    if not keys:
        if settings.DEBUG:
            return [checks.Warning(
                "WEBHOOKS['ENCRYPTION_KEYS'] is empty: secrets are encrypted with a key derived "
                "from SECRET_KEY, which is only acceptable in development.",
                id="webhooks.W030", hint=hint)]
        return [checks.Error(
            "WEBHOOKS['ENCRYPTION_KEYS'] is empty: endpoint secrets cannot be stored.",
            id="webhooks.E030", hint=hint)]
    errors: list[checks.CheckMessage] = []
    for index, key in enumerate(keys):
        if not key.strip():
            errors.append(checks.Error(
                f"WEBHOOKS['ENCRYPTION_KEYS'][{index}] is empty: is the environment variable "
                "meant to hold it set?", id="webhooks.E031", hint=hint))
            continue
        try:
            Fernet(key.encode("ascii"))
        except (ValueError, TypeError, UnicodeError):
            errors.append(checks.Error(
                f"WEBHOOKS['ENCRYPTION_KEYS'][{index}] is not a Fernet key (32 url-safe "
                "base64-encoded bytes).", id="webhooks.E031", hint=hint))
    return errors


def check_deploy(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W003 (``check --deploy``): plain http endpoints are allowed."""
    raw = getattr(settings, "WEBHOOKS", {})
    if isinstance(raw, Mapping) and not raw.get("REQUIRE_HTTPS", False):
        return [checks.Warning(
            "WEBHOOKS['REQUIRE_HTTPS'] is off: webhooks may be sent over plain http.",
            id="webhooks.W003",
            hint="Set WEBHOOKS['REQUIRE_HTTPS'] = True so payloads and signatures are never "
                 "sent in the clear.")]
    return []


def check_stored_secrets(app_configs: Any = None, databases: Iterable[str] | None = None,
                         **kwargs: Any) -> list[checks.CheckMessage]:
    """E032: ``ENCRYPTION_KEYS`` cannot decrypt the signing secret of a stored endpoint.

    A database check, like Django's own: it runs with ``check --database <alias>`` and before
    ``migrate``, never with a plain ``check`` or ``runserver`` (which must work without a
    database). It reads the secret of one endpoint row, the oldest (the likeliest to be on a
    key dropped too early); a database that cannot be reached, or has no endpoint table yet,
    is left to ``migrate``.
    """
    if not databases:
        return []
    from webhooks.encryption import UNREADABLE_ADVICE, key_index
    from webhooks.models import Endpoint

    errors: list[checks.CheckMessage] = []
    for alias in databases:
        token = _one_stored_secret(alias)
        if token is None:
            continue
        try:
            readable = key_index(token) is not None
        except WebhooksConfigurationError:
            return []  # the keys themselves are wrong: webhooks.E030/E031 say how
        if not readable:
            errors.append(checks.Error(
                f"WEBHOOKS['ENCRYPTION_KEYS'] cannot decrypt the endpoint secrets stored in the "
                f"{alias!r} database: none of its keys is the one they were encrypted with.",
                id="webhooks.E032", obj=Endpoint,
                hint=f"Deliveries to those endpoints and their admin pages fail. "
                     f"{UNREADABLE_ADVICE} `manage.py webhooks_reencrypt --dry-run` lists "
                     "them."))
    return errors


def _one_stored_secret(alias: str) -> str | None:
    """The encrypted signing secret of the oldest endpoint in ``alias``, as stored; ``None``
    when there is none, no endpoint table, or the database cannot be reached."""
    from django.db import DatabaseError, connections, models, router, transaction
    from django.db.models.expressions import ExpressionWrapper

    from webhooks.models import Endpoint

    if not router.allow_migrate_model(alias, Endpoint):
        return None
    connection = connections[alias]
    stored = ExpressionWrapper(models.F("signing_secret"), output_field=models.TextField())
    try:
        with transaction.atomic(using=alias):  # a failed query must not spoil an outer one
            if Endpoint._meta.db_table not in connection.introspection.table_names():
                return None
            rows = list(Endpoint.objects.using(alias).exclude(signing_secret="")
                        .order_by("pk").values_list(stored, flat=True)[:1])
    except DatabaseError:
        return None
    return rows[0] if rows else None


def check_api_urls(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E060: ``ROOT_URLCONF`` serves the REST API (``webhooks.api.urls``) but
    ``rest_framework`` is not in ``INSTALLED_APPS``.

    Nothing is loaded when DRF is installed (the common case); otherwise the URLconf Django's
    own url checks load anyway is walked once. A URLconf that cannot be loaded is theirs to
    report.
    """
    if apps.is_installed("rest_framework") or not getattr(settings, "ROOT_URLCONF", None):
        return []
    from django.urls import get_resolver

    try:
        served = _serves_api(get_resolver().url_patterns)
    except Exception:  # a broken URLconf is reported by Django's own url checks
        return []
    if not served:
        return []
    return [checks.Error(
        "The REST API's urls (webhooks.api.urls) are included in ROOT_URLCONF but "
        "'rest_framework' is not in INSTALLED_APPS: the browsable API's pages fail "
        "(TemplateDoesNotExist).", id="webhooks.E060",
        hint="Add 'rest_framework' to INSTALLED_APPS, or remove "
             "path(..., include('webhooks.api.urls')) if you do not serve the API.")]


def _serves_api(patterns: Iterable[Any]) -> bool:
    """Whether a URL pattern among ``patterns`` (and the URLconfs they include) routes to a
    view of :mod:`webhooks.api`."""
    from django.urls import URLResolver

    stack = list(patterns)
    while stack:
        pattern = stack.pop()
        if isinstance(pattern, URLResolver):
            if getattr(pattern.urlconf_module, "__name__", None) == "webhooks.api.urls":
                return True
            stack.extend(pattern.url_patterns)
            continue
        callback = pattern.callback
        view = getattr(callback, "cls", None) or getattr(callback, "view_class", callback)
        if (getattr(view, "__module__", None) or "").startswith("webhooks.api."):
            return True
    return False
