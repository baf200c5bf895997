"""The receiving side: verify Standard Webhooks signatures, and a Django view decorator that
verifies, rejects, and runs a handler once per ``webhook-id``.

Works with webhooks from this package and from any Standard Webhooks sender (Svix, ...).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from webhooks import signing
from webhooks.exceptions import WebhooksError

DEFAULT_TOLERANCE = 300
#: How long a seen ``webhook-id`` is remembered (our default schedule retries for about 3 days
#: and 6 hours, Stripe for 3 days, Svix for about 1.5).
DEFAULT_DEDUPE_TTL = timedelta(days=7)


class WebhookVerificationError(WebhooksError):
    """The request is not a genuine, fresh webhook: bad or missing headers or signature.

    ``malformed`` is true when headers are missing or unreadable (answered with 400) rather
    than present and wrong (answered with 401).
    """

    def __init__(self, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.malformed = malformed


#: The header names of a message (id, timestamp, signature), in order of preference: Standard
#: Webhooks', then Svix's (``svix-*``, what Svix-based senders emit). A set is used whole.
HEADER_SETS = (
    ("webhook-id", "webhook-timestamp", "webhook-signature"),
    ("svix-id", "svix-timestamp", "svix-signature"),
)


def _find_header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    # Django's request.META spelling.
    return headers.get("HTTP_" + name.upper().replace("-", "_"))


def message_headers(headers: Mapping[str, str]) -> tuple[str, str, str]:
    """The message's id, timestamp and signature headers, as received.

    The ``webhook-*`` headers are read when all three are present, else the ``svix-*`` ones;
    the two sets are never mixed. Missing headers raise :class:`WebhookVerificationError`
    naming the first ``webhook-*`` header that lacks.
    """
    candidates = [[_find_header(headers, name) for name in names] for names in HEADER_SETS]
    for msg_id, timestamp, signature in candidates:
        if msg_id is not None and timestamp is not None and signature is not None:
            return msg_id, timestamp, signature
    missing = HEADER_SETS[0][candidates[0].index(None)]
    raise WebhookVerificationError(f"missing {missing} header", malformed=True)


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secret_or_secrets: str | Iterable[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check a webhook's signature and timestamp; raise :class:`WebhookVerificationError`.

    ``headers`` may be ``request.headers`` or ``request.META``. Several secrets can be given
    (during a rotation on the receiving side); a signature by any of them is accepted. Each
    is a ``whsec_`` secret (``v1`` signatures) or a ``whpk_`` public key (``v1a``, ed25519):
    see :func:`signature_matches`. HMAC comparisons are constant-time and the timestamp must
    be within ``tolerance`` seconds.
    """
    msg_id, raw_timestamp, signature = message_headers(headers)
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise WebhookVerificationError("invalid webhook-timestamp header",
                                       malformed=True) from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old or in the future")
    secrets = [secret_or_secrets] if isinstance(secret_or_secrets, str) else secret_or_secrets
    matched = False
    for secret in secrets:
        matched |= signature_matches(secret, msg_id, timestamp, body, signature)
    if not matched:
        raise WebhookVerificationError("no matching signature")


def signature_matches(key: str, msg_id: str, timestamp: int, body: bytes,
                      signature: str) -> bool:
    """Whether the ``webhook-signature`` value ``signature`` holds a valid signature by
    ``key``: a ``whsec_`` secret checks the ``v1`` entries (constant-time), a ``whpk_`` public
    key the ``v1a`` (ed25519) ones. Raises :class:`WebhookVerificationError` for a key that
    is neither (a ``whsk_`` signing key belongs to the sender, never to a receiver)."""
    try:
        if key.startswith(signing.PUBLIC_KEY_PREFIX):
            return signing.verify_v1a(key, msg_id, timestamp, body, signature)
        if key.startswith(signing.SIGNING_KEY_PREFIX):
            raise WebhookVerificationError(
                "a whsk_ signing key was given: receivers verify with its whpk_ public key")
        expected = signing.sign(key, msg_id, timestamp, body)
    except UnicodeEncodeError:
        raise WebhookVerificationError("invalid webhook-id header", malformed=True) from None
    except ValueError:
        raise WebhookVerificationError(
            "the key is not a valid whsec_ secret or whpk_ public key") from None
    return signing.signatures_match(expected, signature)


SecretSource = str | Iterable[str] | Callable[[Any], str | Iterable[str]]
NameSource = str | Callable[[Any], str]


