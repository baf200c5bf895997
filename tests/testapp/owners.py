"""``WEBHOOKS["API_OWNER"]`` of the organization configuration (``tests.settings_org``)."""

from __future__ import annotations

from typing import Any

from tests.testapp.models import Organization


def organization_of(request: Any) -> Organization | None:
    """The organization the request acts for: the one named by the ``X-Organization`` header
    among the user's memberships, else the user's only (or first) organization."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    memberships = Organization.objects.filter(membership__user=user).order_by("pk")
    wanted = request.headers.get("X-Organization") if hasattr(request, "headers") else None
    if wanted:
        if not wanted.isdigit():
            return None
        return memberships.filter(pk=int(wanted)).first()
    return memberships.first()
