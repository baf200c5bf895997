"""``WEBHOOKS["API_OWNER"]`` of the demo: the organization a REST API request acts for."""

from __future__ import annotations

from typing import Any

from example_project.shop.models import Organization

#: The request header that picks one of the user's organizations (its primary key).
HEADER = "X-Organization"


def request_organization(request: Any) -> Organization | None:
    """The organization named by the ``X-Organization`` header, if the user is one of its
    members; without the header, the user's first organization (by primary key). ``None`` (the
    API answers 403) for an anonymous user, a user without organizations, or a header naming
    an organization the user is not a member of."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    mine = Organization.objects.filter(memberships__user=user).order_by("pk")
    chosen = request.headers.get(HEADER, "").strip()
    if not chosen:
        return mine.first()
    if not (chosen.isascii() and chosen.isdigit()) or len(chosen) > 18:
        return None  # not a primary key (and no query with a number too big for the column)
    return mine.filter(pk=int(chosen)).first()
