from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

api = [path("api/webhooks/", include("webhooks.api.urls"))]

urlpatterns = [
    path("admin/", admin.site.urls),
    *api,
    # The schema of our API alone (the test settings leave DRF's schema class as it is).
    path("api/schema/", SpectacularAPIView.as_view(patterns=api), name="schema"),
]
