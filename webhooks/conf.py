"""Settings: the ``WEBHOOKS`` dict, declared once as a table of :class:`Setting` descriptors.

Each setting has one declaration on :class:`WebhooksSettings`: its default, how the raw value is
coerced (including caps that depend on another setting), what a valid value is (for the system
check), and a one-line doc (for the configuration reference). Values are read from
``settings.WEBHOOKS`` on every access, never at import, so ``override_settings`` works.

``python -m webhooks.conf`` prints the configuration reference (a markdown table);
``python -m webhooks.conf docs/configuration.md`` rewrites it in place between its markers.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, Never, TypeVar, overload

from django.conf import settings

T = TypeVar("T")
N = TypeVar("N", int, float)

#: The longest grace period a rotated secret can have, whatever the settings say.
MAX_ROTATION_GRACE = 7 * 24 * 3600

DAY = 24 * 3600


# --- what a valid raw value is (the system check's predicates) ------------------------------


def is_number(value: Any) -> bool:
    """A real number, and not a bool (``True`` is an int in Python)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive(value: Any) -> bool:
    """A number above 0."""
    return is_number(value) and value > 0


def whole(value: Any) -> bool:
    """A whole number (not a bool), 0 or more."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def positive_int(value: Any) -> bool:
    """A whole number above 0."""
    return whole(value) and value > 0


def between(low: float, high: float, kind: Callable[[Any], bool] = is_number
            ) -> Callable[[Any], bool]:
    """A predicate: ``kind`` holds and the value lies from ``low`` to ``high`` (inclusive)."""
    return lambda value: kind(value) and low <= value <= high


def none_or(valid: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A predicate: ``None``, or ``valid`` holds."""
    return lambda value: value is None or valid(value)


def is_bool(value: Any) -> bool:
    """``True`` or ``False``, nothing merely truthy."""
    return isinstance(value, bool)


def non_empty_str(value: Any) -> bool:
    """A string with at least one character."""
    return isinstance(value, str) and bool(value)


def str_list(value: Any) -> bool:
    """A list or tuple of strings."""
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


days = none_or(positive)


def uri_reference(value: Any) -> bool:
    """A non-empty string without white space or control characters (what a URI reference
    can hold, loosely)."""
    return isinstance(value, str) and bool(value) and all(
        c.isprintable() and not c.isspace() for c in value)


def type_prefix(value: Any) -> bool:
    """A string, possibly empty, without white space or control characters."""
    return value == "" or uri_reference(value)


#: Keys of the dict form of a ``WEBHOOKS["EVENTS"]`` entry.
EVENT_OPTIONS = frozenset({"description", "schema"})


def _event_entry(entry: Any) -> bool:
    """A description, or ``{"description": str, "schema": dict}`` (the schema optional; whether
    it is a valid JSON Schema is ``webhooks.E012``'s business)."""
    if isinstance(entry, str):
        return True
    return (isinstance(entry, Mapping) and set(entry) <= EVENT_OPTIONS
            and isinstance(entry.get("description"), str)
            and isinstance(entry.get("schema", {}), Mapping))


def _descriptions(value: Any) -> bool:
    return isinstance(value, Mapping) and all(_event_entry(d) for d in value.values())


def _examples(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)


def _retention(value: Any) -> bool:
    return (isinstance(value, Mapping) and set(value) <= {"succeeded", "failed"}
            and all(days(d) for d in value.values()))


# --- how a valid raw value becomes the typed one ----------------------------------------------


def optional(coerce: Callable[[Any], T]) -> Callable[[Any], T | None]:
    """A coercion that keeps ``None`` and coerces anything else."""
    return lambda value: None if value is None else coerce(value)


def at_most(other: str) -> Callable[[WebhooksSettings, N], N]:
    """A clamp: the value, capped at the setting named ``other``."""
    return lambda conf, value: min(value, getattr(conf, other))


def at_least(other: str) -> Callable[[WebhooksSettings, N], N]:
    """A clamp: the value, raised to the setting named ``other``."""
    return lambda conf, value: max(value, getattr(conf, other))


def _as_is(value: Any) -> Any:
    return value


def _or_empty_dict(value: Any) -> Mapping[str, Any]:
    return value or {}


