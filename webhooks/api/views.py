"""Views of the REST API. Each request acts for one owner, the one ``WEBHOOKS["API_OWNER"]``
finds for it (:func:`webhooks.owners.api_owner`: by default the user): every queryset is that
owner's, so another owner's object is a 404 on every route, and the owner of what is created is
that owner, never a field of the body. A request that acts for no owner is a 403."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count, OuterRef, Prefetch, QuerySet, Subquery
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.pagination import BasePagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer, as_serializer_error
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from webhooks import exceptions as webhooks_errors
from webhooks import services
from webhooks.events.catalog import Catalog, EventType, get_catalog
from webhooks.events.payloads import payload_fields, restrict_payload, subscriber_fields
from webhooks.events.schemas import event_schema
from webhooks.models import WILDCARD, Delivery, DeliveryAttempt, Endpoint, Event, Subscription
from webhooks.owners import api_owner

from . import serializers as s
from .examples import example_body
from .filters import (
    AttemptPagination,
    DeliveryFilter,
    DeliveryFilterSerializer,
    WebhooksPagination,
)
from .permissions import configured_permissions
from .schema import (
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    view_schema,
)
from .throttling import WebhooksSendThrottle, WebhooksThrottle

#: Actions that make us send HTTP requests: they also count against ``webhooks_send``.
SEND_ACTIONS = frozenset({"test", "replay", "retry"})


class EndpointDisabled(exceptions.APIException):
    """409: the endpoint must be switched on first."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = _("The endpoint is disabled: enable it (is_active: true) first.")
    default_code = "endpoint_disabled"


class NoOwner(exceptions.PermissionDenied):
    """403: the request is authenticated but acts for no owner (``API_OWNER`` found none)."""

    default_detail = _("You do not act for any owner of webhook endpoints here (for example, "
                       "you belong to no organization, or not to the one you asked for).")
    default_code = "no_owner"


