"""The receiving side: verify Standard Webhooks signatures, and a Django view decorator that
verifies, rejects, and runs a handler once per ``webhook-id``.

Works with webhooks from this package and from any Standard Webhooks sender (Svix, ...).
"""

from __future__ import annotations

import functools
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


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    # Django's request.META spelling.
    meta = headers.get("HTTP_" + name.upper().replace("-", "_"))
    if meta is None:
        raise WebhookVerificationError(f"missing {name} header", malformed=True)
    return meta


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
    (during a rotation on the receiving side); a signature by any of them is accepted. The
    comparison is constant-time and the timestamp must be within ``tolerance`` seconds.
    """
    msg_id = _header(headers, "webhook-id")
    raw_timestamp = _header(headers, "webhook-timestamp")
    signature = _header(headers, "webhook-signature")
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
        try:
            expected = signing.sign(secret, msg_id, timestamp, body)
        except UnicodeEncodeError:
            raise WebhookVerificationError("invalid webhook-id header", malformed=True) from None
        except ValueError:
            raise WebhookVerificationError("the secret is not a valid whsec_ secret") from None
        matched |= signing.signatures_match(expected, signature)
    if not matched:
        raise WebhookVerificationError("no matching signature")


SecretSource = str | Iterable[str] | Callable[[Any], str | Iterable[str]]


def webhook_receiver(
    secret: SecretSource,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    dedupe: bool = True,
    dedupe_ttl: timedelta = DEFAULT_DEDUPE_TTL,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a Django view that receives webhooks.

    ``secret`` is a ``whsec_`` secret, several (during a rotation), or a callable taking the
    request and returning them. Requests with missing or unreadable headers get 400, bad
    signatures or stale timestamps 401, anything but POST 405. With ``dedupe`` the handler runs
    once per ``webhook-id``: a repeat is answered 200 without calling it. The id is recorded in
    the same transaction as the handler's own database work, and forgotten if the handler
    raises or answers 5xx, so the sender's retry runs it again. The view is CSRF-exempt.
    """

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        from django.views.decorators.csrf import csrf_exempt

        @functools.wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            from django.db import IntegrityError, transaction
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
            from webhooks.models import ReceivedWebhook

            webhook_id = request.headers["webhook-id"]
            ReceivedWebhook.forget_expired()
            try:
                with transaction.atomic():
                    ReceivedWebhook.objects.create(webhook_id=webhook_id[:255],
                                                   expires_at=_expiry(dedupe_ttl))
                    response = view(request, *args, **kwargs)
                    if getattr(response, "status_code", 200) >= 500:
                        raise _HandlerFailedError(response)
            except IntegrityError:
                return JsonResponse({"duplicate": True})
            except _HandlerFailedError as failed:
                return failed.response
            return response

        return csrf_exempt(wrapper)

    return decorator


class _HandlerFailedError(Exception):
    """Internal: roll the handler's transaction back and answer its 5xx response."""

    def __init__(self, response: Any) -> None:
        self.response = response


def _expiry(ttl: timedelta) -> Any:
    from django.utils import timezone

    return timezone.now() + ttl
