"""OpenAPI annotations through drf-spectacular when it is installed, no-ops otherwise.

The API works without drf-spectacular; with it, ``SpectacularAPIView`` describes every route
exactly (request and response bodies, query parameters, error answers). Our annotations use
drf-spectacular's ``AutoSchema`` even when the site's ``DEFAULT_SCHEMA_CLASS`` is another one
(or is set after our views are imported), so the schema of this API never depends on that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

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


__all__ = [
    "OpenApiExample",
    "OpenApiParameter",
    "OpenApiResponse",
    "OpenApiTypes",
    "extend_schema",
    "extend_schema_field",
    "extend_schema_view",
    "view_schema",
]
