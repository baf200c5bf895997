"""The HTTP client that sends deliveries. Knows nothing of models.

One ``requests.Session`` per process (connections are kept alive between deliveries), never
reading proxies or ``.netrc`` from the environment, never following redirects, and reading at
most a capped number of response bytes, undecoded.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from webhooks import __version__

USER_AGENT = f"django-webhooks/{__version__}"

_session: requests.Session | None = None
_session_pid: int | None = None


@dataclass
class HttpResult:
    """What one POST produced: a response (any status) or an error, never an exception."""

    status_code: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    duration: float = 0.0
    error_class: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def get_session() -> requests.Session:
    """The process's session (a forked worker gets its own, never its parent's sockets)."""
    global _session, _session_pid
    pid = os.getpid()
    if _session is None or _session_pid != pid:
        session = requests.Session()
        session.trust_env = False
        adapter = HTTPAdapter(pool_connections=32, pool_maxsize=32, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _session, _session_pid = session, pid
    return _session


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    connect_timeout: float,
    max_response_bytes: int,
) -> HttpResult:
    """POST ``body`` to ``url`` within ``timeout`` seconds in all; classify any failure.

    ``error_class`` is one of ``connect_timeout``, ``read_timeout``, ``timeout``,
    ``tls_error``, ``connection_error``, ``invalid_response``, ``invalid_url`` or ``""``.
    """
    started = time.monotonic()
    deadline = started + timeout
    result = HttpResult()
    response = None
    try:
        response = get_session().post(
            url,
            data=body,
            headers=headers,
            timeout=(connect_timeout, timeout),
            allow_redirects=False,
            stream=True,
        )
        result.status_code = response.status_code
        result.headers = {k: v for k, v in response.headers.items()}
        result.body = _read_capped(response, max_response_bytes, deadline)
        if time.monotonic() > deadline:
            result.error_class, result.error = "timeout", f"no complete answer within {timeout:g}s"
    except requests.exceptions.ConnectTimeout:
        result.error_class, result.error = "connect_timeout", "connecting timed out"
    except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError):
        result.error_class, result.error = "read_timeout", "the receiver stopped answering"
    except requests.exceptions.SSLError as exc:
        result.error_class, result.error = "tls_error", _first_line(exc)
    except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema, requests.exceptions.InvalidHeader) as exc:
        result.error_class, result.error = "invalid_url", _first_line(exc)
    except requests.exceptions.ConnectionError as exc:
        result.error_class, result.error = "connection_error", _first_line(exc)
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError,
            ValueError) as exc:
        # ChunkedEncodingError, ContentDecodingError, a bad status line, ...
        result.error_class, result.error = "invalid_response", _first_line(exc)
    finally:
        if response is not None:
            response.close()
    result.duration = time.monotonic() - started
    return result


def _read_capped(response: requests.Response, limit: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.raw.stream(8192, decode_content=False):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit or time.monotonic() > deadline:
            break
    return b"".join(chunks)[:limit]


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:500]
