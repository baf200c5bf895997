"""Owners hear about trouble: an endpoint disabled (410, sustained failure, staff), failing for
``NOTIFY_FAILING_AFTER``, and recovered; once per change of state, by email, never in the way
of deliveries.

Deliveries go through the real pipeline (``drain`` against the loopback receiver); the
notification task runs inline (django-q2's sync mode in the tests). Emails land in Django's
locmem outbox, or in a real SMTP server (aiosmtpd) on 127.0.0.1. Time is the one thing faked:
a test moves ``failing_since`` back instead of waiting an hour. Tests marked ``owners`` also
run with organizations as owners (``tests.settings_org``).
"""

from __future__ import annotations

import email
import email.policy
import logging
import socket
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.core import mail
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import make_due, make_endpoint, make_owner, member_of, publish
from tests.helpers import override_webhooks
from tests.receiver import Receiver, Reply
from webhooks import services
from webhooks.checks import check_notifications
from webhooks.delivery.loop import drain
from webhooks.models import Delivery, Endpoint
from webhooks.notifications import notices
from webhooks.notifications.mail import default_owner_emails, display_url, recipients
from webhooks.signals import endpoint_disabled, endpoint_failing, endpoint_recovered

pytestmark = pytest.mark.django_db

#: Failures are retried at once (a test makes them due), no circuit breaker pause gets in
#: the way, and an hour of failure is worth a notice.
NOTIFY = {"NOTIFY_FAILING_AFTER": 3600, "CIRCUIT_BREAKER_THRESHOLD": None,
          "RETRY_SCHEDULE": [1] * 40}


# --- helpers -----------------------------------------------------------------------------------


def owner_with_email(name: str = "acme") -> Any:
    """An owner of this configuration (a user, or an organization) with an email address."""
    owner = make_owner(name)
    owner.email = f"{name}@example.com"
    owner.save(update_fields=["email"])
    return owner


def failing_for(endpoint: Endpoint, seconds: float) -> None:
    """The clock: the endpoint's run of failures began ``seconds`` ago."""
    Endpoint.objects.filter(pk=endpoint.pk).update(
        failing_since=timezone.now() - timedelta(seconds=seconds))


def batch() -> None:
    """One round of a worker: every pending delivery due now, then ``drain``."""
    make_due()
    drain()


def kinds() -> list[str]:
    """The kind of every email in the outbox, in order (from the default subjects)."""
    found = []
    for message in mail.outbox:
        for kind in ("disabled", "failing", "recovered"):
            if f"endpoint {kind}:" in message.subject:
                found.append(kind)
    return found


@pytest.fixture
def signalled() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every endpoint notice signal sent during the test: ``(kind, arguments)``."""
    calls: list[tuple[str, dict[str, Any]]] = []
    signals = {"disabled": endpoint_disabled, "failing": endpoint_failing,
               "recovered": endpoint_recovered}
    for kind, signal in signals.items():
        signal.connect(lambda kind=kind, **kw: calls.append((kind, kw)), weak=False,
                       dispatch_uid=f"test-{kind}")
    yield calls
    for kind, signal in signals.items():
        signal.disconnect(dispatch_uid=f"test-{kind}")


# --- a real SMTP server ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Mailbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


class Refusing:
    """An aiosmtpd handler that refuses every recipient (a 5xx answer)."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        return "550 5.7.1 Relaying denied"


def smtp_settings(port: int) -> Any:
    return override_settings(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                             EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, EMAIL_TIMEOUT=5,
                             DEFAULT_FROM_EMAIL="webhooks@shop.example")


def smtp_server(handler: Any) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    return controller


# --- disabled ----------------------------------------------------------------------------------


