"""The receiver kit under review (issue 14): a handler's own ``IntegrityError`` is its error,
dedupe is scoped per receiver and never truncates, unpadded secrets and ``svix-*`` headers."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from standardwebhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook

from tests import receiving_trust_urls as urls
from tests.receiving_urls import OLD_SECRET, SECRET
from tests.testapp.models import Note
from webhooks import signing
from webhooks.models import ReceivedWebhook
from webhooks.receiving import WebhookVerificationError, verify

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.receiving_trust_urls")]
BODY = b'{"type":"order.created","data":{"id":7}}'


@pytest.fixture(autouse=True)
def _clean() -> None:
    urls.handled.clear()


def signed(msg_id: str, secret: str = SECRET, body: bytes = BODY,
           prefix: str = "webhook") -> dict[str, str]:
    """``Client.post`` keyword arguments: the three headers of ``prefix`` (webhook or svix)."""
    ts = int(time.time())
    meta = "HTTP_" + prefix.upper()
    return {f"{meta}_ID": msg_id, f"{meta}_TIMESTAMP": str(ts),
            f"{meta}_SIGNATURE": signing.sign(secret, msg_id, ts, body)}


def post(path: str, headers: dict[str, str], body: bytes = BODY, **client: Any) -> Any:
    return Client(**client).post(path, body, content_type="application/json", **headers)


# --- finding 4: the handler's IntegrityError is not a duplicate ------------------------------


def test_a_handlers_integrity_error_is_a_5xx_not_a_duplicate(caplog: Any) -> None:
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = post("/constraint/", signed("evt_ie"), raise_request_exception=False)
    assert response.status_code == 500  # the sender retries
    assert "duplicate" not in response.content.decode()
    assert any("IntegrityError" in str(record.exc_info) for record in caplog.records)
    assert not ReceivedWebhook.objects.exists()  # not recorded as handled
    assert not Note.objects.exists()  # the handler's work rolled back


def test_after_a_handlers_integrity_error_the_retry_runs_the_handler_again() -> None:
    for _ in range(2):
        response = post("/constraint/", signed("evt_ie2"), raise_request_exception=False)
        assert response.status_code == 500
    assert not ReceivedWebhook.objects.exists()


def test_the_handlers_integrity_error_reaches_the_caller() -> None:
    from django.db import IntegrityError

    with pytest.raises(IntegrityError):
        post("/constraint/", signed("evt_ie3"))


def test_a_concurrent_record_of_the_same_id_is_a_duplicate(monkeypatch: Any) -> None:
    """The insert's own ``IntegrityError`` (another request recorded the id between the check
    and the insert) is the one that means duplicate."""
    from django.db.models import QuerySet

    assert post("/first/", signed("evt_race")).json() == {"ok": True}
    monkeypatch.setattr(QuerySet, "exists", lambda self: False)  # the check sees nothing
    assert post("/first/", signed("evt_race")).json() == {"duplicate": True}
    assert len(urls.handled) == 1


# --- finding 5: dedupe is per receiver, never truncated ----------------------------------------


def test_an_id_accepted_by_one_receiver_is_still_handled_by_another() -> None:
    assert post("/first/", signed("evt_same")).json() == {"ok": True}
    assert post("/second/", signed("evt_same", urls.OTHER_SECRET)).json() == {"ok": True}
    assert post("/second/", signed("evt_same", urls.OTHER_SECRET)).json() == {"duplicate": True}
    assert post("/first/", signed("evt_same")).json() == {"duplicate": True}
    assert [name for name, _ in urls.handled] == ["first", "second"]
    assert set(ReceivedWebhook.objects.values_list("receiver", flat=True)) == {
        "tests.receiving_trust_urls.first", "tests.receiving_trust_urls.second"}


def test_senders_told_apart_by_the_url_do_not_suppress_each_other() -> None:
    assert post("/tenant/acme/", signed("evt_t")).json() == {"ok": True}
    assert post("/tenant/globex/", signed("evt_t", urls.OTHER_SECRET)).json() == {"ok": True}
    assert post("/tenant/acme/", signed("evt_t")).json() == {"duplicate": True}
    assert [name for name, _ in urls.handled] == ["acme", "globex"]
    assert ReceivedWebhook.objects.filter(
        receiver='tests.receiving_trust_urls.tenant [[],{"tenant":"acme"}]').exists()


def test_a_name_callable_tells_apart_senders_of_one_url() -> None:
    assert post("/by-header/", {**signed("evt_h"), "HTTP_X_PARTNER": "acme"}).json() == {
        "ok": True}
    other = {**signed("evt_h", urls.OTHER_SECRET), "HTTP_X_PARTNER": "globex"}
    assert post("/by-header/", other).json() == {"ok": True}
    assert post("/by-header/", other).json() == {"duplicate": True}
    assert set(ReceivedWebhook.objects.values_list("receiver", flat=True)) == {
        "partner:acme", "partner:globex"}


def test_a_class_based_view_is_named_after_its_class() -> None:
    assert post("/class/", signed("evt_c")).json() == {"ok": True}
    assert post("/class/", signed("evt_c")).json() == {"duplicate": True}
    assert ReceivedWebhook.objects.get().receiver == "tests.receiving_trust_urls.ClassBased"


def test_a_rotation_keeps_the_ids_already_handled() -> None:
    """The scope is the receiver, not its secrets: a message accepted under the old secret and
    retried under the new one (the sender's grace period over) is still a duplicate."""
    assert post("/partner/v1/", signed("evt_rot", OLD_SECRET)).json() == {"ok": True}
    assert post("/partner/v1/", signed("evt_rot", SECRET)).json() == {"duplicate": True}


def test_receivers_sharing_a_name_share_their_ids() -> None:
    """``name=`` pins the scope: a view moved or renamed keeps what it has seen."""
    assert post("/partner/v1/", signed("evt_named")).json() == {"ok": True}
    assert post("/partner/v2/", signed("evt_named")).json() == {"duplicate": True}
    assert [name for name, _ in urls.handled] == ["partner_v1"]


def test_long_ids_are_hashed_whole_not_truncated() -> None:
    stem = "evt_" + "x" * 300
    assert post("/first/", signed(stem + "a")).json() == {"ok": True}
    assert post("/first/", signed(stem + "b")).json() == {"ok": True}
    assert post("/first/", signed(stem + "a")).json() == {"duplicate": True}
    stored = list(ReceivedWebhook.objects.values_list("webhook_id", flat=True))
    assert len(stored) == 2 and len(set(stored)) == 2
    assert all(len(key) <= 255 for key in stored)


def test_an_id_that_looks_like_a_hash_cannot_collide_with_one() -> None:
    long_id = "evt_" + "y" * 300
    assert post("/first/", signed(long_id)).json() == {"ok": True}
    (stored,) = ReceivedWebhook.objects.values_list("webhook_id", flat=True)
    assert post("/first/", signed(stored)).json() == {"ok": True}


# --- conformance: unpadded base64 secrets -----------------------------------------------------


def test_an_unpadded_secret_decodes_like_the_padded_one() -> None:
    assert not urls.UNPADDED_SECRET.endswith("=")
    padded = urls.UNPADDED_SECRET + "="
    assert signing.secret_key(urls.UNPADDED_SECRET) == signing.secret_key(padded)
    assert len(signing.secret_key(urls.UNPADDED_SECRET)) == 32
    with pytest.raises(ValueError):
        signing.secret_key("whsec_abcde")  # 5 characters are no base64 at all


@pytest.mark.parametrize("library", [StandardWebhook, SvixWebhook])
def test_an_unpadded_secret_works_both_ways(library: Any) -> None:
    ts = int(time.time())
    ours = signing.sign(urls.UNPADDED_SECRET, "msg_u", ts, BODY)
    headers = {"webhook-id": "msg_u", "webhook-timestamp": str(ts), "webhook-signature": ours}
    library(urls.UNPADDED_SECRET).verify(BODY, headers)  # raises when it fails
    theirs = library(urls.UNPADDED_SECRET).sign("msg_u", datetime.fromtimestamp(ts, UTC),
                                               BODY.decode())
    assert theirs == ours
    verify({**headers, "webhook-signature": theirs}, BODY, urls.UNPADDED_SECRET)
    assert post("/unpadded/", signed("msg_u", urls.UNPADDED_SECRET)).json() == {"ok": True}


# --- conformance: svix-* headers ----------------------------------------------------------------


def svix_headers(msg_id: str, secret: str = SECRET) -> dict[str, str]:
    now = datetime.now(UTC).replace(microsecond=0)
    return {"svix-id": msg_id, "svix-timestamp": str(int(now.timestamp())),
            "svix-signature": SvixWebhook(secret).sign(msg_id, now, BODY.decode())}


def test_svix_headers_verify() -> None:
    headers = svix_headers("msg_svix")
    SvixWebhook(SECRET).verify(BODY, headers)
    verify(headers, BODY, SECRET)
    meta = {"HTTP_" + key.upper().replace("-", "_"): value for key, value in headers.items()}
    verify(meta, BODY, SECRET)
    with pytest.raises(WebhookVerificationError):
        verify(headers, BODY + b" ", SECRET)


def test_the_decorator_takes_svix_headers_and_dedupes_on_svix_id() -> None:
    assert post("/first/", signed("msg_s", prefix="svix")).json() == {"ok": True}
    assert post("/first/", signed("msg_s", prefix="svix")).json() == {"duplicate": True}
    assert post("/first/", signed("msg_s")).json() == {"duplicate": True}  # same id, other name
    assert ReceivedWebhook.objects.get().webhook_id == "msg_s"


def test_webhook_headers_win_when_both_sets_are_present() -> None:
    good = {"webhook-id": "msg_w", "webhook-timestamp": str(int(time.time()))}
    good["webhook-signature"] = signing.sign(SECRET, "msg_w", int(good["webhook-timestamp"]),
                                             BODY)
    bad_svix = {"svix-id": "msg_other", "svix-timestamp": "1", "svix-signature": "v1,AAAA"}
    verify({**good, **bad_svix}, BODY, SECRET)
    with pytest.raises(WebhookVerificationError):
        verify({**svix_headers("msg_s2"), "webhook-id": "msg_s2", "webhook-timestamp": "1",
                "webhook-signature": "v1,AAAA"}, BODY, SECRET)


def test_the_two_sets_are_never_mixed() -> None:
    headers = svix_headers("msg_mix")
    mixed = {"webhook-id": "msg_mix", "svix-timestamp": headers["svix-timestamp"],
             "svix-signature": headers["svix-signature"]}
    with pytest.raises(WebhookVerificationError) as raised:
        verify(mixed, BODY, SECRET)
    assert raised.value.malformed
    assert "webhook-timestamp" in str(raised.value)



# --- the migration ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_recorded_ids_as_seen_by_every_receiver() -> None:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    (ours,) = [key for key in executor.loader.graph.nodes
               if key[0] == "webhooks" and key[1].endswith("_received_per_receiver")]
    (before,) = executor.loader.graph.node_map[ours].parents
    executor.migrate([before.key])
    old_model = executor.loader.project_state([before.key]).apps.get_model(
        "webhooks", "ReceivedWebhook")
    old_model.objects.create(webhook_id="evt_before", expires_at=timezone.now()
                             + timedelta(days=1))
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes("webhooks"))
    assert ReceivedWebhook.objects.get().receiver == ReceivedWebhook.ANY_RECEIVER
    assert post("/first/", signed("evt_before")).json() == {"duplicate": True}
    assert post("/second/", signed("evt_before", urls.OTHER_SECRET)).json() == {
        "duplicate": True}
    assert post("/first/", signed("evt_after")).json() == {"ok": True}
    assert post("/second/", signed("evt_after", urls.OTHER_SECRET)).json() == {"ok": True}
