"""OpenAPI annotations through drf-spectacular when it is installed, no-ops otherwise.

The API works without drf-spectacular; with it, ``SpectacularAPIView`` describes every route
exactly (request and response bodies, query parameters, error answers). Our annotations use
drf-spectacular's ``AutoSchema`` even when the site's ``DEFAULT_SCHEMA_CLASS`` is another one
(or is set after our views are imported), so the schema of this API never depends on that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.utils.translation import gettext_lazy as _

from webhooks.events.schemas import EVENT_ID_PATTERN

T = TypeVar("T")

try:
    from drf_spectacular.openapi import AutoSchema
    from drf_spectacular.types import OpenApiTypes
    from drf_spectacular.utils import (
        OpenApiExample,
        OpenApiParameter,
        OpenApiResponse,
        extend_schema_field,
        extend_schema_view,
    )
    from drf_spectacular.utils import extend_schema as _extend_schema
except ImportError:  # pragma: no cover - exercised only without drf-spectacular
    class _Anything:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __getattr__(self, name: str) -> Any:
            return name

    def _decorator(*args: Any, **kwargs: Any) -> Callable[[T], T]:
        return lambda obj: obj

    AutoSchema = None  # type: ignore[assignment,misc]
    OpenApiTypes = _Anything()  # type: ignore[assignment,misc]
    OpenApiExample = OpenApiParameter = OpenApiResponse = _Anything  # type: ignore[assignment,misc]
    _extend_schema = extend_schema_field = extend_schema_view = _decorator


def _base_schema() -> Any:
    """drf-spectacular's ``AutoSchema`` unless the site's default already is one."""
    from rest_framework.settings import api_settings

    configured = api_settings.DEFAULT_SCHEMA_CLASS
    if AutoSchema is None or (isinstance(configured, type)
                              and issubclass(configured, AutoSchema)):
        return None
    return AutoSchema


def extend_schema(**kwargs: Any) -> Callable[[T], T]:
    """drf-spectacular's ``extend_schema``, built on its ``AutoSchema`` whatever the site's
    ``DEFAULT_SCHEMA_CLASS`` (which drf-spectacular would otherwise read at import time)."""
    decorate: Any = _extend_schema(**kwargs)

    def wrap(target: T) -> T:
        base = _base_schema()
        if base is not None and getattr(target, "schema", None) is None:
            target.schema = base  # type: ignore[attr-defined]
        return decorate(target)

    return wrap


def view_schema() -> Any:
    """The ``schema`` of our views (see :func:`extend_schema`)."""
    from rest_framework.schemas import DefaultSchema

    base = _base_schema()
    return DefaultSchema() if base is None else base()


#: The headers every delivery carries (Standard Webhooks), as OpenAPI header parameters.
SIGNATURE_HEADERS = [
    ("webhook-id", {"type": "string", "pattern": EVENT_ID_PATTERN},
     _("The event's id, the body's id too; the same on every attempt: deduplicate on it.")),
    ("webhook-timestamp", {"type": "string", "pattern": "^[0-9]+$"},
     _("When this attempt was signed, in Unix seconds: refuse a request too far from your "
       "clock (Standard Webhooks suggests 5 minutes).")),
    ("webhook-signature", {"type": "string"},
     _("Space-separated signatures of `{webhook-id}.{webhook-timestamp}.{body}`: `v1,<base64 "
       "HMAC-SHA256>` with the endpoint's whsec_ secret, or `v1a,<base64 ed25519>` verified "
       "with its whpk_ public key; several during a secret rotation. Accept the request if "
       "one matches.")),
]


#: What the answers to a delivery mean.
WEBHOOK_RESPONSES = {
    "2XX": _("Received. The body of the answer is ignored."),
    "410": _("Gone: the endpoint is disabled (a Zapier REST Hook is deleted) and receives "
             "nothing more."),
    "429": _("Slow down: deliveries to the endpoint pause (for Retry-After, within bounds) "
             "and this one is retried; 502 and 504 pause them too."),
    "default": _("Anything else, or no answer in time: retried on the site's schedule."),
}


def event_webhooks(result: dict[str, Any], generator: Any = None, request: Any = None,
                   public: bool = False, **kwargs: Any) -> dict[str, Any]:
    """A drf-spectacular postprocessing hook: the site's OpenAPI document gains one webhook
    per event type (``webhooks``, OpenAPI 3.1), its request body the type's JSON Schema
    (:func:`webhooks.events.schemas.event_schema`, under ``components/schemas`` as
    ``<Type>Event``, ``OrderCreatedEvent`` for ``order.created``) with an example, and the
    signature headers.

    Opt in with ``SPECTACULAR_SETTINGS = {"OAS_VERSION": "3.1.0", "POSTPROCESSING_HOOKS":
    ["drf_spectacular.hooks.postprocess_schema_enums", "webhooks.api.schema.event_webhooks"]}``.
    An OpenAPI 3.0 document has no ``webhooks``: it is left as it is, with a warning.
    """
    from drf_spectacular.drainage import warn

    from webhooks.events.catalog import get_catalog
    from webhooks.events.schemas import event_schema

    from .examples import example_body

    if not str(result.get("openapi", "")).startswith(("3.1", "3.2")):
        warn('webhooks.api.schema.event_webhooks needs SPECTACULAR_SETTINGS["OAS_VERSION"] = '
             '"3.1.0": OpenAPI 3.0 has no webhooks, so none were added.')
        return result
    catalog = get_catalog()
    components = result.setdefault("components", {}).setdefault("schemas", {})
    hooks = result.setdefault("webhooks", {})
    for event_type in sorted(catalog.types.values(), key=lambda t: t.name):
        schema = event_schema(event_type, catalog)
        schema.pop("$schema")  # a 3.1 document's schemas are 2020-12 already
        name = "".join(word.capitalize() for word in
                       event_type.name.replace("_", ".").split(".")) + "Event"
        if components.get(name, schema) == schema:
            components[name] = schema
            body: dict[str, Any] = {"$ref": f"#/components/schemas/{name}"}
        else:  # the site has a component of that name: ours goes inline
            body = schema
        hooks[event_type.name] = {"post": {
            "operationId": f"webhook_{event_type.name.replace('.', '_')}",
            "summary": event_type.name,
            "description": event_type.description,
            "tags": ["webhooks"],
            "parameters": [{"name": header, "in": "header", "required": True,
                            "schema": header_schema, "description": str(text)}
                           for header, header_schema, text in SIGNATURE_HEADERS],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": body, "example": example_body(event_type, catalog)}}},
            "responses": {status: {"description": str(text)}
                          for status, text in WEBHOOK_RESPONSES.items()},
        }}
    return result


__all__ = [
    "OpenApiExample",
    "OpenApiParameter",
    "OpenApiResponse",
    "OpenApiTypes",
    "event_webhooks",
    "extend_schema",
    "extend_schema_field",
    "extend_schema_view",
    "view_schema",
]