def _or_empty_list(value: Any) -> Sequence[str]:
    return value or []


def _optional_str(value: Any) -> str | None:
    return value


RETENTION_DEFAULT: Mapping[str, float | None] = {"succeeded": 30, "failed": 90}


def _retention_days(value: Any) -> Mapping[str, float | None]:
    # The user's keys over the defaults: {"failed": None} keeps "succeeded" at 30 days.
    return {**RETENTION_DEFAULT, **(value or {})}


class Setting(Generic[T]):
    """One key of ``WEBHOOKS``: a descriptor on :class:`WebhooksSettings` that reads the key at
    use time and returns it coerced to ``T``.

    ``coerce`` turns the raw value (the user's, else ``default``) into ``T``; ``clamp`` then
    bounds it by other settings (``clamp(conf, value)``). ``valid`` and ``expected`` are the
    system check (``webhooks.E003``: "It must be {expected}."); ``doc`` and ``default_note``
    are the configuration reference.
    """

    name: str

    def __init__(self, default: Any, coerce: Callable[[Any], T], *, valid: Callable[[Any], bool],
                 expected: str, doc: str, default_note: str = "",
                 clamp: Callable[[WebhooksSettings, T], T] | None = None) -> None:
        self.default = default
        self.coerce = coerce
        self.clamp = clamp
        self.valid = valid
        self.expected = expected
        self.doc = doc
        self.default_note = default_note

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Setting[T]: ...

    @overload
    def __get__(self, instance: WebhooksSettings, owner: type[Any] | None = None) -> T: ...

    def __get__(self, instance: WebhooksSettings | None,
                owner: type[Any] | None = None) -> T | Setting[T]:
        if instance is None:
            return self
        value = self.coerce(instance.user_settings.get(self.name, self.default))
        return value if self.clamp is None else self.clamp(instance, value)

    def __set__(self, instance: WebhooksSettings, value: Never) -> None:
        # Read-only, like the properties it replaces: an assignment would silently shadow the
        # setting for the whole process (tests use override_settings), and mypy refuses one.
        raise AttributeError(f"Set WEBHOOKS[{self.name!r}] in the Django settings instead.")

    def __repr__(self) -> str:
        return f"<Setting {getattr(self, 'name', '?')} default={self.default!r}>"


