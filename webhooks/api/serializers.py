"""Serializers of the REST API: every field is declared, and none of them is the owner."""

from __future__ import annotations

import json
from typing import Any

from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers
from rest_framework.reverse import reverse

from webhooks import ids, services
from webhooks.conf import MAX_ROTATION_GRACE
from webhooks.exceptions import InvalidReplayWindow
from webhooks.models import (
    WILDCARD,
    Delivery,
    DeliveryAttempt,
    DisabledBy,
    Endpoint,
    Event,
    PublicIdModel,
)
from webhooks.validators import header_errors, validate_endpoint_url

from .schema import extend_schema_field

#: Largest ``max_concurrency`` an endpoint may ask for.
MAX_CONCURRENCY_LIMIT = 1000
#: Largest ``rate_limit`` (deliveries per second) an endpoint may ask for.
MAX_RATE_LIMIT = 10_000


def subscribable_types(wildcard: bool = True) -> list[str]:
    """The types an endpoint can subscribe to (:func:`webhooks.services.subscribable_types`),
    sorted, and ``"*"``."""
    names = sorted(services.subscribable_types())
    return [WILDCARD, *names] if wildcard else names


class PublicIdField(serializers.CharField):
    """An object's public id (``ep_…``, ``dlv_…``, ``att_…``, ``evt_…``), read-only; its
    source is the object's primary key (``pk`` by default, or a foreign key such as
    ``endpoint_id``). The schema says string, with the id's pattern (the validator is for it:
    read-only fields validate nothing)."""

    def __init__(self, model: type[PublicIdModel], **kwargs: Any) -> None:
        self.prefix = model.id_prefix
        kwargs.setdefault("source", "pk")
        kwargs["read_only"] = True
        kwargs["validators"] = [RegexValidator(ids.pattern(self.prefix))]
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> str:
        return ids.to_public(self.prefix, value)


class IdInputField(serializers.CharField):
    """An id in a request: the public id (``ep_…``) or the bare UUID, given as the UUID it
    names; anything else is invalid."""

    default_error_messages = {"invalid": _("Enter an id such as {example}.")}

    def __init__(self, model: type[PublicIdModel], **kwargs: Any) -> None:
        self.model = model
        kwargs.setdefault("max_length", 64)
        super().__init__(**kwargs)

    def run_validation(self, data: Any = serializers.empty) -> Any:
        text = super().run_validation(data)
        if text in (None, ""):
            return text
        pk = self.model.parse_id(text)
        if pk is None:
            self.fail("invalid", example=f"{self.model.id_prefix}_01HV…")
        return pk


class EventTypeField(serializers.ChoiceField):
    """An event type of the catalog, or ``"*"``; the choices are read from the settings every
    time a serializer is built, so the schema lists them as an enum."""

    default_error_messages = {
        "invalid_choice": _('"{input}" is not an event type of this site. See event-types/.'),
    }

    def __init__(self, *, wildcard: bool = True, **kwargs: Any) -> None:
        kwargs.pop("choices", None)
        super().__init__(choices=subscribable_types(wildcard), **kwargs)


@extend_schema_field({
    "type": "object",
    "additionalProperties": {"type": "string"},
    "description": "Extra HTTP headers sent with every delivery (names to values).",
    "example": {"Authorization": "Bearer 3f1c…"},
})
class HeadersField(serializers.Field):
    """Custom headers: a JSON object of header names to string values, validated like the
    admin validates them (names, reserved names, values, count and lengths)."""

    def to_internal_value(self, data: Any) -> dict[str, str]:
        errors = header_errors(data)
        if errors:
            raise serializers.ValidationError(errors, code="invalid_headers")
        return dict(data)

    def to_representation(self, value: Any) -> dict[str, str]:
        return dict(value or {})


class DisabledByField(serializers.ChoiceField):
    """``Endpoint.disabled_by``: null instead of ``""`` for an active endpoint."""

    def to_representation(self, value: Any) -> Any:
        return str(value) if value else None