@pytest.mark.owners
@override_webhooks(NOTIFY_LINK="https://shop.example/account/webhooks/{endpoint_id}")
def test_a_410_disables_the_endpoint_and_emails_its_owner_once(
        receiver: Receiver, signalled: list[Any]) -> None:
    owner = owner_with_email("acme")
    receiver.script("/hook?token=s3cret", Reply(410))
    endpoint = make_endpoint(receiver.url("/hook?token=s3cret"), owner=owner,
                             description="Order sync")
    publish(owner=owner, count=2)
    drain()

    endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert endpoint.notified_state == "disabled"
    assert [kind for kind, _ in signalled] == ["disabled"]
    (message,) = mail.outbox
    assert message.to == ["acme@example.com"]
    assert message.from_email == "webmaster@localhost"  # DEFAULT_FROM_EMAIL
    shown = f"http://127.0.0.1:{receiver.port}/hook?…"
    assert message.subject == f"Webhook endpoint disabled: {shown}"
    assert shown in message.body
    assert "Order sync" in message.body
    assert "The endpoint answered 410 Gone." in message.body
    assert "Disabled at:" in message.body
    assert f"https://shop.example/account/webhooks/{endpoint.public_id}" in message.body
    for secret in ("s3cret", endpoint.secret):
        assert secret not in message.body and secret not in message.subject
    ((html, content_type),) = message.alternatives
    assert content_type == "text/html"
    assert "Order sync" in html and "s3cret" not in html
    assert f'href="https://shop.example/account/webhooks/{endpoint.public_id}"' in html

    # Nothing more happens to a disabled endpoint: nothing more is sent.
    publish(owner=owner)
    batch()
    assert len(mail.outbox) == 1


@pytest.mark.owners
@override_webhooks(**NOTIFY, DISABLE_AFTER=7200, DISABLE_AFTER_FAILURES=3)
def test_sustained_failure_sends_failing_then_disabled_then_recovered_once_each(
        receiver: Receiver, signalled: list[Any]) -> None:
    owner = owner_with_email("acme")
    receiver.script("/hook", *[Reply(500)] * 6)  # every attempt until it is disabled
    endpoint = make_endpoint(receiver.url(), owner=owner)
    publish(owner=owner)
    batch()
    assert mail.outbox == []  # failing, but not for long

    failing_for(endpoint, 3700)  # an hour and a bit: failing
    for _ in range(4):
        batch()
        assert kinds() == ["failing"]
    endpoint.refresh_from_db()
    assert endpoint.notified_state == "failing" and endpoint.is_active
    assert "HTTP 500" in mail.outbox[0].body
    (kind, arguments), = signalled
    assert kind == "failing" and arguments["since"] == endpoint.failing_since
    assert arguments["reason"] == "The last attempt got HTTP 500."

    failing_for(endpoint, 7300)  # two hours: disabled
    batch()
    batch()
    assert kinds() == ["failing", "disabled"]
    endpoint.refresh_from_db()
    assert not endpoint.is_active and endpoint.notified_state == "disabled"

    # Enabled again (by its owner or staff), it works: recovered, once.
    services.enable_endpoints(Endpoint.objects.filter(pk=endpoint.pk))
    for _ in range(3):  # the receiver answers 200 from now on
        publish(owner=owner)
        batch()
    assert kinds() == ["failing", "disabled", "recovered"]
    assert "Disabled since:" in mail.outbox[-1].body
    assert [kind for kind, _ in signalled] == ["failing", "disabled", "recovered"]
    assert signalled[-1][1]["previous"] == "disabled"
    endpoint.refresh_from_db()
    assert endpoint.notified_state == ""


@pytest.mark.owners
@override_webhooks(**NOTIFY)
def test_exactly_one_email_per_change_of_state(receiver: Receiver) -> None:
    """Failing: one email however many failing batches follow; recovered: one email however
    many successes; failing again an hour later: one more."""
    owner = owner_with_email("acme")
    endpoint = make_endpoint(receiver.url(), owner=owner)
    receiver.script("/hook", *[Reply(503)] * 18)  # 6 batches of 3
    publish(owner=owner, count=3)
    batch()
    failing_for(endpoint, 4000)
    for _ in range(5):
        batch()
    assert kinds() == ["failing"]

    for _ in range(4):  # the receiver answers 200 from now on
        publish(owner=owner)
        batch()
    assert kinds() == ["failing", "recovered"]
    assert "Failing since:" in mail.outbox[-1].body
    assert Delivery.objects.filter(status="succeeded").count() == 7

    receiver.script("/hook", *[Reply(500)] * 4)
    publish(owner=owner)
    batch()
    failing_for(endpoint, 3601)
    for _ in range(3):
        batch()
    assert kinds() == ["failing", "recovered", "failing"]


