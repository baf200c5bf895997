"""URLs of the demo site: the admin, the demo receiver, the webhooks REST API and its schema,
and ``/`` leading to the receiver."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/receiver/", permanent=False)),
    path("admin/", admin.site.urls),
    path("receiver/", include("example_project.receiver.urls")),
    # The self-service API of django-webhooks (docs/api.md).
    path("api/webhooks/", include("webhooks.api.urls")),
]

if settings.HAS_SCHEMA:
    from drf_spectacular.views import (
        SpectacularAPIView,
        SpectacularRedocView,
        SpectacularSwaggerView,
    )

    urlpatterns += [
        path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
        path("api/schema/swagger-ui/", SpectacularSwaggerView.as_view(url_name="schema"),
             name="swagger-ui"),
        path("api/schema/redoc/", SpectacularRedocView.as_view(url_name="schema"),
             name="redoc"),
    ]
