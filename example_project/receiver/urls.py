"""URLs of the demo receiver."""

from django.urls import path

from example_project.receiver import views

app_name = "receiver"
urlpatterns = [
    path("", views.inbox_list, name="list"),
    path("<slug:slug>/", views.receive, name="receive"),
]
