"""Models: endpoints and their subscriptions, events (the outbox), deliveries and attempts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connections, models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from webhooks import ids, signing
from webhooks.conf import MAX_ROTATION_GRACE, webhooks_settings
from webhooks.encryption import EncryptedJSONField, EncryptedTextField
from webhooks.owners import owner_model_label
from webhooks.querysets import DeliveryQuerySet, EndpointQuerySet, EventQuerySet
from webhooks.validators import validate_endpoint_url, validate_headers, validate_signing_secret

WILDCARD = "*"


class NotifiedState(models.TextChoices):
    """``Endpoint.notified_state``: the trouble the owner was last told about."""

    NONE = "", _("Nothing")
    FAILING = "failing", _("Failing")
    DISABLED = "disabled", _("Disabled")


class SignatureScheme(models.TextChoices):
    """How an endpoint's deliveries are signed (the ``webhook-signature`` label)."""

    V1 = signing.SIGNATURE_VERSION, _("v1: HMAC-SHA256, shared secret")
    V1A = signing.ASYMMETRIC_VERSION, _("v1a: ed25519, public key")


class DisabledBy(models.TextChoices):
    """``Endpoint.disabled_by``: who switched the endpoint off, which decides who may switch it
    on again (:func:`owner_may_enable`)."""

    NONE = "", _("Nobody (active)")
    OWNER = "owner", _("Its owner")
    STAFF = "staff", _("Staff")
    SYSTEM = "system", _("Automatically (410 Gone, sustained failure)")


def owner_may_enable(disabled_by: str) -> bool:
    """Whether an endpoint's owner may switch it on again: unless staff switched it off (the
    owner's own disables and automatic ones are theirs to lift, once the receiver works)."""
    return disabled_by != DisabledBy.STAFF


class BodyFormat(models.TextChoices):
    """``Endpoint.body_format``: how an endpoint's deliveries shape the event's body."""

    STANDARD = "standard", _("Standard Webhooks JSON")
    CLOUDEVENTS = "cloudevents", _("CloudEvents 1.0 (structured JSON)")


class PublicIdModel(models.Model):
    """A model keyed by a UUIDv7, with one public id: ``<id_prefix>_<26 characters>``
    (:mod:`webhooks.ids`), what the API, the admin, the logs and the commands show."""

    id = models.UUIDField(primary_key=True, default=ids.uuid7, editable=False)

    #: The prefix of :attr:`public_id` (``evt``, ``dlv``, ``ep``, ``att``).
    id_prefix: ClassVar[str]

    class Meta:
        abstract = True

    @property
    def public_id(self) -> str:
        """This object's id as everything outside the database shows it."""
        return ids.to_public(self.id_prefix, self.id)

    @classmethod
    def parse_id(cls, text: str) -> uuid.UUID | None:
        """The primary key that ``text`` names: the public id or the bare UUID (``None`` for
        anything else, another kind of object's id included)."""
        return ids.parse(cls.id_prefix, text)


