"""Validation of what users configure: endpoint URLs, custom headers and signing secrets.

These run at save time (model field validators, so admin forms and DRF serializers apply them
too) and give clear messages. The check that counts is repeated at send time by the HTTP
client, on the address actually connected to.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from webhooks import signing, ssrf
from webhooks.conf import webhooks_settings as conf

#: RFC 9110 token characters: what a header name may be made of.
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
HEADER_NAME_MAX = 100
#: Connection-level headers, meaningless or harmful end to end.
HOP_BY_HOP_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
})
#: Headers we set ourselves; an endpoint's custom headers may never replace them.
RESERVED_HEADERS = frozenset({
    "content-type", "content-length", "content-encoding", "host", "user-agent",
    "accept-encoding", "expect",
})
RESERVED_HEADER_PREFIX = "webhook-"


def validate_endpoint_url(value: str, *, resolve: bool = False) -> None:
    """Scheme, length, shape, and that the host is not a refused address.

    An address written in the URL (in any notation) or ``localhost`` is checked; a host
    *name* is not resolved (``ssrf.is_name``): whether it resolves inside the network is
    nobody's business who saves a URL, so an internal name and an unknown one are accepted
    alike, and both are refused when sending. ``resolve=True`` (staff tools) resolves names
    too. The message never says which address a name resolved to, nor whether anything
    listens.
    """
    if len(value) > conf.MAX_URL_LENGTH:
        raise ValidationError(
            _("The URL is too long: %(length)d characters, at most %(limit)d."),
            code="url_too_long", params={"length": len(value), "limit": conf.MAX_URL_LENGTH},
        )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValidationError(_("Enter a valid URL."), code="invalid") from None
    scheme = parts.scheme.lower()
    if conf.REQUIRE_HTTPS and scheme != "https":
        raise ValidationError(_("The URL must start with https://."), code="https_required")
    if scheme not in ("http", "https"):
        raise ValidationError(_("The URL must start with http:// or https://."),
                              code="invalid_scheme")
    if parts.username is not None or parts.password is not None:
        raise ValidationError(
            _("The URL must not contain a user name or password; send credentials in a "
              "custom header instead."), code="credentials_in_url")
    host = parts.hostname
    if not host:
        raise ValidationError(_("The URL has no host."), code="no_host")
    if not resolve and ssrf.is_name(host):
        return
    blocked = ValidationError(blocked_message(), code="blocked_destination")
    networks = ssrf.parse_networks(conf.ALLOWED_NETWORKS)
    try:
        ssrf.resolve(host, port or (443 if scheme == "https" else 80), networks)
    except ssrf.BlockedDestination:
        raise blocked from None
    except (OSError, UnicodeError, ValueError):
        # Not resolvable now: checked again (and refused if need be) when sending. But a
        # localhost name is the machine itself, whatever this resolver says.
        if ssrf.is_local_name(host) and not ssrf.is_allowed(ssrf.parse_address("127.0.0.1"),
                                                           networks):
            raise blocked from None


def blocked_message() -> str:
    """The message of a refused address; with ``DEBUG`` on, how to allow one in development.

    The hint names the setting, never the address: a developer trying a receiver on their own
    machine learns that ``ALLOWED_NETWORKS`` exists, while a production site (``DEBUG`` off)
    tells its users nothing about its configuration.
    """
    message = str(_("This URL points to a private, loopback or reserved network address. "
                    "Webhooks can only be sent to public addresses."))
    if settings.DEBUG:
        message += " " + str(_(
            "For a receiver on this machine during development, add its network to "
            "WEBHOOKS['ALLOWED_NETWORKS'] in your settings (\"127.0.0.0/8\" for loopback); "
            "never in production."))
    return message


def header_errors(headers: Any) -> list[str]:
    """Every problem with a custom headers mapping, as messages (empty when valid)."""
    if not isinstance(headers, dict):
        return [str(_("Custom headers must be an object of header names to values."))]
    errors: list[str] = []
    if len(headers) > conf.MAX_HEADERS:
        errors.append(str(_("At most %(limit)d custom headers are allowed.")
                          % {"limit": conf.MAX_HEADERS}))
    for name, value in headers.items():
        if not isinstance(name, str) or not HEADER_NAME_RE.match(name) \
                or len(name) > HEADER_NAME_MAX:
            errors.append(str(_("%(name)r is not a valid header name.") % {"name": name}))
            continue
        lowered = name.lower()
        if lowered in HOP_BY_HOP_HEADERS:
            errors.append(str(_("%(name)s is a connection header and cannot be set.")
                              % {"name": name}))
        elif lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_HEADER_PREFIX):
            errors.append(str(_("%(name)s is set by the webhook sender and cannot be "
                                "replaced.") % {"name": name}))
        elif not isinstance(value, str):
            errors.append(str(_("The value of %(name)s must be a string.") % {"name": name}))
        elif len(value) > conf.MAX_HEADER_LENGTH:
            errors.append(str(_("The value of %(name)s is longer than %(limit)d characters.")
                              % {"name": name, "limit": conf.MAX_HEADER_LENGTH}))
        elif any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
            errors.append(str(_("The value of %(name)s contains a line break or another "
                                "control character.") % {"name": name}))
        elif value != value.strip():
            errors.append(str(_("The value of %(name)s starts or ends with white space.")
                              % {"name": name}))
        else:
            try:
                value.encode("latin-1")
            except UnicodeEncodeError:
                errors.append(str(_("The value of %(name)s must be ASCII or Latin-1 text.")
                                  % {"name": name}))
    return errors


def validate_headers(headers: Any) -> None:
    """Field validator for custom headers: names, values, reserved names, counts, lengths."""
    errors = header_errors(headers)
    if errors:
        raise ValidationError(errors, code="invalid_headers")


def is_sendable_header(name: Any, value: Any) -> bool:
    """Send-time filter: a custom header that would not pass validation is left out."""
    return not header_errors({name: value})


def validate_signing_secret(value: str) -> None:
    """An endpoint's signing key: a ``whsec_`` secret whose key holds 24 to 64 bytes, or a
    ``whsk_`` ed25519 signing key (``v1a``)."""
    if signing.key_scheme(value) == signing.ASYMMETRIC_VERSION:
        try:
            signing.signing_private_key(value)
        except ValueError:
            raise ValidationError(_("The signing key is not a whsk_ ed25519 key."),
                                  code="invalid_secret") from None
        return
    try:
        key = signing.secret_key(value)
    except ValueError:
        raise ValidationError(_("The signing secret is not a whsec_ secret (base64)."),
                              code="invalid_secret") from None
    if not signing.MIN_SECRET_BYTES <= len(key) <= signing.MAX_SECRET_BYTES:
        raise ValidationError(
            _("A signing secret must hold 24 to 64 bytes; this one holds %(count)d."),
            code="invalid_secret", params={"count": len(key)})
