"""Emailing a notice to an endpoint's owner: what the ``webhooks.tasks.notify`` task runs.

Recipients come from ``WEBHOOKS["OWNER_EMAILS"]`` (owned endpoints) or ``SITE_EMAILS``
(site-wide ones); the message is rendered from templates a site can override
(``webhooks/email/notice_subject.txt``, ``notice.txt``, ``notice.html``) and sent with Django's
email machinery (``EMAIL_BACKEND``, ``DEFAULT_FROM_EMAIL``). Whatever goes wrong (a mail server
that refuses, a broken template, a recipients function that raises) is logged on the
``webhooks`` logger and never raised: a notice is not worth a failed task.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils.module_loading import import_string

from webhooks import ids
from webhooks.conf import webhooks_settings as conf
from webhooks.models import Endpoint
from webhooks.notifications.notices import DISABLED, FAILING

logger = logging.getLogger("webhooks")

#: The templates (under ``webhooks/templates/``): override them in a site's own templates.
SUBJECT_TEMPLATE = "webhooks/email/notice_subject.txt"
TEXT_TEMPLATE = "webhooks/email/notice.txt"
HTML_TEMPLATE = "webhooks/email/notice.html"


def default_owner_emails(owner: Any) -> list[str]:
    """The default ``OWNER_EMAILS``: the owner's email address when it has a non-empty one
    (a user's email field, ``EMAIL_FIELD``; any other model's ``email`` attribute), else
    nobody."""
    get_name = getattr(owner, "get_email_field_name", None)
    address = getattr(owner, get_name() if callable(get_name) else "email", None)
    return [address] if isinstance(address, str) and address.strip() else []


def site_emails() -> list[str]:
    """Who hears about site-wide endpoints: ``SITE_EMAILS``, else the addresses of
    ``settings.ADMINS`` (``(name, address)`` pairs, or plain addresses)."""
    configured = conf.SITE_EMAILS
    if configured is not None:
        return list(configured)
    admins = getattr(settings, "ADMINS", []) or []
    return [entry if isinstance(entry, str) else entry[1] for entry in admins]


def recipients(endpoint: Endpoint) -> list[str]:
    """The addresses a notice about ``endpoint`` goes to (without blanks and repeats)."""
    if endpoint.owner_id is None:
        found: Iterable[Any] = site_emails()
    else:
        path = conf.OWNER_EMAILS
        owner_emails = default_owner_emails if path is None else import_string(path)
        found = owner_emails(endpoint.owner) or []
    unique: dict[str, None] = {}
    for address in found:
        if isinstance(address, str) and address.strip():
            unique.setdefault(address.strip(), None)
    return list(unique)


def display_url(url: str) -> str:
    """``url`` as the emails show it: without user name and password, and with its query
    string (tokens often travel there) reduced to ``?…``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path}" + ("?…" if parts.query else "")


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def context(endpoint: Endpoint, notice: Mapping[str, Any]) -> dict[str, Any]:
    """The templates' context (``docs/notifications.md`` lists it). The endpoint itself is
    left out: its secret has no business in a template."""
    kind = notice["kind"]
    since = _when(notice.get("since"))
    link = conf.NOTIFY_LINK
    return {
        "kind": kind,
        "endpoint_id": endpoint.public_id,
        "url": display_url(endpoint.url),
        "description": endpoint.description,
        "owner": endpoint.owner,
        "site_wide": endpoint.owner_id is None,
        "reason": notice.get("reason") or "",
        "at": _when(notice.get("at")),
        "since": since,
        "previous": notice.get("previous") or "",
        "link": link.replace("{endpoint_id}", endpoint.public_id) if link else "",
        # failing: when it is switched off if nothing changes (DISABLE_AFTER).
        "disabled_from": (since + timedelta(seconds=conf.DISABLE_AFTER)
                          if kind == FAILING and since else None),
        # disabled: how far back a replay reaches once it is enabled again.
        "replay_days": conf.REPLAY_WINDOW // 86400 if kind == DISABLED else None,
        # disabled: who switched it off ("staff": only staff may switch it on again).
        "disabled_by": str(endpoint.disabled_by) if kind == DISABLED else "",
    }


def render(endpoint: Endpoint, notice: Mapping[str, Any], to: list[str],
           ) -> EmailMultiAlternatives:
    """The email of ``notice`` about ``endpoint``: plain text with an HTML alternative, from
    ``DEFAULT_FROM_EMAIL``."""
    values = context(endpoint, notice)
    subject = " ".join(render_to_string(SUBJECT_TEMPLATE, values).split())
    message = EmailMultiAlternatives(subject, render_to_string(TEXT_TEMPLATE, values), to=to)
    message.attach_alternative(render_to_string(HTML_TEMPLATE, values), "text/html")
    return message


def send_notice(notice: Mapping[str, Any]) -> bool:
    """Email ``notice`` (what :func:`webhooks.notifications.receivers.queue_email` queued) to
    its endpoint's recipients. ``True`` when it was sent; ``False`` when there was no one to
    send it to, the endpoint is gone, or sending failed (logged). Never raises."""
    kind, endpoint_id = notice.get("kind"), str(notice.get("endpoint_id"))
    try:
        # The public id (a notice queued before it was used: the bare UUID), logged as ep_….
        pk = Endpoint.parse_id(endpoint_id)
        endpoint_id = ids.to_public(ids.ENDPOINT, pk) if pk else endpoint_id
        endpoint = Endpoint.objects.filter(pk=pk).select_related("owner").first() if pk else None
        if endpoint is None:
            logger.info("Endpoint %s is gone: its %s notice is not emailed.", endpoint_id, kind)
            return False
        to = recipients(endpoint)
        if not to:
            logger.info("Nobody to email the %s notice of endpoint %s to.", kind, endpoint_id)
            return False
        render(endpoint, notice, to).send()
    except Exception as exc:  # a notice must never fail a worker's task
        # The exception's class and message only: the endpoint's URL (which may hold
        # credentials) and the mail server's settings stay out of the log.
        logger.error("Could not email the %s notice of endpoint %s: %s: %s", kind,
                     endpoint_id, type(exc).__name__, exc,
                     extra={"webhook_endpoint_id": endpoint_id, "webhook_notice": kind})
        return False
    logger.info("Emailed the %s notice of endpoint %s to %d recipient(s).", kind, endpoint_id,
                len(to), extra={"webhook_endpoint_id": endpoint_id, "webhook_notice": kind})
    return True
