"""Inboxes (one URL and signing secret each) and the webhooks they received."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Inbox(models.Model):
    """Where webhooks are received: ``/receiver/<slug>/``. They are verified with ``secret``
    and with the keys of every endpoint that posts there (see ``views.verification_keys``)."""

    slug = models.SlugField(unique=True, help_text="Webhooks are received at /receiver/<slug>/.")
    secret = models.CharField(
        max_length=255, blank=True,
        help_text="A whsec_… secret to verify with, besides the keys of the endpoints that post "
                  "to this URL (optional).",
    )

    class Meta:
        verbose_name_plural = "inboxes"

    def __str__(self) -> str:
        return self.slug


class ReceivedWebhook(models.Model):
    inbox = models.ForeignKey(Inbox, on_delete=models.CASCADE, related_name="webhooks")
    webhook_id = models.CharField(max_length=255, blank=True)
    event_type = models.CharField(max_length=100, blank=True)
    verified = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    headers = models.JSONField(default=dict)
    body = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["inbox", "webhook_id"])]

    def __str__(self) -> str:
        return f"{self.event_type or '?'} {self.webhook_id}"
