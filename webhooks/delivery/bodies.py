"""Bodies: what one delivery sends, in its endpoint's format.

An event's stored payload is its Standard Webhooks body (``{"id", "type", "timestamp",
"sequence"?, "data", "changes"?}``, see :mod:`webhooks.events.payloads`). A delivery sends it
as is, or narrowed to its subscription's fields, or as a CloudEvents 1.0 structured-mode event
derived from it. A batch builds each distinct body (event, format, fields) once, whatever the
number of endpoints that get it (:class:`Bodies`).

The CloudEvents form keeps the stored JSON text of each member (``data`` byte for byte) and
only rewraps it, so the site's ``JSON_ENCODER`` is never run again:

* ``specversion`` ``"1.0"``, ``id`` the event id (``evt_…``, the ``webhook-id``), ``source``
  (``CLOUDEVENTS_SOURCE``, see :func:`cloudevents_source`), ``type`` (the event type after
  ``CLOUDEVENTS_TYPE_PREFIX``), ``time`` (``timestamp``), ``datacontenttype``
  ``"application/json"`` and ``data``;
* ``sequence``, an Integer extension attribute, when the event has one;
* ``changes``, a String extension attribute holding the JSON text of ``changes``, when the
  event has them: extension attributes cannot hold objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from json.decoder import WHITESPACE, scanstring  # type: ignore[attr-defined]
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from webhooks.conf import webhooks_settings as conf
from webhooks.events.payloads import restrict_payload
from webhooks.models import BodyFormat, Event

#: The media type of each body format (the ``Content-Type`` of its deliveries).
CONTENT_TYPES: dict[str, str] = {
    BodyFormat.STANDARD.value: "application/json",
    BodyFormat.CLOUDEVENTS.value: "application/cloudevents+json",
}
#: ``source`` when neither the setting nor the Sites framework gives one.
DEFAULT_SOURCE = "/webhooks"

_DECODER = json.JSONDecoder()
_encode_string = json.JSONEncoder(ensure_ascii=False).encode


def content_type(body_format: str) -> str:
    """The ``Content-Type`` of a body of ``body_format`` (unknown formats: plain JSON)."""
    return CONTENT_TYPES.get(body_format, CONTENT_TYPES[BodyFormat.STANDARD.value])


def cloudevents_source() -> str:
    """``CLOUDEVENTS_SOURCE``, or else ``https://<domain>`` of the current site when
    ``django.contrib.sites`` is installed with a ``SITE_ID`` (Django caches the site), or else
    ``/webhooks``. Reads the database at most once per process and site."""
    configured = conf.CLOUDEVENTS_SOURCE
    if configured:
        return configured
    if apps.is_installed("django.contrib.sites"):
        from django.contrib.sites.models import Site

        try:
            domain = Site.objects.get_current().domain
        except (ImproperlyConfigured, Site.DoesNotExist):
            return DEFAULT_SOURCE  # no SITE_ID (sites chosen per request), or no such row
        if domain:
            return domain if "://" in domain else f"https://{domain}"
    return DEFAULT_SOURCE


def members(document: str) -> dict[str, str]:
    """The JSON text of each member of the JSON object ``document``, by name.

    Values are found with the standard decoder (which parses them) but returned as they are
    written, so re-encoding can neither change nor fail on them.
    """
    found: dict[str, str] = {}
    index = WHITESPACE.match(document, 0).end()
    if document[index:index + 1] != "{":
        raise ValueError("not a JSON object")
    index = WHITESPACE.match(document, index + 1).end()
    if document[index:index + 1] == "}":
        return found
    while True:
        if document[index:index + 1] != '"':
            raise ValueError(f"expected a member name at {index}")
        name, index = scanstring(document, index + 1)
        index = WHITESPACE.match(document, index).end()
        if document[index:index + 1] != ":":
            raise ValueError(f"expected ':' at {index}")
        start = WHITESPACE.match(document, index + 1).end()
        _value, index = _DECODER.raw_decode(document, start)
        found[name] = document[start:index]
        index = WHITESPACE.match(document, index).end()
        separator = document[index:index + 1]
        index = WHITESPACE.match(document, index + 1).end()
        if separator == "}":
            return found
        if separator != ",":
            raise ValueError(f"expected ',' or '}}' at {index}")


def cloudevents_body(payload: str, source: str, type_prefix: str = "") -> str:
    """The CloudEvents 1.0 JSON event (structured mode) of a Standard Webhooks ``payload``.

    ``source`` and ``type_prefix`` as in :func:`cloudevents_source` and
    ``CLOUDEVENTS_TYPE_PREFIX``. Members of ``payload`` other than the envelope's are left
    out.
    """
    envelope = members(payload)
    event_type = envelope["type"]
    if type_prefix:
        event_type = _encode_string(type_prefix + json.loads(event_type))
    parts = ['{"specversion":"1.0","id":', envelope["id"], ',"source":', _encode_string(source),
             ',"type":', event_type, ',"time":', envelope["timestamp"],
             ',"datacontenttype":"application/json"']
    if "sequence" in envelope:
        parts += [',"sequence":', envelope["sequence"]]
    if "changes" in envelope:
        parts += [',"changes":', _encode_string(envelope["changes"])]
    parts += [',"data":', envelope.get("data", "null"), "}"]
    return "".join(parts)


@dataclass
class Bodies:
    """The bodies of one batch, each built once, on first use (from any sending thread: at
    worst two threads build the same body at the same moment, and one is kept)."""

    #: ``CLOUDEVENTS_SOURCE`` as resolved for this batch (when it has CloudEvents endpoints).
    source: str = DEFAULT_SOURCE
    type_prefix: str = ""
    _built: dict[tuple[Any, str, tuple[str, ...]], bytes] = field(
        default_factory=dict, init=False, repr=False)

    @classmethod
    def for_formats(cls, formats: set[str]) -> Bodies:
        """Bodies for a batch whose endpoints use ``formats`` (settings read now, on the
        worker's main thread)."""
        if BodyFormat.CLOUDEVENTS not in formats:
            return cls()
        return cls(source=cloudevents_source(), type_prefix=conf.CLOUDEVENTS_TYPE_PREFIX)

    def get(self, event: Event, body_format: str, fields: tuple[str, ...] = ()) -> bytes:
        """The body of ``event`` in ``body_format``, its ``data`` narrowed to ``fields``
        (none: all of it)."""
        key = (event.pk, body_format, fields)
        body = self._built.get(key)
        if body is None:
            payload = restrict_payload(event.payload, fields) if fields else event.payload
            if body_format == BodyFormat.CLOUDEVENTS:
                payload = cloudevents_body(payload, self.source, self.type_prefix)
            body = self._built.setdefault(key, payload.encode())
        return body