@pytest.mark.owners
@override_webhooks(**NOTIFY)
def test_a_flapping_endpoint_sends_no_storm(receiver: Receiver) -> None:
    """Failures between successes never add up to an hour of continuous failure, and a
    success that follows no notice is no recovery: no email at all."""
    owner = owner_with_email("acme")
    endpoint = make_endpoint(receiver.url(), owner=owner)
    for _ in range(6):
        receiver.script("/hook", Reply(500))
        publish(owner=owner)
        batch()  # a failure...
        failing_for(endpoint, 3000)  # ...long ago, but not an hour
        batch()  # ...then the retry succeeds
        endpoint.refresh_from_db()
        assert endpoint.failing_since is None
    assert mail.outbox == []
    assert Endpoint.objects.get().notified_state == ""


@override_webhooks(**{**NOTIFY, "NOTIFY_FAILING_AFTER": None})
def test_no_failing_notice_when_it_is_off(receiver: Receiver) -> None:
    owner = owner_with_email("acme")
    endpoint = make_endpoint(receiver.url(), owner=owner)
    receiver.script("/hook", *[Reply(500)] * 5)
    publish(owner=owner)
    batch()
    failing_for(endpoint, 10 * 24 * 3600)
    batch()
    assert mail.outbox == []
    assert Endpoint.objects.get().notified_state == ""


@override_webhooks(NOTIFY_BY_EMAIL=False)
def test_without_emails_the_signals_still_tell(receiver: Receiver,
                                                signalled: list[Any]) -> None:
    owner = owner_with_email("acme")
    receiver.script("/hook", Reply(410))
    make_endpoint(receiver.url(), owner=owner)
    publish(owner=owner)
    drain()
    assert [kind for kind, _ in signalled] == ["disabled"]
    assert mail.outbox == []


# --- staff and owners switching endpoints off ---------------------------------------------------


@pytest.mark.owners
def test_staff_disabling_notifies_the_owner_once(
        django_capture_on_commit_callbacks: Any, signalled: list[Any]) -> None:
    owner = owner_with_email("acme")
    first = make_endpoint("https://example.com/a", owner=owner)
    second = make_endpoint("https://example.com/b", owner=owner)
    with django_capture_on_commit_callbacks(execute=True):
        count = services.disable_endpoints(Endpoint.objects.filter(pk=first.pk),
                                           services.DISABLED_BY_STAFF)
        assert signalled == [] and mail.outbox == []  # nothing before the commit
    assert count == 1
    assert kinds() == ["disabled"]
    with django_capture_on_commit_callbacks(execute=True) as hooks:
        assert services.disable_endpoints(Endpoint.objects.all(),
                                          services.DISABLED_BY_STAFF) == 1  # the second only
    assert len(hooks) == 1
    # The admin's change form: update_endpoint with staff's reason.
    services.enable_endpoints(Endpoint.objects.filter(pk=second.pk))
    second.refresh_from_db()
    second.is_active = False
    with django_capture_on_commit_callbacks(execute=True):
        services.update_endpoint(second, ["is_active"],
                                 disabled_reason=services.DISABLED_BY_STAFF)
    assert second.notified_state == "disabled"
    assert [kind for kind, _ in signalled] == ["disabled", "disabled", "disabled"]
    assert {kw["endpoint"].pk for _, kw in signalled} == {first.pk, second.pk}
    assert all(kw["reason"] == "Disabled by staff." for _, kw in signalled)
    assert kinds() == ["disabled", "disabled", "disabled"]
    assert all(m.to == ["acme@example.com"] for m in mail.outbox)
    assert "Disabled by staff." in mail.outbox[0].body
    # The email does not tell the owner to enable it: only staff can.
    assert "only they can enable it again" in mail.outbox[0].body
    assert "Once the receiver works" not in mail.outbox[0].body
    assert "only they can enable it again" in mail.outbox[0].alternatives[0][0]