class DeliveryInProgress(exceptions.APIException):
    """409: a worker holds the delivery right now."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = _("A worker is sending this delivery right now; try again later.")
    default_code = "delivery_in_progress"


def api_exception(exc: Exception) -> Exception:
    """The API's answer to an error of :mod:`webhooks.services` or of model validation
    (``exc`` itself for anything else)."""
    if isinstance(exc, webhooks_errors.EndpointDisabled):
        return EndpointDisabled()
    if isinstance(exc, webhooks_errors.ServiceError):
        field = ("since" if isinstance(exc, webhooks_errors.InvalidReplayWindow)
                 else "is_active" if isinstance(exc, webhooks_errors.DisabledByStaff)
                 else api_settings.NON_FIELD_ERRORS_KEY)
        return exceptions.ValidationError({field: [exc.message]}, code=exc.code)
    if isinstance(exc, DjangoValidationError):
        return exceptions.ValidationError(as_serializer_error(exc))
    return exc


def _errors(*codes: int) -> dict[int, Any]:
    """Error answers for the schema: every route may answer 401/403 (authentication and
    permissions are the site's), 406 (an ``Accept`` header no renderer satisfies) and 429
    (throttled); ``codes`` adds more."""
    described = {
        400: OpenApiResponse(description=_("Invalid input: an object of field names (or "
                                           "non_field_errors) to lists of messages.")),
        404: OpenApiResponse(s.ErrorSerializer, description=_("Not found (or not yours).")),
        409: OpenApiResponse(s.ErrorSerializer, description=_("Not possible in this state.")),
    }
    answers = {
        401: OpenApiResponse(s.ErrorSerializer, description=_("Not authenticated.")),
        403: OpenApiResponse(s.ErrorSerializer, description=_(
            "Not allowed: the site's permissions refuse the request, or it acts for no owner "
            "(for example, a user who belongs to no organization).")),
        406: OpenApiResponse(s.ErrorSerializer,
                             description=_("The Accept header asks for no format we serve.")),
        429: OpenApiResponse(s.ErrorSerializer, description=_("Throttled.")),
    }
    answers.update({code: described[code] for code in codes})
    return answers


class WebhooksAPIView(viewsets.GenericViewSet):
    """What every view of the API shares: settings-driven permissions, our throttles on top
    of the site's, cursor pagination, and the owner the request acts for (:meth:`get_owner`).
    Authentication is the site's DRF default."""

    pagination_class: type[BasePagination] | None = WebhooksPagination
    schema = view_schema()
    # Any id reaches the view, which answers a JSON 404 for one that is not an id of yours.
    lookup_value_regex = "[^/]+"

    def get_permissions(self) -> list[BasePermission]:
        return configured_permissions()

    def get_throttles(self) -> list[BaseThrottle]:
        throttles = [*super().get_throttles(), WebhooksThrottle()]
        if getattr(self, "action", None) in SEND_ACTIONS:
            throttles.append(WebhooksSendThrottle())
        return throttles

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """After authentication, permissions and throttles: the owner, or a 403 on every
        route (the event type catalog included) for a request that acts for none."""
        super().initial(request, *args, **kwargs)
        self.get_owner()

    def get_owner(self) -> Any:
        """The owner this request acts for (:func:`webhooks.owners.api_owner`), resolved once
        per request; :class:`NoOwner` (403) when there is none."""
        if not hasattr(self, "_owner"):
            self._owner = api_owner(self.request)
        if self._owner is None:
            raise NoOwner
        return self._owner

    def get_object(self) -> Any:
        """The object of the URL's id, its public id (``ep_…``, ``dlv_…``) or its bare UUID,
        among the request's owner's: any other id is a 404, the same as an unknown one."""
        queryset = self.filter_queryset(self.get_queryset())
        pk = queryset.model.parse_id(str(self.kwargs[self.lookup_url_kwarg or self.lookup_field]))
        obj = get_object_or_404(queryset if pk else queryset.none(), pk=pk)
        self.check_object_permissions(self.request, obj)
        return obj

    def endpoints(self) -> QuerySet[Endpoint]:
        """The request's owner's endpoints, and only theirs (staff included)."""
        return Endpoint.objects.filter(owner_id=self.get_owner().pk)

    def handle_exception(self, exc: Exception) -> Response:
        return super().handle_exception(api_exception(exc))


@extend_schema_view(
    list=extend_schema(summary="List your endpoints", responses={
        200: s.EndpointSerializer(many=True), **_errors(404)}),
    create=extend_schema(summary="Create an endpoint", responses={
        201: s.EndpointSerializer, **_errors(400)}),
    retrieve=extend_schema(summary="Read an endpoint", responses={
        200: s.EndpointSerializer, **_errors(404)}),
    update=extend_schema(summary="Replace an endpoint", responses={
        200: s.EndpointSerializer, **_errors(400, 404)}),
    partial_update=extend_schema(summary="Change an endpoint", responses={
        200: s.EndpointSerializer, **_errors(400, 404)}),
    destroy=extend_schema(summary="Delete an endpoint", responses={
        204: None, **_errors(404)}),
)
class EndpointViewSet(mixins.ListModelMixin, mixins.CreateModelMixin,
                      mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
                      mixins.DestroyModelMixin, WebhooksAPIView):
    """Your webhook endpoints: the URLs you receive events at, and what they receive."""

    serializer_class = s.EndpointSerializer
    queryset = Endpoint.objects.none()  # for the schema; get_queryset() is what counts

    def get_queryset(self) -> QuerySet[Endpoint]:
        return self.endpoints().prefetch_related(
            Prefetch("subscriptions", queryset=Subscription.objects.only(
                "endpoint_id", "event_type", "fields"))
        )

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        serializer.save(owner=self.get_owner())

    def finalize_response(self, request: Request, response: Any, *args: Any,
                          **kwargs: Any) -> Any:
        """Every answer about endpoints may carry credentials (custom header values, the
        signing secret): none of them is ever stored by a cache or the browser."""
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(summary="Read the signing secret (v1) or public key (v1a)", request=None,
                   description="A v1 endpoint answers its whsec_ secret, a v1a endpoint its "
                               "whpk_ public key (its private key is never shown).",
                   responses={200: s.SecretSerializer, **_errors(404)})
    @action(detail=True, methods=["get"])
    def secret(self, request: Request, pk: Any = None) -> Response:
        endpoint = self.get_object()
        return Response(s.SecretSerializer(s.SecretSerializer.of(endpoint)).data)

    @extend_schema(summary="Rotate the signing secret or key", request=s.RotateSecretSerializer,
                   responses={200: s.RotatedSecretSerializer, **_errors(400, 404)})
    @action(detail=True, methods=["post"], url_path="rotate-secret",
            url_name="rotate-secret")
    def rotate_secret(self, request: Request, pk: Any = None) -> Response:
        endpoint = self.get_object()
        params = s.RotateSecretSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        grace = params.validated_data.get("grace_period")
        services.rotate_secret(endpoint, None if grace is None else timedelta(seconds=grace))
        rotated = {**s.SecretSerializer.of(endpoint),
                   "previous_secret_expires_at": endpoint.previous_secret_expires_at}
        return Response(s.RotatedSecretSerializer(rotated).data)

    @extend_schema(
        summary="Send a test event", request=None,
        description="Sends a webhook.test event to this endpoint alone, whatever it "
                    "subscribes to. Answers with the delivery, to follow in deliveries/.",
        responses={202: s.DeliverySerializer, **_errors(404, 409)})
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: Any = None) -> Response:
        endpoint = services.require_active(self.get_object())
        delivery = services.send_test_event(endpoint)
        return Response(s.DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Replay failed and missed events", request=s.ReplaySerializer,
        description="Failed deliveries created since `since` are tried again now, and events "
                    "the endpoint should have received since then but did not (it was "
                    "disabled, or subscribed later) are sent.",
        responses={202: s.ReplayResultSerializer, **_errors(400, 404, 409)})
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, pk: Any = None) -> Response:
        endpoint = self.get_object()
        params = s.ReplaySerializer(data=request.data)
        params.is_valid(raise_exception=True)
        services.require_active(endpoint)
        retried, added = services.replay(endpoint, params.validated_data["since"])
        data = s.ReplayResultSerializer({"retried": retried, "added": added}).data
        return Response(data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="The event types this endpoint receives, as it receives them",
        description="Like event-types/, for the types this endpoint subscribes to (all of "
                    "them for \"*\"): each schema and example is narrowed to the "
                    "subscription's payload fields.",
        responses={200: s.EventTypeSerializer(many=True), **_errors(404)})
    @action(detail=True, methods=["get"], url_path="event-types", url_name="event-types",
            pagination_class=None)
    def event_types(self, request: Request, pk: Any = None) -> Response:
        endpoint = self.get_object()
        restrictions = {sub.event_type: sub.fields or [] for sub in endpoint.subscriptions.all()}
        catalog = get_catalog()
        subscribed = services.subscribable_types()
        names = subscribed if WILDCARD in restrictions else [
            name for name in restrictions if name in subscribed]
        items = event_type_items([catalog.types[name] for name in names], catalog,
                                 restrictions)
        return Response(s.EventTypeSerializer(items, many=True).data)