class EndpointSerializer(serializers.ModelSerializer):
    """An endpoint of the request's owner. The owner is never a field: the view sets it to
    the owner the request acts for."""

    id = PublicIdField(Endpoint, help_text=_("The endpoint's id: ep_…"))
    url = serializers.URLField(
        max_length=2048, validators=[validate_endpoint_url],
        help_text=_("Where deliveries are POSTed: a public http(s) URL."),
    )
    description = serializers.CharField(max_length=255, allow_blank=True, required=False,
                                        default="")
    events = serializers.ListField(
        source="event_types", child=EventTypeField(), allow_empty=False, max_length=200,
        help_text=_('Event types this endpoint receives; "*" stands for all of them.'),
    )
    payload_fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField(max_length=100), max_length=200),
        required=False, default=dict,
        help_text=_('Restrict the payload\'s data to some fields, per subscribed event type: '
                    '{"order.created": ["id", "status"]}. Types left out get every field. '
                    "event-types/ lists the fields of each type."),
    )
    is_active = serializers.BooleanField(
        required=False, default=True,
        help_text=_("Turn deliveries off or on. Switching an endpoint on clears why it was "
                    "disabled; an endpoint that staff disabled (disabled_by: staff) cannot be "
                    "switched on here."),
    )
    headers = HeadersField(required=False, default=dict)
    signature_scheme = serializers.ChoiceField(
        choices=Endpoint.Scheme.choices, required=False,
        help_text=_('How deliveries are signed: "v1" (HMAC-SHA256 with a whsec_ secret, the '
                    'default) or "v1a" (ed25519: verify with the whpk_ public key that '
                    "secret/ shows). Changing it rotates the key: the old one keeps signing "
                    "for the grace period. Left out of an update: unchanged."),
    )
    body_format = serializers.ChoiceField(
        choices=Endpoint.Format.choices, required=False,
        help_text=_('The body of deliveries: "standard" (Standard Webhooks JSON, the default) '
                    'or "cloudevents" (the same event as a CloudEvents 1.0 structured-mode '
                    "event, Content-Type application/cloudevents+json). Both are signed with "
                    "the webhook-* headers. Left out of an update: unchanged."),
    )
    rate_limit = serializers.IntegerField(
        min_value=1, max_value=MAX_RATE_LIMIT, allow_null=True, required=False, default=None,
        help_text=_("Most deliveries per second to this endpoint; null: no limit."),
    )
    max_concurrency = serializers.IntegerField(
        min_value=1, max_value=MAX_CONCURRENCY_LIMIT, allow_null=True, required=False,
        default=None,
        help_text=_("Most requests in flight to this endpoint at once; null: the site's "
                    "default."),
    )
    paused_until = serializers.DateTimeField(
        read_only=True, allow_null=True,
        help_text=_("Deliveries are held until then: the receiver answered 429, 502 or "
                    "504, or kept failing (circuit breaker)."))
    pause_reason = serializers.CharField(
        read_only=True, help_text=_("rate_limited (429), overloaded (502 or 504), "
                                    "circuit_open, or empty."))
    created_at = serializers.DateTimeField(read_only=True)
    disabled_reason = serializers.CharField(
        read_only=True, help_text=_("Why the endpoint was disabled (empty when active)."))
    disabled_by = DisabledByField(
        choices=[c for c in DisabledBy.values if c], read_only=True, allow_null=True,
        help_text=_("Who disabled the endpoint (null when active): owner (you), system (it "
                    "answered 410 Gone or kept failing: enable it once it works again), or "
                    "staff (only the site's staff can enable it again)."))
    disabled_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_success_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_failure_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = Endpoint
        fields = ["id", "url", "description", "events", "is_active", "headers", "rate_limit",
                  "max_concurrency", "paused_until", "pause_reason", "created_at",
                  "payload_fields", "signature_scheme", "body_format", "disabled_reason",
                  "disabled_by", "disabled_at", "last_success_at", "last_failure_at"]

    def to_representation(self, instance: Endpoint) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["events"] = sorted(data["events"])  # the views prefetch the subscriptions
        return data

    def validate_events(self, value: list[str]) -> list[str]:
        return sorted(set(value))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        restricted = attrs.get("payload_fields")
        if restricted:
            events = attrs.get("event_types")
            if events is None and self.instance is not None:
                events = self.instance.event_types
            errors = services.validate_payload_fields(restricted, events or [])
            if errors:
                raise serializers.ValidationError(
                    {"payload_fields": [m for messages in errors.values() for m in messages]})
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Endpoint:
        """Create the endpoint within the owner's limit (Django's ``ValidationError`` when it
        is reached: the views answer 400)."""
        return services.create_endpoint(validated_data.pop("owner"),
                                        validated_data.pop("event_types"),
                                        payload=validated_data.pop("payload_fields", None),
                                        **validated_data)

    def update(self, instance: Endpoint, validated_data: dict[str, Any]) -> Endpoint:
        """Save only what the request changes (:func:`webhooks.services.update_endpoint`):
        the delivery engine updates the health fields of the same row concurrently."""
        events = validated_data.pop("event_types", None)
        restricted = validated_data.pop("payload_fields", None)
        active = validated_data.pop("is_active", instance.is_active)
        fields = list(validated_data)
        if active != instance.is_active:
            instance.is_active = active
            fields.append("is_active")
        for name, value in validated_data.items():
            setattr(instance, name, value)
        return services.update_endpoint(instance, fields,
                                        disabled_reason=services.DISABLED_BY_OWNER,
                                        events=events, payload=restricted)