@pytest.mark.owners
def test_the_owner_switching_it_off_through_the_api_is_no_trouble(
        django_capture_on_commit_callbacks: Any, signalled: list[Any]) -> None:
    owner = owner_with_email("acme")
    endpoint = make_endpoint("https://example.com/a", owner=owner)
    client = APIClient()
    client.force_authenticate(member_of(owner))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.patch(f"/api/webhooks/endpoints/{endpoint.pk}/",
                                {"is_active": False}, format="json")
    assert response.status_code == 200, response.content
    endpoint.refresh_from_db()
    assert not endpoint.is_active and endpoint.notified_state == ""
    assert signalled == [] and mail.outbox == []
    # The service says the same to a command that switches off for the owner.
    endpoint.is_active = True
    endpoint.save()
    with django_capture_on_commit_callbacks(execute=True):
        services.disable_endpoints(Endpoint.objects.all(), services.DISABLED_BY_OWNER)
    assert signalled == [] and mail.outbox == []


# --- recipients --------------------------------------------------------------------------------


@pytest.mark.owners
@override_settings(ADMINS=[("Ops", "ops@shop.example"), ("Dev", "dev@shop.example")])
def test_a_site_wide_endpoint_notifies_the_admins(receiver: Receiver) -> None:
    receiver.script("/hook", Reply(410))
    make_endpoint(receiver.url())  # no owner: site-wide
    publish()
    drain()
    (message,) = mail.outbox
    assert message.to == ["ops@shop.example", "dev@shop.example"]
    assert "site-wide endpoint" in message.body


@pytest.mark.owners
def test_site_emails_replace_the_admins() -> None:
    endpoint = make_endpoint("https://example.com/a")
    with override_settings(ADMINS=[("Ops", "ops@shop.example")]):
        assert recipients(endpoint) == ["ops@shop.example"]
        with override_webhooks(SITE_EMAILS=["oncall@shop.example", "oncall@shop.example"]):
            assert recipients(endpoint) == ["oncall@shop.example"]
        with override_webhooks(SITE_EMAILS=[]):
            assert recipients(endpoint) == []


def team_emails(owner: Any) -> list[str]:
    """An ``OWNER_EMAILS`` function for the tests."""
    return ["team@example.com", "", f"billing+{owner.pk}@example.com"]


@pytest.mark.owners
def test_owner_emails_default_and_configured() -> None:
    owner = make_owner("acme")
    endpoint = make_endpoint("https://example.com/a", owner=owner)
    owner.email = ""
    owner.save(update_fields=["email"])
    endpoint = Endpoint.objects.get(pk=endpoint.pk)
    assert recipients(endpoint) == []  # no address: nobody
    owner.email = "acme@example.com"
    owner.save(update_fields=["email"])
    endpoint = Endpoint.objects.get(pk=endpoint.pk)
    assert recipients(endpoint) == ["acme@example.com"]
    with override_webhooks(OWNER_EMAILS="tests.test_notifications.team_emails"):
        assert recipients(endpoint) == ["team@example.com", f"billing+{owner.pk}@example.com"]
    assert default_owner_emails(object()) == []


def test_owner_emails_must_be_importable_and_callable() -> None:
    assert check_notifications() == []
    with override_webhooks(OWNER_EMAILS="tests.test_notifications.team_emails"):
        assert check_notifications() == []
    for bad in ("tests.test_notifications.nothing_here", "no.such.module.f",
                "tests.test_notifications.NOTIFY"):
        with override_webhooks(OWNER_EMAILS=bad):
            assert [m.id for m in check_notifications()] == ["webhooks.E050"], bad
    with override_webhooks(OWNER_EMAILS=42):
        assert check_notifications() == []  # a bad value: webhooks.E003 says so


