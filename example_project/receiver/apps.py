"""App configuration of the demo receiver."""

from django.apps import AppConfig


class ReceiverConfig(AppConfig):
    name = "example_project.receiver"
    label = "receiver"
    verbose_name = "Demo receiver"