class SecretSerializer(serializers.Serializer):
    """What a receiver verifies an endpoint's signatures with: its secret (``v1``) or its
    public key (``v1a``), never the ``v1a`` private key. Only one of them is present."""

    # Not read_only: the schema would then list both as always present.
    secret = serializers.CharField(
        required=False, help_text=_("v1 endpoints: the current signing secret, whsec_…: "
                                    "verify signatures with any Standard Webhooks library."))
    public_key = serializers.CharField(
        required=False, help_text=_("v1a endpoints: the current public key, whpk_…: verify "
                                    "the v1a (ed25519) signatures with it. It cannot sign."))

    @staticmethod
    def of(endpoint: Endpoint) -> dict[str, Any]:
        """The data of ``endpoint``: ``{"public_key": "whpk_…"}`` for a ``v1a`` endpoint,
        ``{"secret": "whsec_…"}`` otherwise."""
        public_key = endpoint.public_key
        if public_key is not None:
            return {"public_key": public_key}
        return {"secret": endpoint.secret}


class RotateSecretSerializer(serializers.Serializer):
    grace_period = serializers.IntegerField(
        min_value=0, max_value=MAX_ROTATION_GRACE, required=False, allow_null=True,
        help_text=_("Seconds the old secret keeps signing next to the new one (at most 7 "
                    "days). Default: the site's SECRET_ROTATION_GRACE."),
    )


class RotatedSecretSerializer(SecretSerializer):
    """The new secret (``v1``) or public key (``v1a``), and how long the old one signs."""

    previous_secret_expires_at = serializers.DateTimeField(
        read_only=True, allow_null=True,
        help_text=_("Until when deliveries are also signed with the old secret."))


class ReplaySerializer(serializers.Serializer):
    since = serializers.DateTimeField(
        help_text=_("Re-send what failed or was missed since this time (at most the site's "
                    "REPLAY_WINDOW ago, 14 days by default)."))

    def validate_since(self, value: Any) -> Any:
        try:
            return services.check_replay_window(value)
        except InvalidReplayWindow as exc:
            raise serializers.ValidationError(exc.message, code=exc.code) from None


class ReplayResultSerializer(serializers.Serializer):
    retried = serializers.IntegerField(read_only=True,
                                       help_text=_("Failed deliveries made due again."))
    added = serializers.IntegerField(read_only=True,
                                     help_text=_("Missed events given a new delivery."))


class DeliveryEventSerializer(serializers.Serializer):
    id = PublicIdField(Event, help_text=_("The webhook-id receivers see: evt_…"))
    type = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


