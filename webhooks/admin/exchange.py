"""An attempt's HTTP exchange as blocks a person reads: the request (method, URL and headers,
one per line) and the response (status line, headers, and the body: JSON pretty-printed, HTML
and other long bodies collapsed, everything shown as escaped text, never rendered).

Used by a delivery's page (each attempt's blocks, capped so the page stays small however many
attempts it has) and by an attempt's own page (whole, as stored)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.http.response import HttpResponseBase
from django.template.defaultfilters import filesizeformat
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from webhooks.models import DeliveryAttempt

from .base import short_datetime
from .health import format_latency

#: A body longer than this (characters, or lines) is collapsed behind a summary line.
OPEN_BODY_CHARS = 800
OPEN_BODY_LINES = 16


def header_lines(headers: Mapping[str, Any] | None, limit: int | None) -> SafeString:
    """``Name: value`` lines, the names marked; with ``limit``, as many headers as fit in
    ``limit`` characters, then how many more there are."""
    pairs: list[tuple[str, str]] = []
    used, items = 0, list((headers or {}).items())
    for name, value in items:
        line = f"{name}: {value}"
        if limit is not None and used + len(line) > limit and pairs:
            break
        if limit is not None and len(line) > limit:
            value = f"{str(value)[:max(limit - len(name) - 2, 0)]}…"
        pairs.append((str(name), str(value)))
        used += len(line) + 1
    lines = format_html_join("\n", '<span class="webhooks-name">{}:</span> {}', pairs)
    rest = len(items) - len(pairs)
    if rest:
        more = ngettext("… %(count)d more header (on the attempt's page)",
                        "… %(count)d more headers (on the attempt's page)", rest)
        lines = format_html('{}\n<span class="webhooks-quiet">{}</span>', lines,
                            more % {"count": rest})
    return lines


@dataclass
class Body:
    """A response body as the admin shows it."""

    text: str  #: what is shown: pretty-printed JSON, or the body as stored
    kind: str  #: ``json``, ``html`` or ``text``
    size: int  #: bytes stored
    capped: bool = False  #: ``text`` is the first part only

    @property
    def collapsed(self) -> bool:
        """HTML, and long bodies, start folded."""
        return (self.kind == "html" or len(self.text) > OPEN_BODY_CHARS
                or self.text.count("\n") >= OPEN_BODY_LINES)

    @property
    def summary(self) -> str:
        """The line that opens a collapsed body: what it is and how big."""
        kind = {"json": _("JSON body"), "html": _("HTML body, shown as text"),
                "text": _("Body")}[self.kind]
        lines = len(self.text.splitlines()) or 1
        return "{} · {} · {}".format(
            kind, filesizeformat(self.size),
            ngettext("%(count)d line", "%(count)d lines", lines) % {"count": lines})


def read_body(body: str, headers: Mapping[str, Any] | None, limit: int | None) -> Body:
    """What ``body`` is (by its content type, or its first character) and its text to show:
    JSON indented, anything else as it is; with ``limit``, its first ``limit`` characters."""
    content_type = next((str(v).lower() for k, v in (headers or {}).items()
                         if str(k).lower() == "content-type"), "")
    start = body.lstrip()[:1]
    text, kind = body, "text"
    if "json" in content_type or start in ("{", "["):
        # Not JSON after all (or cut short when it was stored): shown as it is.
        with contextlib.suppress(ValueError):
            text, kind = json.dumps(json.loads(body), indent=2, ensure_ascii=False), "json"
    if kind == "text" and ("html" in content_type or "xml" in content_type or start == "<"):
        kind = "html"
    capped = limit is not None and len(text) > limit
    return Body(text[:limit] if capped else text, kind, len(body.encode()), capped)


def status_line(attempt: DeliveryAttempt) -> str:
    """``200 OK``, ``599``, or what happened instead of an answer (``No response``)."""
    code = attempt.status_code
    if code is None:
        return _("No response")
    try:  # Django's table of reason phrases (this module stays clear of HTTP clients)
        phrase = HttpResponseBase(status=code).reason_phrase
    except ValueError:
        return str(code)
    return str(code) if phrase == "Unknown Status Code" else f"{code} {phrase}"


def outcome(attempt: DeliveryAttempt) -> str:
    """``succeeded`` (a 2xx) or ``failed``: the colour of its status."""
    code = attempt.status_code
    return "succeeded" if code is not None and 200 <= code < 300 else "failed"


def request_block(attempt: DeliveryAttempt, limit: int | None = None) -> SafeString:
    """The request: ``POST`` and the URL, then its headers, one per line."""
    return format_html('<pre class="webhooks-http"><strong>POST</strong> {}\n{}</pre>',
                       attempt.url, header_lines(attempt.request_headers, limit))


def response_block(attempt: DeliveryAttempt, limit: int | None = None) -> SafeString:
    """The response: status line and headers, then the body (collapsed when HTML or long)."""
    if attempt.status_code is None:
        return format_html('<pre class="webhooks-http"><strong class="webhooks-status-failed">'
                           '{}</strong></pre>', status_line(attempt))
    head = format_html('<pre class="webhooks-http"><strong class="webhooks-status-{}">{}'
                       '</strong>\n{}</pre>', outcome(attempt), status_line(attempt),
                       header_lines(attempt.response_headers, limit))
    if not attempt.response_body:
        return format_html('{}<p class="webhooks-quiet">{}</p>', head, _("No body."))
    body = read_body(attempt.response_body, attempt.response_headers, limit)
    text = format_html('<pre class="webhooks-body">{}{}</pre>', body.text,
                       "…" if body.capped else "")
    if body.collapsed:
        text = format_html('<details class="webhooks-details"><summary>{}</summary>{}</details>',
                           body.summary, text)
    return format_html("{}{}", head, text)


def attempt_block(attempt: DeliveryAttempt, limit: int | None = None) -> SafeString:
    """One attempt on its delivery's page: when, what came back and how fast, the error, then
    the request and the response side by side (stacked when the page is narrow)."""
    return render_to_string("admin/webhooks/delivery/attempt.html", {
        "attempt": attempt,
        "url": reverse("admin:webhooks_deliveryattempt_change", args=[attempt.public_id]),
        "sent_at": short_datetime(attempt.created_at),
        "status": status_line(attempt),
        "outcome": outcome(attempt),
        "duration": format_latency(attempt.duration),
        "request": request_block(attempt, limit),
        "response": response_block(attempt, limit),
    })
