"""Strict validation of bodies against our event schemas, with the ``jsonschema`` package.

Our schemas are open (a member added later must not break receivers), so the tests close them
first: wherever a schema lists ``properties``, no other member may appear. A body that passes
has exactly the members the schema describes, each of the described type and format.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

#: Keywords whose values are data, not schemas: left as they are.
_DATA_KEYWORDS = frozenset({"enum", "const", "examples", "default", "required"})


def closed(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` wherever it lists ``properties``."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: value if key in _DATA_KEYWORDS else closed(value)
              for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        result["additionalProperties"] = False
    return result


def strict_validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of ``schema``, closed, with formats checked. ``schema`` itself must be a
    valid draft 2020-12 schema."""
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(closed(schema), format_checker=Draft202012Validator.FORMAT_CHECKER)


def errors_of(validator: Draft202012Validator, instance: Any) -> list[str]:
    return sorted(f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
                  for error in validator.iter_errors(instance))


def strict_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    """Why ``instance`` does not match ``schema`` (closed, formats checked): ``[]`` if it
    does."""
    return errors_of(strict_validator(schema), instance)


class SentBodies:
    """Wraps ``webhooks.http.post`` for the whole test suite (``tests/conftest.py``): every
    JSON body sent in this process that is one of our events is checked against its type's
    schema (of the settings at that moment), and what does not match is kept in
    :attr:`problems`.

    A body whose ``data`` holds only some of the listed fields was sent to a subscription with
    a payload field allowlist: it is checked against the schema narrowed to those fields (the
    test of allowlists, in tests/test_schemas.py, names them). Rows that tests make by hand
    without a real payload (no ``evt_`` id) are not ours to check.
    """

    def __init__(self, post: Any) -> None:
        self.post = post
        self.problems: list[str] = []
        #: (catalog, validator) by (catalog id, type, fields): a test sends many bodies of a
        #: few types. The catalog is kept, so that its id is not reused by another one.
        self.validators: dict[tuple[int, str, tuple[str, ...] | None], tuple[Any, Any]] = {}

    def __call__(self, url: str, body: bytes, headers: dict[str, str], **kwargs: Any) -> Any:
        if headers.get("Content-Type") == "application/json":
            self.check(body)
        return self.post(url, body, headers, **kwargs)

    def check(self, body: bytes) -> None:
        from webhooks.events.catalog import get_catalog

        try:
            document = json.loads(body)
        except ValueError:
            return
        if not (isinstance(document, dict)
                and str(document.get("id", "")).startswith("evt_")):
            return
        catalog = get_catalog()
        event_type = document.get("type")
        if event_type not in catalog:
            self.problems.append(f"{event_type!r} is not in the catalog: {body[:200]!r}")
            return
        listed = self.validator(catalog, event_type, None).schema["properties"]["data"].get(
            "properties")
        data, fields = document.get("data"), None
        if isinstance(data, dict) and isinstance(listed, dict) and set(data) < set(listed):
            fields = tuple(sorted(data))
        self.problems += [f"{event_type} (fields {fields}): {error}" for error in
                          errors_of(self.validator(catalog, event_type, fields), document)]

    def validator(self, catalog: Any, event_type: str, fields: tuple[str, ...] | None) -> Any:
        from webhooks.events.schemas import event_schema

        key = (id(catalog), event_type, fields)
        if key not in self.validators:
            schema = event_schema(event_type, catalog, fields=fields)
            self.validators[key] = (catalog, Draft202012Validator(
                closed(schema), format_checker=Draft202012Validator.FORMAT_CHECKER))
        return self.validators[key][1]