class WebhooksSettings:
    """Typed view of ``settings.WEBHOOKS``: every key it accepts, declared once."""

    # --- what is published ---
    MODELS = Setting[Mapping[str, Mapping[str, Any]]](
        {}, _or_empty_dict, valid=lambda v: isinstance(v, Mapping),
        expected="a dict of model label to options",
        doc='`{"app_label.Model": {"events": [...], "serializer": path, "owner": path, '
            '"name": str, "description": {action: text}, "track": [fields], '
            '"updated_when": [fields], "thin": url_template, "actions": [words]}}`; '
            '`events` ⊆ `created`, `updated`, `deleted` (default all); `actions`: custom '
            'actions sent with `webhooks.send_model_event`')
    EVENTS = Setting[Mapping[str, Any]](
        {}, _or_empty_dict, valid=_descriptions,
        expected='a dict of event type to a description, or to {"description": str, '
                 '"schema": dict}',
        doc='custom event types: `{"invoice.paid": "description"}`, or with the JSON Schema of '
            'their `data`: `{"invoice.paid": {"description": "...", "schema": {...}}}` '
            "(`docs/schemas.md`)")

    JSON_ENCODER = Setting(
        "django.core.serializers.json.DjangoJSONEncoder", str, valid=non_empty_str,
        expected="the dotted path of a json.JSONEncoder subclass",
        doc="the encoder of every payload (once per event), for types such as money; Django's "
            "encodes dates, decimals and UUIDs as strings (`webhooks.E061` when it cannot be "
            "imported or is not a `json.JSONEncoder`)")

    # --- on the wire ---
    CLOUDEVENTS_SOURCE = Setting(
        None, _optional_str, valid=none_or(uri_reference),
        expected="None or a URI reference such as 'https://shop.example.com'",
        doc="`source` of the CloudEvents that endpoints with the `cloudevents` body format "
            "get; `None`: `https://<domain>` of the current site (`django.contrib.sites` with "
            "`SITE_ID`), else `/webhooks`")
    CLOUDEVENTS_TYPE_PREFIX = Setting(
        "", str, valid=type_prefix, expected="a string without spaces, such as 'com.example.'",
        doc="prefix of the CloudEvents `type`, e.g. `com.example.shop.` (the specification "
            "recommends a reverse-DNS name) for `com.example.shop.order.created`; empty: the "
            "event type as is")
    ENDPOINT_HEADER = Setting(
        False, bool, valid=is_bool, expected="True or False",
        doc="send a `webhook-endpoint` header naming the endpoint (its id) with every "
            "delivery, so a receiver with several subscriptions can tell them apart")

    # --- retries and deadlines ---
    RETRY_SCHEDULE = Setting[Sequence[float]](
        [5, 300, 1800, 7200, 18000, 36000, 43200, 43200, 43200, 43200, 43200], _as_is,
        valid=lambda v: isinstance(v, list | tuple) and all(positive(x) for x in v),
        expected="a list of positive numbers of seconds (may be empty: no retries)",
        default_note="5 s, 5 min, 30 min, 2 h, 5 h, 10 h, then every 12 h",
        doc="seconds before each retry after the first attempt; by default 12 attempts over "
            "about 3 days and 6 hours (Standard Webhooks recommends several days, Stripe retries "
            "for 3), ending before `DISABLE_AFTER`")
    RETRY_JITTER = Setting(
        0.1, float, valid=between(0, 1), expected="a number from 0 to 1",
        doc="each retry delay is stretched by a random share of up to this fraction "
            "(never shortened)")
    TIMEOUT = Setting(
        15.0, float, valid=positive, expected="a positive number of seconds",
        doc="total seconds an attempt may take (a hard wall-clock deadline)")
    CONNECT_TIMEOUT = Setting(
        5.0, float, clamp=at_most("TIMEOUT"),
        valid=positive, expected="a positive number of seconds",
        doc="seconds to establish the connection, TLS included (at most `TIMEOUT`)")
    READ_TIMEOUT = Setting(
        10.0, float, clamp=at_most("TIMEOUT"),
        valid=positive, expected="a positive number of seconds",
        doc="longest silence of a receiver between two reads, in seconds (at most `TIMEOUT`)")

    # --- security ---
    ALLOWED_NETWORKS = Setting(
        [], _or_empty_list, valid=str_list,
        expected="a list of CIDR strings such as '127.0.0.1/32'",
        doc="networks (CIDR) deliveries may reach although private: for development and tests "
            "(the only SSRF escape hatch; warning `webhooks.W001` with `DEBUG` off)")
    REQUIRE_HTTPS = Setting(
        False, bool, valid=is_bool, expected="True or False",
        doc="refuse `http://` endpoint URLs (warning `webhooks.W003` under `check --deploy` "
            "while off)")
    ENCRYPTION_KEYS = Setting(
        [], _or_empty_list, valid=str_list, expected="a list of keys",
        doc="Fernet keys (newest first) that encrypt secrets and custom headers at rest; "
            "required with `DEBUG` off")
    CA_BUNDLE = Setting(
        None, _optional_str, valid=none_or(non_empty_str),
        expected="None or the path of a CA bundle file",
        doc="CA bundle file to verify receivers' certificates (default: certifi's)")

    # --- the delivery worker ---
    BATCH_SIZE = Setting(
        100, int, valid=between(1, 10_000, positive_int),
        expected="a whole number from 1 to 10000",
        doc="deliveries one worker claims in one query")
    CLAIM_TTL = Setting(
        45.0, float, valid=positive, expected="a positive number of seconds",
        doc="seconds a claim on a batch lasts: a worker that dies mid-batch holds its "
            "deliveries this long at most; must exceed `TIMEOUT` + 5 (`webhooks.E004`)")
    TASK_TIME_LIMIT = Setting(
        10.0, float, valid=positive, expected="a positive number of seconds",
        doc="seconds after which a delivery task stops claiming and hands over to a fresh one, "
            "so one task never hogs a worker")
    DISABLE_AFTER = Setting(
        5 * DAY, float, valid=positive, expected="a positive number of seconds",
        default_note="5 days", doc="disable an endpoint whose deliveries have all failed for "
                                   "this many seconds...")
    DISABLE_AFTER_FAILURES = Setting(
        10, int, valid=positive_int, expected="a positive whole number",
        doc="...and at least this many times in a row")

    # --- flow control ---
    MAX_CONCURRENCY = Setting(
        None, optional(int), valid=none_or(between(1, 1000, positive_int)),
        expected="None or a whole number from 1 to 1000",
        doc="most workers sending to one endpoint at once, for endpoints without their own "
            "`max_concurrency` (`None`: no cap beyond one request per worker)")
    SEND_CONCURRENCY = Setting(
        8, int, valid=between(1, 64, positive_int), expected="a whole number from 1 to 64",
        doc="threads a worker sends a batch with, one endpoint per thread, so a slow endpoint "
            "never holds up the others (1: one request at a time)")
    CIRCUIT_BREAKER_THRESHOLD = Setting(
        5, optional(int), valid=none_or(positive_int), expected="None or a positive whole number",
        doc="failed attempts in a row that pause an endpoint, then one probe request at a time "
            "until one succeeds (`None`: never)")
    CIRCUIT_BREAKER_COOLDOWN = Setting(
        10.0, float, valid=positive, expected="a positive number of seconds",
        doc="seconds of the first pause; a longer failure pauses longer...")
    CIRCUIT_BREAKER_MAX_COOLDOWN = Setting(
        600.0, float, clamp=at_least("CIRCUIT_BREAKER_COOLDOWN"),
        valid=positive, expected="a positive number of seconds",
        doc="...up to this many seconds (at least `CIRCUIT_BREAKER_COOLDOWN`)")
    MAX_THROTTLE_PAUSE = Setting(
        3600.0, float, valid=positive, expected="a positive number of seconds",
        doc="longest pause a receiver's throttling can impose on its endpoint, in seconds: "
            "a `429`'s `Retry-After`, or `502`/`504` answers that go on (their pause grows "
            "from the first retry delay with how long the endpoint has been failing)")

    # --- limits ---
    MAX_RESPONSE_BYTES = Setting(
        64 * 1024, int, valid=positive_int, expected="a positive whole number of bytes",
        doc="response bytes read from a receiver (the rest is not read)")
    MAX_RESPONSE_HEADER_BYTES = Setting(
        16 * 1024, int, valid=between(1024, 1024 * 1024, positive_int),
        expected="a whole number of bytes from 1024 to 1048576",
        doc="bytes of a response's head (status line and headers) read from a receiver; a "
            "larger head fails the attempt (`response_too_large`) and nothing of it is stored")
    MAX_RESPONSE_HEADERS = Setting(
        100, int, valid=between(1, 100, positive_int), expected="a whole number from 1 to 100",
        doc="header lines of a response read from a receiver; more fail the attempt "
            "(`response_too_large`; Python's `http.client` never reads over 100)")
    STORED_RESPONSE_BYTES = Setting(
        20_000, int, clamp=at_most("MAX_RESPONSE_BYTES"),
        valid=whole, expected="a whole number of bytes, 0 or more",
        doc="response bytes kept on the attempt (at most `MAX_RESPONSE_BYTES`: warning "
            "`webhooks.W002` when larger)")
    MAX_URL_LENGTH = Setting(
        2048, int, valid=between(20, 2048, positive_int),
        expected="a whole number from 20 to 2048", doc="longest endpoint URL")
    MAX_PAYLOAD_BYTES = Setting(
        256 * 1024, int, valid=positive_int, expected="a positive whole number of bytes",
        doc="largest event body (bytes of JSON); a larger event fails clearly, it is never "
            "truncated")
    MAX_HEADERS = Setting(
        20, int, valid=whole, expected="a whole number, 0 or more",
        doc="custom headers per endpoint")
    MAX_HEADER_LENGTH = Setting(
        2048, int, valid=positive_int, expected="a positive whole number of characters",
        doc="longest custom header value")
    MAX_ENDPOINTS_PER_OWNER = Setting(
        20, optional(int), valid=none_or(positive_int), expected="None or a positive whole number",
        doc="endpoints one owner (`WEBHOOKS_OWNER_MODEL`: a user, an organization…) may have; "
            "members of one organization share them (`None`: no cap; site-wide ones are not "
            "counted)")
    SECRET_ROTATION_GRACE = Setting(
        DAY, lambda v: min(float(v), MAX_ROTATION_GRACE),
        valid=between(0, MAX_ROTATION_GRACE),
        expected="a number of seconds from 0 to 604800 (7 days)", default_note="1 day",
        doc="seconds a rotated-out secret keeps signing alongside the new one (at most 7 days)")
    REPLAY_WINDOW = Setting(
        14 * DAY, int, valid=positive_int, expected="a positive whole number of seconds",
        default_note="14 days",
        doc="how far back a replay of an endpoint's failed and missed deliveries may go")

    # --- the task queue ---
    SWEEP_INTERVAL = Setting(
        1, int, valid=positive_int, expected="a positive whole number of minutes",
        doc="minutes between two runs of the sweep that recovers lost tasks and due retries")
    TASK_CLUSTER = Setting(
        None, _optional_str, valid=none_or(non_empty_str),
        expected="None or the name of a django-q2 cluster",
        doc="django-q2 cluster name for our tasks (default cluster when `None`)")

    # --- REST API and metrics ---
    API_OWNER = Setting(
        None, _optional_str, valid=none_or(non_empty_str),
        expected="None or the dotted path of a function request -> owner or None",
        doc="who the REST API acts for: `callable(request)` returning an instance of the owner "
            "model (`WEBHOOKS_OWNER_MODEL`) or `None` (a 403); `None` here: the authenticated "
            "user, when owners are users (`webhooks.E072` when it cannot be imported, "
            "`webhooks.W070` when owners are not users and it is not set)")
    API_PERMISSION_CLASSES = Setting(
        ["rest_framework.permissions.IsAuthenticated"], _or_empty_list, valid=str_list,
        expected="a list of dotted paths of DRF permission classes",
        doc="DRF permission classes of the REST API (whatever they allow, users only see their "
            "own objects; `webhooks.E005` when one cannot be imported)")
    EVENT_EXAMPLES = Setting(
        {}, _or_empty_dict, valid=_examples, expected="a dict of event type to example data",
        doc="example `data` per custom event type, shown by `event-types/` (model events get "
            "theirs from their serializer)")
    METRICS = Setting(
        False, bool, valid=is_bool, expected="True or False",
        doc="serve Prometheus metrics (needs the `metrics` extra; `webhooks.E040` when it is "
            "missing)")

    # --- owners' notifications ---
    NOTIFY_BY_EMAIL = Setting(
        True, bool, valid=is_bool, expected="True or False",
        doc="email owners when an endpoint of theirs is failing, disabled or recovered "
            "(`docs/notifications.md`; the signals are sent either way)")
    NOTIFY_FAILING_AFTER = Setting(
        3600, optional(float), valid=none_or(positive),
        expected="None or a positive number of seconds", default_note="1 hour",
        doc="seconds every delivery to an endpoint must have failed before its owner hears "
            "that it is failing (`None`: no failing notice; disabled and recovered still are)")
    OWNER_EMAILS = Setting(
        None, _optional_str, valid=none_or(non_empty_str),
        expected="None or the dotted path of a function owner -> list of addresses",
        doc="who hears about an owner's endpoints: `callable(owner)` returning email addresses; "
            "`None`: the owner's `email` (a user's email field) when not empty "
            "(`webhooks.E050` when it cannot be imported)")
    SITE_EMAILS = Setting(
        None, optional(list), valid=none_or(str_list),
        expected="None or a list of email addresses",
        doc="who hears about site-wide endpoints (no owner): `None`: the addresses of "
            "`settings.ADMINS`; `[]`: nobody")
    NOTIFY_LINK = Setting(
        None, _optional_str, valid=none_or(non_empty_str),
        expected="None or a URL, where {endpoint_id} stands for the endpoint's id",
        doc="the page where the owner manages the endpoint, in the emails: a URL in which "
            "`{endpoint_id}` is replaced by the endpoint's id, `ep_…` (`None`: the emails name "
            "no link)")

    # --- retention ---
    RETENTION = Setting(
        dict(RETENTION_DEFAULT), _retention_days, valid=_retention,
        expected="a dict with the keys 'succeeded' and/or 'failed' (pending deliveries are "
                 "never pruned), each a positive number of days or None (keep forever)",
        doc="days a finished delivery and its attempts are kept, per status, counted from its "
            "creation and its last attempt (`None`: forever; keys left out keep their "
            "default); pending deliveries are never pruned")
    EVENT_RETENTION = Setting(
        30, optional(float), valid=days,
        expected="a positive number of days or None (keep forever)",
        doc="days an event is kept; then it is deleted once no delivery of it is left "
            "(`None`: forever)")
    RESPONSE_RETENTION = Setting(
        14, optional(float), valid=days,
        expected="a positive number of days or None (keep as long as the attempt)",
        doc="days an attempt keeps the response body and headers it stored; then they are "
            "blanked and the attempt stays (`None`: as long as the attempt)")
    PRUNE_INTERVAL = Setting(
        60, lambda v: int(v or 0) or None, valid=none_or(whole),
        expected="a whole number of minutes, or None or 0 (no scheduled prune)",
        doc="minutes between two scheduled prunes (`None` or `0`: no schedule; applied by "
            "`migrate`)")
    PRUNE_BATCH_SIZE = Setting(
        1000, int, valid=between(1, 10_000, positive_int),
        expected="a whole number from 1 to 10000",
        doc="rows per prune statement, each batch its own short transaction")

    @property
    def user_settings(self) -> Mapping[str, Any]:
        """The ``WEBHOOKS`` dict as configured (empty when missing or not a dict)."""
        value = getattr(settings, "WEBHOOKS", None)
        return value if isinstance(value, Mapping) else {}

    def get(self, key: str) -> Any:
        """The raw value of ``key``: the user's, else its default (``KeyError`` if unknown)."""
        return self.user_settings.get(key, SETTINGS[key].default)

    @property
    def max_task_seconds(self) -> float:
        """Upper bound of how long one delivery task runs (last batch started at the limit)."""
        return self.TASK_TIME_LIMIT + self.CLAIM_TTL