class DeliverySerializer(serializers.ModelSerializer):
    """One event to one endpoint, and where its delivery stands."""

    id = PublicIdField(Delivery, help_text=_("The delivery's id: dlv_…"))
    endpoint = PublicIdField(Endpoint, source="endpoint_id",
                             help_text=_("The endpoint's id: ep_…"))
    event = DeliveryEventSerializer(read_only=True)
    status = serializers.ChoiceField(choices=Delivery.Status.choices, read_only=True)
    attempts = serializers.IntegerField(read_only=True)
    next_attempt_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_attempt_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_status_code = serializers.IntegerField(read_only=True, allow_null=True)
    last_error = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)

    class Meta:
        model = Delivery
        fields = ["id", "endpoint", "event", "status", "attempts", "next_attempt_at",
                  "last_attempt_at", "last_status_code", "last_error", "created_at"]


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    """One HTTP request of a delivery and what came back."""

    id = PublicIdField(DeliveryAttempt, help_text=_("The attempt's id: att_…"))
    number = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    url = serializers.CharField(read_only=True)
    request_headers = serializers.DictField(child=serializers.CharField(), read_only=True)
    status_code = serializers.IntegerField(read_only=True, allow_null=True)
    response_headers = serializers.DictField(child=serializers.CharField(), read_only=True)
    response_body = serializers.CharField(read_only=True)
    duration = serializers.FloatField(read_only=True, help_text=_("Seconds."))
    error_class = serializers.CharField(read_only=True)
    error = serializers.CharField(read_only=True)
    succeeded = serializers.BooleanField(read_only=True)

    class Meta:
        model = DeliveryAttempt
        fields = ["id", "number", "created_at", "url", "request_headers", "status_code",
                  "response_headers", "response_body", "duration", "error_class", "error",
                  "succeeded"]


class EventBodySerializer(serializers.Serializer):
    """The JSON body of a webhook, as receivers get it."""

    id = serializers.CharField(read_only=True, help_text=_("evt_…, also the webhook-id "
                                                           "header: deduplicate on it."))
    type = serializers.CharField(read_only=True)
    timestamp = serializers.CharField(read_only=True, help_text=_("ISO 8601, UTC."))
    # Not read_only: the schema would then list it as always present.
    sequence = serializers.IntegerField(required=False, help_text=_(
        "1, 2, 3… per object, in commit order: apply an event only if its sequence is higher "
        "than the last one applied for that object. Model events always have one; custom "
        "events only when sent with a sequence_key."))
    changes = serializers.DictField(required=False, help_text=_(
        'On updated events of models that track fields: {field: {"old": …, "new": …}} of '
        "the tracked fields that changed."))
    # A declared field (the metaclass takes it out of the class), not Serializer.data.
    data = serializers.JSONField(  # type: ignore[assignment]
        read_only=True, help_text=_("What the event is about."))


@extend_schema_field(EventBodySerializer(allow_null=True))
class PayloadField(serializers.Field):
    """The stored body (a JSON string) as an object; null when it could not be built."""

    def to_representation(self, value: str) -> Any:
        return json.loads(value) if value else None


#: Attempts a delivery's detail shows: its latest ones (``attempts/`` lists them all).
ATTEMPT_LOG_LIMIT = 10


class SentPayloadField(PayloadField):
    """The body a delivery sends (its subscription's payload field allowlist applied)."""

    def get_attribute(self, instance: Delivery) -> str:
        return services.sent_payload(instance)


