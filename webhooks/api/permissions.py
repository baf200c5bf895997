"""Who may use the API: the site's choice (``WEBHOOKS["API_PERMISSION_CLASSES"]``), on top of
a floor that no setting removes: the request has a user. Which owner it then acts for is
``WEBHOOKS["API_OWNER"]``'s answer (the views answer 403 when there is none)."""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from webhooks.conf import webhooks_settings


class HasUser(BasePermission):
    """An authenticated user made the request (anonymous requests act for no owner)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.pk is not None)


def configured_permissions() -> list[BasePermission]:
    """``HasUser`` and an instance of every class ``API_PERMISSION_CLASSES`` names, read at
    request time so that ``override_settings`` applies."""
    return [HasUser(), *(import_string(path)()
                         for path in webhooks_settings.API_PERMISSION_CLASSES)]