class Endpoint(PublicIdModel):
    """A URL that receives webhooks, owned by an owner (``WEBHOOKS_OWNER_MODEL``: a user by
    default, or an organization, team or account) or, owner empty, by the site itself."""

    Scheme = SignatureScheme
    Format = BodyFormat
    id_prefix = ids.ENDPOINT

    owner = models.ForeignKey(
        owner_model_label(),
        verbose_name=_("owner"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhook_endpoints",
        help_text=_("Whose events this endpoint receives (WEBHOOKS_OWNER_MODEL). Empty: a "
                    "site-wide endpoint that receives every owner's events."),
    )
    url = models.URLField(_("URL"), max_length=2048, validators=[validate_endpoint_url])
    description = models.CharField(_("description"), max_length=255, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    signature_scheme = models.CharField(
        _("signature scheme"), max_length=8, choices=SignatureScheme.choices,
        default=SignatureScheme.V1,
        help_text=_("v1: HMAC-SHA256 with a shared whsec_ secret. v1a: ed25519; receivers "
                    "verify with a whpk_ public key, which cannot sign. Changing it rotates "
                    "the key (the old one keeps signing for the grace period)."),
    )
    body_format = models.CharField(
        _("body format"), max_length=16, choices=BodyFormat.choices,
        default=BodyFormat.STANDARD,
        help_text=_("standard: the event as Standard Webhooks JSON (Content-Type "
                    "application/json). cloudevents: the same event as a CloudEvents 1.0 "
                    "structured-mode event (application/cloudevents+json). Both are signed "
                    "alike."),
    )
    # Secrets and custom headers (which often hold tokens) are encrypted at rest. The signing
    # key is a whsec_ secret (v1) or a whsk_ ed25519 private key (v1a); its prefix says which.
    signing_secret = EncryptedTextField(
        _("signing secret"), default=signing.generate_secret, editable=False
    )
    previous_secret = EncryptedTextField(blank=True, default="", editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    headers = EncryptedJSONField(
        _("custom headers"),
        default=dict,
        blank=True,
        validators=[validate_headers],
        help_text=_("Extra HTTP headers sent with every delivery, such as an Authorization "
                    "token. They never replace the webhook headers."),
    )
    rate_limit = models.PositiveIntegerField(
        _("rate limit"),
        null=True,
        blank=True,
        help_text=_("Most deliveries per second to this endpoint, across every worker. "
                    "Empty: no limit."),
    )
    max_concurrency = models.PositiveSmallIntegerField(
        _("concurrency limit"),
        null=True,
        blank=True,
        help_text=_("Most workers sending to this endpoint at the same moment. Empty: the "
                    "site's default (WEBHOOKS['MAX_CONCURRENCY'])."),
    )
    # Flow-control state, written by the workers (never by forms).
    paused_until = models.DateTimeField(_("paused until"), null=True, blank=True,
                                        editable=False)
    pause_reason = models.CharField(_("pause reason"), max_length=32, blank=True,
                                    editable=False)
    rate_slot_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(_("disabled reason"), max_length=255, blank=True)
    disabled_at = models.DateTimeField(_("disabled at"), null=True, blank=True)
    disabled_by = models.CharField(
        _("disabled by"), max_length=16, choices=DisabledBy.choices, blank=True,
        default=DisabledBy.NONE, editable=False,
        help_text=_("Who switched it off. When staff did, its owner cannot switch it on "
                    "again: only staff can."))
    failing_since = models.DateTimeField(_("failing since"), null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(_("consecutive failures"), default=0)
    last_success_at = models.DateTimeField(_("last success"), null=True, blank=True)
    last_failure_at = models.DateTimeField(_("last failure"), null=True, blank=True)
    # What the owner was last told (webhooks.notifications): written by the workers and the
    # services with compare-and-set updates, so each change of state is notified once.
    notified_state = models.CharField(
        _("owner notified"), max_length=16, choices=NotifiedState.choices, blank=True,
        default=NotifiedState.NONE, editable=False,
        help_text=_("The trouble its owner was last told about by email and signal: failing, "
                    "disabled, or nothing (healthy, or recovered since)."))
    notified_at = models.DateTimeField(_("owner notified at"), null=True, blank=True,
                                       editable=False)
    # A subscription made through the REST Hooks routes (Zapier): by that protocol's rule, a
    # 410 Gone from its URL removes it (deleted, so it no longer counts towards the owner's
    # MAX_ENDPOINTS_PER_OWNER), where any other endpoint is disabled.
    rest_hook = models.BooleanField(
        _("REST Hook"), default=False, editable=False,
        help_text=_("Subscribed through the REST Hooks (Zapier) routes: deleted when its URL "
                    "answers 410 Gone, instead of disabled."))
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = EndpointQuerySet.as_manager()

    class Meta:
        verbose_name = _("endpoint")
        verbose_name_plural = _("endpoints")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="webhooks_endpoint_owner")]

    def __str__(self) -> str:
        return self.url

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save; the signing key always fits ``signature_scheme`` (see :meth:`match_scheme`),
        and a key (current or previous) that is not usable is never stored
        (``ValidationError``): an empty or short secret would let others sign.

        A new endpoint gets a key of its scheme; an endpoint whose scheme is being saved as
        changed gets a new key of it, the old one signing during the grace period.
        """
        update_fields = kwargs.get("update_fields")
        if "signature_scheme" not in self.get_deferred_fields() and (
                update_fields is None or "signature_scheme" in update_fields):
            changed = self.match_scheme()
            if changed and update_fields is not None:
                kwargs["update_fields"] = update_fields = {*update_fields, *changed}
        for name in ("signing_secret", "previous_secret"):
            value = getattr(self, name)
            if (update_fields is None or name in update_fields) and (
                    value or name == "signing_secret"):
                try:
                    validate_signing_secret(value)
                except ValidationError as exc:
                    raise ValidationError({name: exc.error_list}) from None
        super().save(*args, **kwargs)

    def match_scheme(self) -> list[str]:
        """Give the endpoint a key of its ``signature_scheme`` when its key is of the other
        scheme (not saved): a new endpoint's replaces the default one, an existing one's is
        rotated (:meth:`start_rotation`). Returns the names of the fields set."""
        if signing.key_scheme(self.signing_secret) == self.signature_scheme:
            return []
        if self._state.adding:
            self.signing_secret = signing.generate_key(self.signature_scheme)
            return ["signing_secret"]
        return self.start_rotation()

    @property
    def owner_may_enable(self) -> bool:
        """Whether its owner may switch it on again (see :func:`owner_may_enable`)."""
        return owner_may_enable(self.disabled_by)

    @property
    def secret(self) -> str:
        """The current signing key: a ``whsec_…`` secret (``v1``), or the ``whsk_…`` ed25519
        private key (``v1a``), which receivers never need (see :attr:`public_key`)."""
        return self.signing_secret

    @property
    def public_key(self) -> str | None:
        """The ``whpk_…`` public key receivers verify ``v1a`` signatures with (``None`` for a
        ``v1`` endpoint). Public keys are not secret."""
        if signing.key_scheme(self.signing_secret) != signing.ASYMMETRIC_VERSION:
            return None
        return signing.public_key(self.signing_secret)

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """Keys to sign with (``whsec_`` or ``whsk_``): the current one, then the previous one
        during its grace period."""
        now = now or timezone.now()
        result = [self.signing_secret]
        expires = self.previous_secret_expires_at
        if self.previous_secret and expires is not None and expires > now:
            result.append(self.previous_secret)
        return result

    def rotate_secret(self, grace: timedelta | None = None) -> str:
        """Replace the signing key (by one of the endpoint's scheme) and save; the old one
        keeps signing alongside the new one for ``grace`` (default ``SECRET_ROTATION_GRACE``,
        at most 7 days). Returns the new key (``whsec_…`` or ``whsk_…``).
        """
        self.save(update_fields=[*self.start_rotation(grace), "updated_at"])
        return self.signing_secret

    def start_rotation(self, grace: timedelta | None = None) -> list[str]:
        """What :meth:`rotate_secret` does, without saving: returns the names of the fields
        set."""
        limit = timedelta(seconds=MAX_ROTATION_GRACE)
        if grace is None:
            grace = timedelta(seconds=webhooks_settings.SECRET_ROTATION_GRACE)
        grace = max(timedelta(0), min(grace, limit))
        self.previous_secret = self.signing_secret if grace else ""
        self.previous_secret_expires_at = timezone.now() + grace if grace else None
        self.signing_secret = signing.generate_key(self.signature_scheme)
        return ["signing_secret", "previous_secret", "previous_secret_expires_at"]

    def clean(self) -> None:
        """Enforce ``MAX_ENDPOINTS_PER_OWNER`` (admin and API forms call this)."""
        super().clean()
        limit = webhooks_settings.MAX_ENDPOINTS_PER_OWNER
        if self.owner_id is None or limit is None:
            return
        others = Endpoint.objects.filter(owner_id=self.owner_id).exclude(pk=self.pk)
        if others.count() >= limit:
            raise ValidationError(
                _("This owner already has %(limit)d endpoints, the most allowed."),
                code="too_many_endpoints", params={"limit": limit},
            )

    @property
    def event_types(self) -> list[str]:
        """Subscribed event types (``"*"`` stands for all of them)."""
        return [s.event_type for s in self.subscriptions.all()]

    def set_subscriptions(self, events: Iterable[str],
                          payload: Mapping[str, Iterable[str]] | None = None) -> None:
        """Subscribe to exactly ``events``; with ``payload``, set each subscription's field
        allowlist too (``{event type: fields}``; types left out get every field)."""
        wanted = set(events)
        current = set() if self._state.adding else set(
            self.subscriptions.values_list("event_type", flat=True))
        if current - wanted:
            self.subscriptions.filter(event_type__in=current - wanted).delete()
        restrict = payload or {}
        Subscription.objects.bulk_create(
            [Subscription(endpoint=self, event_type=name,
                          fields=sorted(set(restrict.get(name, []))))
             for name in sorted(wanted - current)])
        if payload is not None:
            for name in sorted(wanted & current):
                self.subscriptions.filter(event_type=name).update(
                    fields=sorted(set(restrict.get(name, []))))
        if hasattr(self, "_prefetched_objects_cache"):
            self._prefetched_objects_cache.pop("subscriptions", None)

    @property
    def payload_fields(self) -> dict[str, list[str]]:
        """``{event type: fields}`` for the subscriptions that restrict the payload."""
        return {s.event_type: list(s.fields) for s in self.subscriptions.all() if s.fields}


class Subscription(models.Model):
    """One event type an endpoint receives; ``"*"`` subscribes it to every type."""

    endpoint = models.ForeignKey(
        Endpoint, on_delete=models.CASCADE, related_name="subscriptions",
        verbose_name=_("endpoint"),
    )
    event_type = models.CharField(_("event type"), max_length=100)
    fields = models.JSONField(
        _("payload fields"), default=list, blank=True,
        help_text=_("Only these fields of the payload's data are sent (keep personal data "
                    "from third parties). Empty: every field."),
    )

    class Meta:
        verbose_name = _("subscription")
        verbose_name_plural = _("subscriptions")
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_type"],
                                    name="webhooks_subscription_unique"),
        ]
        indexes = [models.Index(fields=["event_type"], name="webhooks_subscription_type")]

    def __str__(self) -> str:
        return self.event_type


class Event(PublicIdModel):
    """Something that happened, written in the same transaction as the change (the outbox).

    ``payload`` holds the exact JSON body every delivery sends, built once when the event is
    recorded. ``error`` is set instead when the payload could not be built. Its public id
    (``evt_…``) is the ``webhook-id`` receivers see.
    """

    id_prefix = ids.EVENT

    type = models.CharField(_("type"), max_length=100)
    owner = models.ForeignKey(
        owner_model_label(),
        verbose_name=_("owner"),
        null=True,
        blank=True,
        # No database constraint: a "deleted" event may name an owner deleted in the same
        # transaction. Deleting an owner sets the owner of their past events to NULL.
        on_delete=models.SET_NULL,
        db_constraint=False,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    payload = models.TextField(_("payload"), blank=True)
    error = models.TextField(_("error"), blank=True)
    dispatched_at = models.DateTimeField(_("dispatched"), null=True, blank=True)
    #: Per-object counter (1, 2, 3… for each model instance's events) so receivers can order.
    sequence = models.PositiveBigIntegerField(_("sequence"), null=True, blank=True)

    objects = EventQuerySet.as_manager()

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        ordering = ["-created_at"]
        indexes = [
            # The admin's event list: newest first.
            models.Index(fields=["created_at", "id"], name="webhooks_event_created"),
            models.Index(fields=["type", "-created_at"], name="webhooks_event_type"),
            models.Index(
                fields=["created_at"],
                name="webhooks_event_undispatched",
                condition=models.Q(dispatched_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.public_id}"

    @property
    def data(self) -> Any:
        """The ``data`` member of the payload, decoded (``None`` when the payload failed)."""
        if not self.payload:
            return None
        return json.loads(self.payload)["data"]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")


class Delivery(PublicIdModel):
    """One event to one endpoint: the unit of retries and of the at-least-once guarantee.

    A worker claims a due delivery by moving ``next_attempt_at`` to the end of its lease and
    writing its ``claim_token``; if the worker dies, the delivery is simply due again when the
    lease ends.
    """

    Status = DeliveryStatus
    id_prefix = ids.DELIVERY

    # No single-column indexes on the two keys: ``webhooks_delivery_unique`` (event, endpoint)
    # and ``webhooks_delivery_endpoint`` (endpoint, created_at) start with them and serve the
    # same lookups (cascades, an event's or an endpoint's deliveries). Every delivery row
    # version (an insert, then a claim and a result: none of them HOT) writes one entry per
    # index, so two fewer indexes are six fewer index entries per delivery.
    event = models.ForeignKey(
        Event, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("event"),
        db_index=False,
    )
    endpoint = models.ForeignKey(
        Endpoint, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("endpoint"),
        db_index=False,
    )
    status = models.CharField(
        _("status"), max_length=16, choices=DeliveryStatus.choices,
        default=DeliveryStatus.PENDING,
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(_("last status code"), null=True,
                                                        blank=True)
    last_error = models.CharField(_("last error"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhooks_delivery_unique"),
        ]
        indexes = [
            # The "due deliveries" query: status = pending AND next_attempt_at <= now.
            models.Index(
                fields=["next_attempt_at"],
                name="webhooks_delivery_due",
                condition=models.Q(status="pending"),
            ),
            models.Index(fields=["endpoint", "-created_at"], name="webhooks_delivery_endpoint"),
            # Finished deliveries by status, newest first (the admin's lists and filters,
            # retention's ``(status, created_at)`` scans). Not the pending ones: the delivery
            # loop finds those along ``webhooks_delivery_due`` (and ``…_inflight``), and a
            # ``status = 'pending'`` entry here made the planner prefer this index once the
            # statistics said (after a history of succeeded rows) that almost nothing is
            # pending: each claim then read and sorted the whole backlog. It also spares the
            # two index entries a delivery's pending row versions (insert, claim) wrote here.
            models.Index(fields=["status", "-created_at"], name="webhooks_delivery_status",
                         condition=~models.Q(status="pending")),
            # The admin's delivery list: newest first.
            models.Index(fields=["created_at", "id"], name="webhooks_delivery_created"),
            # Flow control: deliveries claimed by a worker right now, per endpoint.
            models.Index(
                fields=["endpoint", "next_attempt_at"],
                name="webhooks_delivery_inflight",
                condition=models.Q(claim_token__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.public_id


class DeliveryAttempt(PublicIdModel):
    """One HTTP request of a delivery and what came back (or why nothing did)."""

    id_prefix = ids.ATTEMPT

    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="attempt_log",
        verbose_name=_("delivery"),
    )
    # The delivery's endpoint, copied so that per-endpoint health (success rate and latency
    # over the last 24 hours) reads one index range instead of joining every delivery.
    endpoint = models.ForeignKey(
        Endpoint, on_delete=models.CASCADE, related_name="+", null=True, blank=True,
        db_index=False, verbose_name=_("endpoint"),
    )
    number = models.PositiveSmallIntegerField(_("attempt number"))
    created_at = models.DateTimeField(_("sent at"), default=timezone.now)
    url = models.CharField(_("URL"), max_length=2048)
    request_headers = models.JSONField(_("request headers"), default=dict)
    status_code = models.PositiveSmallIntegerField(_("status code"), null=True, blank=True)
    response_headers = models.JSONField(_("response headers"), default=dict, blank=True)
    response_body = models.TextField(_("response body"), blank=True)
    duration = models.FloatField(_("duration (seconds)"), default=0.0)
    error_class = models.CharField(_("error class"), max_length=64, blank=True)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["created_at"], name="webhooks_attempt_created"),
            models.Index(fields=["endpoint", "created_at"], name="webhooks_attempt_endpoint"),
        ]

    def __str__(self) -> str:
        return f"#{self.number} {self.status_code or self.error_class}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class FailedDelivery(Delivery):
    """Deliveries that exhausted their retries: the admin's "failed deliveries" list."""

    class Meta:
        proxy = True
        verbose_name = _("failed delivery")
        verbose_name_plural = _("failed deliveries")


class DispatchToken(models.Model):
    """At most one row: "a dispatch task is queued and has not started yet".

    A committing transaction that wrote events inserts the row and enqueues a task only if the
    insert went in; the task deletes the row before it fans out every undispatched event. So
    a thousand one-event transactions in a burst cost a few tasks, not a thousand, and no
    wake-up is ever lost: an event committed after the task took the row re-inserts it.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("dispatch token")
        verbose_name_plural = _("dispatch tokens")

    def __str__(self) -> str:
        return f"dispatch requested at {self.created_at:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def take_sql(cls, connection: Any) -> str:
        """The statement that takes the token (``""`` where there is none: other backends).

        A token older than ``TASK_TIME_LIMIT`` is taken over: its task was lost (its worker
        was killed, or the database was down when it started), and waiting for the sweep to
        drop it would hold every commit's dispatch back for a minute. At worst this queues one
        extra dispatch, which finds nothing to do.
        """
        if connection.vendor not in ("postgresql", "sqlite"):
            return ""
        q = connection.ops.quote_name
        table = q(cls._meta.db_table)
        return (
            f"INSERT INTO {table} ({q('id')}, {q('created_at')}) VALUES (1, %s) "  # noqa: S608
            f"ON CONFLICT ({q('id')}) DO UPDATE SET {q('created_at')} = "
            f"excluded.{q('created_at')} WHERE {table}.{q('created_at')} < %s"
        )

    @classmethod
    def take_params(cls, connection: Any) -> list[Any]:
        """Parameters of :meth:`take_sql`: now, and the age beyond which a token is stale."""
        now = timezone.now()
        stale = now - timedelta(seconds=webhooks_settings.TASK_TIME_LIMIT)
        adapt = connection.ops.adapt_datetimefield_value
        return [adapt(now), adapt(stale)]

    @classmethod
    def take(cls, using: str) -> bool:
        """Insert the token (or take over a stale one); ``True`` when this call did, so must
        enqueue."""
        connection = connections[using]
        sql = cls.take_sql(connection)
        if not sql:  # pragma: no cover - other backends: a savepoint and the unique key
            try:
                with transaction.atomic(using=using):
                    cls.objects.using(using).create(id=1)
            except IntegrityError:
                return False
            return True
        with connection.cursor() as cursor:
            cursor.execute(sql, cls.take_params(connection))
            return cursor.rowcount == 1

    @classmethod
    def release(cls, using: str) -> None:
        """Delete the token: from now on a commit asks for a new dispatch.

        A plain ``DELETE``: this runs at the start of every dispatch task, and Django's delete
        collector (signals, cascades: none apply here) cost more than the statement.
        """
        connection = connections[using]
        table = connection.ops.quote_name(cls._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE id = 1")  # noqa: S608 - quoted name


class ObjectSequence(models.Model):
    """The last sequence number given to an object's events (``key``: ``app_label.model:pk``
    of its concrete model), or to the custom events sent with one ``sequence_key``.

    Drawn (:mod:`webhooks.outbox`) in the transaction that writes the event: the row stays locked
    until it ends, so numbers follow commit order.
    """

    key = models.CharField(_("key"), max_length=255, primary_key=True)
    value = models.PositiveBigIntegerField(_("last number"), default=0)

    class Meta:
        verbose_name = _("object sequence")
        verbose_name_plural = _("object sequences")

    def __str__(self) -> str:
        return f"{self.key} #{self.value}"


class ReceivedWebhook(models.Model):
    """A message id a :func:`webhooks.receiving.webhook_receiver` view has handled.

    Ids are remembered per ``receiver`` (the view, or the name given to the decorator, with the
    URL's captured arguments), so one sender cannot suppress another's messages. Both columns
    hold the value itself, or ``sha256:<hex>`` of it when it is longer than the column.
    """

    #: The receiver of rows recorded before ids were scoped (migration
    #: ``received_per_receiver``): such a row suppresses its id on every receiver until it expires.
    ANY_RECEIVER = ""

    receiver = models.CharField(_("receiver"), max_length=255)
    webhook_id = models.CharField(_("webhook id"), max_length=255)
    received_at = models.DateTimeField(_("received"), default=timezone.now)
    expires_at = models.DateTimeField(_("forgotten after"), db_index=True)

    class Meta:
        verbose_name = _("received webhook")
        verbose_name_plural = _("received webhooks")
        constraints = [
            models.UniqueConstraint(fields=["receiver", "webhook_id"],
                                    name="webhooks_received_once_per_receiver"),
        ]

    def __str__(self) -> str:
        return f"{self.receiver or '*'}: {self.webhook_id}"

    @classmethod
    def forget_expired(cls, limit: int = 100) -> int:
        """Delete up to ``limit`` expired ids (cheap enough to run on every request)."""
        stale = list(cls.objects.filter(expires_at__lt=timezone.now())
                     .values_list("pk", flat=True)[:limit])
        if not stale:
            return 0
        return int(cls.objects.filter(pk__in=stale).delete()[0])