def event_type_items(types: Iterable[EventType], catalog: Catalog,
                     restrictions: Mapping[str, Sequence[str]] | None = None,
                     ) -> list[dict[str, Any]]:
    """The catalog entries of ``types``, by name. With an endpoint's ``restrictions``
    (``{event type or "*": fields}``) each schema and example is the body as that endpoint
    receives it."""
    items = []
    for t in sorted(types, key=lambda t: t.name):
        fields = subscriber_fields(t.name, restrictions or {})
        example = example_body(t, catalog)
        if fields:
            example = json.loads(restrict_payload(json.dumps(example), fields))
        items.append({"type": t.name, "description": t.description,
                      "payload_fields": payload_fields(t.name, catalog),
                      "schema": event_schema(t, catalog, fields=fields),
                      "example": example})
    return items


@extend_schema_view(
    list=extend_schema(summary="List deliveries", parameters=[DeliveryFilterSerializer],
                       responses={200: s.DeliverySerializer(many=True), **_errors(400, 404)}),
    retrieve=extend_schema(summary="Read a delivery with its attempts",
                           responses={200: s.DeliveryDetailSerializer, **_errors(404)}),
)
class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WebhooksAPIView):
    """The delivery log of your endpoints: one delivery per event and endpoint."""

    queryset = Delivery.objects.none()
    filter_backends = [DeliveryFilter]

    def get_queryset(self) -> QuerySet[Delivery]:
        deliveries = Delivery.objects.filter(endpoint__owner_id=self.get_owner().pk)
        action_ = getattr(self, "action", None)
        if action_ == "retrieve":
            # The latest attempts only, and how many there are: one query each.
            attempts = DeliveryAttempt.objects.filter(delivery=OuterRef("pk"))
            return deliveries.select_related("event").annotate(
                attempt_log_count=Subquery(attempts.order_by().values("delivery")
                                           .annotate(n=Count("pk")).values("n")),
            ).prefetch_related(Prefetch(
                "attempt_log", to_attr="latest_attempts",
                queryset=DeliveryAttempt.objects.order_by("-number")[:s.ATTEMPT_LOG_LIMIT]))
        if action_ == "attempts":
            return deliveries.only("pk")
        # The list never shows bodies: leave the (large) payload in the database.
        return deliveries.select_related("event").defer("event__payload", "event__error")

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        if getattr(self, "action", None) == "retrieve":
            return s.DeliveryDetailSerializer
        return s.DeliverySerializer

    @extend_schema(
        summary="List a delivery's attempts",
        description="Every attempt of the delivery, newest first, by cursor (the delivery's "
                    "detail shows the latest ones only).",
        responses={200: s.DeliveryAttemptSerializer(many=True), **_errors(404)})
    @action(detail=True, methods=["get"], pagination_class=AttemptPagination)
    def attempts(self, request: Request, pk: Any = None) -> Response:
        delivery = self.get_object()
        page = self.paginate_queryset(DeliveryAttempt.objects.filter(delivery=delivery))
        data = s.DeliveryAttemptSerializer(page, many=True).data
        return self.get_paginated_response(data)

    @extend_schema(
        summary="Retry a delivery now", request=None,
        description="A finished delivery (failed or succeeded) gets one more attempt; a "
                    "pending one waiting for its next retry is brought forward.",
        responses={202: s.DeliverySerializer, **_errors(404, 409)})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: Any = None) -> Response:
        delivery = self.get_object()
        services.require_active(delivery.endpoint)
        if not services.retry_deliveries(Delivery.objects.filter(pk=delivery.pk)):
            raise DeliveryInProgress
        delivery.refresh_from_db(fields=["status", "next_attempt_at", "claim_token"])
        return Response(s.DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    list=extend_schema(summary="The event type catalog",
                       responses={200: s.EventTypeSerializer(many=True), **_errors()}),
)
class EventTypeViewSet(mixins.ListModelMixin, WebhooksAPIView):
    """Every event type this site sends, with a description, the JSON Schema of its body and
    an example body."""

    serializer_class = s.EventTypeSerializer
    pagination_class = None

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        catalog = get_catalog()
        items = event_type_items(catalog.types.values(), catalog)
        return Response(s.EventTypeSerializer(items, many=True).data)


