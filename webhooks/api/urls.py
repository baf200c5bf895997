"""Routes of the REST API: ``path("api/webhooks/", include("webhooks.api.urls"))``."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from .views import DeliveryViewSet, EndpointViewSet, EventTypeViewSet, ZapierHookViewSet

app_name = "webhooks-api"

router = SimpleRouter()
router.register("endpoints", EndpointViewSet, basename="endpoint")
router.register("deliveries", DeliveryViewSet, basename="delivery")
router.register("event-types", EventTypeViewSet, basename="event-type")
router.register("zapier/hooks", ZapierHookViewSet, basename="zapier-hook")

urlpatterns = router.urls