def webhook_receiver(
    secret: SecretSource,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    dedupe: bool = True,
    dedupe_ttl: timedelta = DEFAULT_DEDUPE_TTL,
    name: NameSource | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a Django view that receives webhooks.

    ``secret`` is a ``whsec_`` secret, several (during a rotation), or a callable taking the
    request and returning them. Requests with missing or unreadable headers get 400, bad
    signatures or stale timestamps 401, anything but POST 405. ``svix-*`` headers are accepted
    when the ``webhook-*`` ones are absent. The view is CSRF-exempt.

    With ``dedupe`` the handler runs once per message id and receiver: a repeat is answered
    200 ``{"duplicate": true}`` without calling it. The receiver is ``name`` (a string, or a
    callable taking the request) or else the view's dotted path, followed by the URL's captured
    arguments; never the secrets, so a rotation keeps the ids already seen. The id is recorded
    in the same transaction as the handler's own database work, and forgotten if the handler
    raises (its own ``IntegrityError`` included) or answers 5xx, so the sender's retry runs it
    again.

    A ``whpk_`` public key may stand in for (or next to) a secret: it verifies ``v1a``
    (ed25519) signatures (see :func:`signature_matches`).
    """

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        from django.views.decorators.csrf import csrf_exempt

        view_name = _dotted_path(view)

        @functools.wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            from django.http import HttpResponse, JsonResponse

            if request.method != "POST":
                return HttpResponse(status=405, headers={"Allow": "POST"})
            secrets = secret(request) if callable(secret) else secret
            try:
                verify(request.headers, request.body, secrets, tolerance=tolerance)
            except WebhookVerificationError as exc:
                return JsonResponse({"error": str(exc)}, status=400 if exc.malformed else 401)
            if not dedupe:
                return view(request, *args, **kwargs)
            base = name(request) if callable(name) else name or view_name
            receiver = _receiver_scope(base, args, kwargs)
            msg_id = message_headers(request.headers)[0]
            return _handle_once(receiver, msg_id, dedupe_ttl,
                                functools.partial(view, request, *args, **kwargs))

        return csrf_exempt(wrapper)

    return decorator


#: Prefix of a stored value that is the SHA-256 of a longer one (see :func:`_dedupe_key`).
_HASHED_PREFIX = "sha256:"
_MAX_KEY_LENGTH = 255  # ReceivedWebhook's columns


def _dedupe_key(value: str) -> str:
    """``value`` as stored for dedupe: itself, or ``sha256:<hex>`` of all of it when it is
    longer than the column (or could be mistaken for such a hash). Never truncated."""
    if len(value) <= _MAX_KEY_LENGTH and not value.startswith(_HASHED_PREFIX):
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return _HASHED_PREFIX + digest


def _receiver_scope(base: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    """The receiver that message ids are remembered for: ``base`` (a name or the view's dotted
    path), then the URL's captured arguments, which tell apart senders that one view serves
    (``/hooks/<partner>/``). Each sender retries on its own URL, so this stays the same."""
    if not base:
        raise ValueError("a webhook receiver's name cannot be empty")
    if not args and not kwargs:
        return _dedupe_key(base)
    captured = json.dumps([[str(a) for a in args], {k: str(v) for k, v in kwargs.items()}],
                          sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _dedupe_key(f"{base} {captured}")


def _dotted_path(view: Callable[..., Any]) -> str:
    """``module.QualifiedName`` of a view function, of the class of an ``as_view()``, or of
    the class of a callable object."""
    target = getattr(view, "view_class", view)
    if not hasattr(target, "__qualname__"):
        target = type(target)
    return f"{target.__module__}.{target.__qualname__}"


def _handle_once(receiver: str, msg_id: str, ttl: timedelta,
                 handler: Callable[[], Any]) -> Any:
    """Run ``handler`` unless ``receiver`` has seen ``msg_id``, recording it in the same
    transaction. Only the dedupe record decides what is a duplicate: the handler's own errors
    (``IntegrityError`` included) propagate, roll back its work and the record, and reach
    Django's error handling (500, logged) so the sender retries."""
    from django.db import transaction
    from django.http import JsonResponse

    from webhooks.models import ReceivedWebhook

    ReceivedWebhook.forget_expired()
    try:
        with transaction.atomic():
            _record(receiver, _dedupe_key(msg_id), ttl)
            response = handler()
            if getattr(response, "status_code", 200) >= 500:
                raise _HandlerFailedError(response)
    except _AlreadyHandledError:
        return JsonResponse({"duplicate": True})
    except _HandlerFailedError as failed:
        return failed.response
    return response


def _record(receiver: str, key: str, ttl: timedelta) -> None:
    """Record ``key`` for ``receiver``, or raise :class:`_AlreadyHandledError` if it is there
    already: recorded by this receiver, by a row from before receivers were told apart, or by
    a concurrent request (the unique constraint)."""
    from django.db import IntegrityError

    from webhooks.models import ReceivedWebhook

    receivers = (receiver, ReceivedWebhook.ANY_RECEIVER)
    if ReceivedWebhook.objects.filter(receiver__in=receivers, webhook_id=key).exists():
        raise _AlreadyHandledError
    try:
        ReceivedWebhook.objects.create(receiver=receiver, webhook_id=key,
                                       expires_at=_expiry(ttl))
    except IntegrityError:
        raise _AlreadyHandledError from None


class _AlreadyHandledError(Exception):
    """Internal: the message id is already recorded for this receiver."""


class _HandlerFailedError(Exception):
    """Internal: roll the handler's transaction back and answer its 5xx response."""

    def __init__(self, response: Any) -> None:
        self.response = response


def _expiry(ttl: timedelta) -> Any:
    from django.utils import timezone

    return timezone.now() + ttl