@extend_schema_view(
    create=extend_schema(summary="Zapier: subscribe", request=s.ZapierSubscribeSerializer,
                         responses={201: s.ZapierSubscriptionSerializer, **_errors(400)}),
    destroy=extend_schema(summary="Zapier: unsubscribe by id",
                          responses={204: None, **_errors(404)}),
)
class ZapierHookViewSet(WebhooksAPIView):
    """The Zapier REST Hooks contract: subscribe creates an endpoint of yours for one event
    type (marked ``rest_hook``), unsubscribe deletes it, and so does a 410 Gone from its URL
    (the protocol's rule; see ``webhooks.delivery.recording``)."""

    serializer_class = s.ZapierSubscriptionSerializer
    queryset = Endpoint.objects.none()
    pagination_class = None

    def get_queryset(self) -> QuerySet[Endpoint]:
        return self.endpoints()

    def create(self, request: Request) -> Response:
        params = s.ZapierSubscribeSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        endpoint = services.create_endpoint(self.get_owner(), [params.validated_data["event"]],
                                            url=params.validated_data["url"],
                                            description="Zapier", rest_hook=True)
        return Response(s.ZapierSubscriptionSerializer(endpoint).data,
                        status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, pk: Any = None) -> Response:
        self.get_object().delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="Zapier: unsubscribe by id or target URL",
                   request=s.ZapierUnsubscribeSerializer,
                   responses={204: None, **_errors(400, 404)})
    @action(detail=False, methods=["post"])
    def unsubscribe(self, request: Request) -> Response:
        params = s.ZapierUnsubscribeSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        values = params.validated_data
        endpoints = self.get_queryset()
        if values.get("id"):
            endpoints = endpoints.filter(pk=values["id"])
        else:
            endpoints = endpoints.filter(url=values.get("target_url") or values["hookUrl"])
        deleted, _by_model = endpoints.delete()
        if not deleted:
            raise exceptions.NotFound
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Zapier: sample data for an event type",
        description="Your three latest events of this type (newest first), or an example "
                    "when there is none yet: what Zapier's performList asks for.",
        parameters=[s.ZapierSampleSerializer],
        responses={200: s.EventBodySerializer(many=True), **_errors(400)})
    @action(detail=False, methods=["get"])
    def sample(self, request: Request) -> Response:
        params = s.ZapierSampleSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        event_type = params.validated_data["event"]
        recent = (Event.objects.filter(owner_id=self.get_owner().pk, type=event_type, error="")
                  .order_by("-created_at").values_list("payload", flat=True)[:3])
        bodies = [s.PayloadField().to_representation(payload) for payload in recent]
        if not bodies:
            catalog = get_catalog()
            bodies = [example_body(catalog.types[event_type], catalog)]
        return Response(bodies)
