"""The test app's admin: organizations, searchable, so that with organizations as owners
(``tests.settings_org``) the endpoint admin's owner field autocompletes and endpoints are
searched by their organization's name or email."""

from __future__ import annotations

from django.contrib import admin

from tests.testapp.models import Organization


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "email"]
    ordering = ["name"]  # the autocomplete view pages its results
    # "=" (exact) checks that the endpoint admin keeps a lookup prefix in front of "owner__".
    search_fields = ["name", "=email"]