class DeliveryDetailSerializer(DeliverySerializer):
    """A delivery with the body it sends and its latest attempts, oldest first.

    The view gives each delivery ``latest_attempts`` (newest first, at most
    :data:`ATTEMPT_LOG_LIMIT`) and ``attempt_log_count``; without them they are read here.
    """

    payload = SentPayloadField(read_only=True, source="*")
    attempt_log = serializers.SerializerMethodField(help_text=_(
        "The latest attempts (at most 10), oldest first: attempts_url lists every one."))
    attempt_log_count = serializers.SerializerMethodField(
        help_text=_("How many attempts the delivery has."))
    attempts_url = serializers.SerializerMethodField(
        help_text=_("Every attempt of the delivery, newest first, a page at a time."))

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "payload", "attempt_log", "attempt_log_count",
                  "attempts_url"]

    @extend_schema_field(DeliveryAttemptSerializer(many=True))
    def get_attempt_log(self, obj: Delivery) -> Any:
        latest = getattr(obj, "latest_attempts", None)
        if latest is None:
            latest = list(obj.attempt_log.order_by("-number")[:ATTEMPT_LOG_LIMIT])
        return DeliveryAttemptSerializer(latest[::-1], many=True, context=self.context).data

    def get_attempt_log_count(self, obj: Delivery) -> int:
        count = getattr(obj, "attempt_log_count", None)
        return obj.attempt_log.count() if count is None else int(count)

    def get_attempts_url(self, obj: Delivery) -> str:
        request = self.context.get("request")
        match = getattr(request, "resolver_match", None)
        namespace = match.namespace if match is not None and match.namespace else "webhooks-api"
        return reverse(f"{namespace}:delivery-attempts", args=[obj.public_id], request=request)


class EventTypeSerializer(serializers.Serializer):
    type = serializers.CharField(read_only=True, help_text=_("The event type, e.g. "
                                                             "order.created."))
    description = serializers.CharField(read_only=True)
    payload_fields = serializers.ListField(
        child=serializers.CharField(), read_only=True, allow_null=True,
        help_text=_("The fields of data, which a subscription can restrict the payload to "
                    "(null when only the sending code knows them)."))
    schema = serializers.DictField(read_only=True, help_text=_(
        "The JSON Schema (draft 2020-12) of the whole body of this type's webhooks: the "
        "envelope and data (derived from the serializer that builds it, or declared by the "
        "site). Open: members may be added, never removed."))
    example = EventBodySerializer(read_only=True, help_text=_(
        "An example body; data is built from the serializer that builds the real one."))


class ZapierSubscribeSerializer(serializers.Serializer):
    """Zapier REST Hooks subscribe body: ``target_url`` (or ``hookUrl``) and ``event``."""

    target_url = serializers.URLField(max_length=2048, validators=[validate_endpoint_url],
                                      required=False)
    hookUrl = serializers.URLField(
        max_length=2048, validators=[validate_endpoint_url], required=False,
        help_text=_("Same as target_url (the name Zapier's newer templates use)."))
    event = EventTypeField(wildcard=False, help_text=_("The event type this hook receives."))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        urls = {attrs[k] for k in ("target_url", "hookUrl") if attrs.get(k)}
        if len(urls) != 1:
            raise serializers.ValidationError(
                {"target_url": [_("Give the URL to deliver to as target_url (or hookUrl).")
                                if not urls else _("target_url and hookUrl differ.")]},
                code="target_url")
        attrs["url"] = urls.pop()
        return attrs


class ZapierSubscriptionSerializer(serializers.Serializer):
    id = PublicIdField(Endpoint, help_text=_("Keep it to unsubscribe: ep_…, the id of the "
                                             "endpoint the subscription is."))
    target_url = serializers.CharField(source="url", read_only=True)
    event = serializers.SerializerMethodField()

    def get_event(self, obj: Endpoint) -> str:
        types = obj.event_types
        return types[0] if types else ""


class ZapierSampleSerializer(serializers.Serializer):
    event = EventTypeField(wildcard=False, help_text=_("The event type to show samples of."))


class ZapierUnsubscribeSerializer(serializers.Serializer):
    id = IdInputField(Endpoint, required=False, help_text=_(
        "The id subscribe returned (ep_…; the bare UUID is accepted too)."))
    target_url = serializers.CharField(max_length=2048, required=False)
    hookUrl = serializers.CharField(max_length=2048, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not any(attrs.get(k) for k in ("id", "target_url", "hookUrl")):
            raise serializers.ValidationError(
                {"id": [_("Give the subscription's id, or its target_url.")]}, code="required")
        return attrs


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(read_only=True)