#: Every setting, in declaration order (the order of the reference), by key.
SETTINGS: Mapping[str, Setting[Any]] = MappingProxyType({
    name: value for name, value in vars(WebhooksSettings).items() if isinstance(value, Setting)
})

#: Every key the ``WEBHOOKS`` setting accepts, with its raw default (derived from the table).
DEFAULTS: Mapping[str, Any] = MappingProxyType({k: s.default for k, s in SETTINGS.items()})

webhooks_settings = WebhooksSettings()


# --- the configuration reference ---------------------------------------------------------------

REFERENCE_START = ("<!-- settings-table: generated from webhooks/conf.py by "
                   "`python -m webhooks.conf docs/configuration.md`; do not edit by hand -->")
REFERENCE_END = "<!-- settings-table: end -->"


def _literal(value: Any) -> str:
    """A default as Python source, with double-quoted strings and ``15`` for ``15.0``."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_reference_markdown() -> str:
    """The configuration reference: a markdown table of every setting, from the table above."""
    lines = ["| key | default | meaning | valid values |", "|---|---|---|---|"]
    for name, setting in SETTINGS.items():
        default = f"`{_literal(setting.default)}`"
        if setting.default_note:
            default += f" ({setting.default_note})"
        lines.append(f"| `{name}` | {_cell(default)} | {_cell(setting.doc)} | "
                     f"{_cell(setting.expected)} |")
    return "\n".join(lines) + "\n"


def with_reference(document: str) -> str:
    """``document`` with the text between the reference markers replaced by the current table."""
    head, start, rest = document.partition(REFERENCE_START)
    _, end, tail = rest.partition(REFERENCE_END)
    if not start or not end:
        raise ValueError("The document has no settings-table markers.")
    return f"{head}{start}\n{settings_reference_markdown()}{end}{tail}"


def main(argv: Sequence[str]) -> int:
    """Print the reference, or with a path, rewrite that file's reference in place."""
    if not argv:
        sys.stdout.write(settings_reference_markdown())
        return 0
    path = Path(argv[0])
    path.write_text(with_reference(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
