"""URLs of the demo site: the admin, the demo receiver, and ``/`` leading to the receiver."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/receiver/", permanent=False)),
    path("admin/", admin.site.urls),
    path("receiver/", include("example_project.receiver.urls")),
]