def test_the_emails_show_the_url_without_credentials() -> None:
    assert display_url("https://user:pw@hooks.example.com:8443/in?key=abc#x") == (
        "https://hooks.example.com:8443/in?…")
    assert display_url("https://hooks.example.com/in") == "https://hooks.example.com/in"
    assert display_url("http://[::1]:8080/h") == "http://[::1]:8080/h"


# --- once per change of state, whoever records it -----------------------------------------------


@pytest.mark.owners
def test_two_workers_recording_the_same_change_notify_once() -> None:
    """Each notice is a compare-and-set UPDATE: the second worker to record a change (its
    claim read the endpoint before the first one's notice) changes no row, sends nothing."""
    endpoint = make_endpoint("https://example.com/a", owner=owner_with_email("acme"))
    stale = Endpoint.objects.get(pk=endpoint.pk)  # what both workers' claims read
    now = timezone.now()
    failing_for(endpoint, 7200)
    with override_webhooks(NOTIFY_FAILING_AFTER=3600):
        assert len(notices.failing("default", {endpoint.pk: "HTTP 500"}, now)) == 1
        assert notices.failing("default", {endpoint.pk: "HTTP 500"}, now) == []
    state = {"is_active": False, "disabled_reason": "gone", "disabled_at": now}
    assert len(notices.disable("default", [endpoint.pk], state)) == 1
    assert notices.disable("default", [endpoint.pk], state) == []
    Endpoint.objects.filter(pk=endpoint.pk).update(is_active=True)
    stale.notified_state = "disabled"
    (recovered,) = notices.recovered("default", [stale], now)
    assert recovered.previous == "disabled"
    assert notices.recovered("default", [stale], now) == []


# --- the mail server ---------------------------------------------------------------------------


@pytest.mark.owners
def test_the_email_reaches_a_real_smtp_server(receiver: Receiver) -> None:
    owner = owner_with_email("acme")
    receiver.script("/hook", Reply(410))
    endpoint = make_endpoint(receiver.url(), owner=owner, description="Order sync")
    publish(owner=owner)
    mailbox = Mailbox()
    server = smtp_server(mailbox)
    try:
        with smtp_settings(server.port):
            drain()
    finally:
        server.stop()
    ((sender, to, message),) = mailbox.messages
    assert sender == "webhooks@shop.example"
    assert to == ["acme@example.com"]
    assert message["Subject"] == f"Webhook endpoint disabled: {display_url(endpoint.url)}"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert "Order sync" in text.get_content() and "410 Gone" in text.get_content()
    assert "<table" in html.get_content()
    assert endpoint.secret not in message.as_string()


@pytest.mark.owners
@pytest.mark.parametrize("server", ["refusing", "closed port"])
def test_a_broken_mail_server_is_logged_and_deliveries_go_on(
        receiver: Receiver, caplog: pytest.LogCaptureFixture, server: str) -> None:
    owner = owner_with_email("acme")
    receiver.script("/gone?token=s3cret", Reply(410))
    gone = make_endpoint(receiver.url("/gone?token=s3cret"), owner=owner)
    fine = make_endpoint(receiver.url("/fine"), owner=owner)
    publish(owner=owner, count=3)
    controller = smtp_server(Refusing()) if server == "refusing" else None
    port = controller.port if controller is not None else free_port()
    caplog.set_level(logging.INFO, logger="webhooks")
    try:
        with smtp_settings(port):
            drain()
            publish(owner=owner)
            batch()
    finally:
        if controller is not None:
            controller.stop()

    assert len(receiver.received("/gone?token=s3cret")) == 1
    assert len(receiver.received("/fine")) == 4
    assert Delivery.objects.filter(endpoint=fine, status="succeeded").count() == 4
    assert not Endpoint.objects.get(pk=gone.pk).is_active
    (record,) = [r for r in caplog.records if "Could not email" in r.getMessage()]
    assert record.levelno == logging.ERROR
    expected = "SMTPRecipientsRefused" if server == "refusing" else "ConnectionRefusedError"
    assert f"Could not email the disabled notice of endpoint {gone.public_id}: {expected}" in (
        record.getMessage())
    logged = caplog.text
    for secret in ("s3cret", gone.secret, fine.secret):
        assert secret not in logged
