"""Admin of the demo receiver."""

from django.contrib import admin

from example_project.receiver.models import Inbox, ReceivedWebhook


@admin.register(Inbox)
class InboxAdmin(admin.ModelAdmin):
    list_display = ["slug"]


@admin.register(ReceivedWebhook)
class ReceivedWebhookAdmin(admin.ModelAdmin):
    list_display = ["received_at", "inbox", "event_type", "webhook_id", "verified", "error"]
    list_filter = ["verified", "inbox", "event_type"]
    search_fields = ["webhook_id", "body"]
    readonly_fields = [f.name for f in ReceivedWebhook._meta.fields]
