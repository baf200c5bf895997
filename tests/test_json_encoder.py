"""``WEBHOOKS["JSON_ENCODER"]``: the site's encoder for every payload, built once per settings
change, checked at startup (``webhooks.E061``)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from standardwebhooks import Webhook

import webhooks
from tests.factories import make_endpoint
from tests.helpers import override_webhooks
from tests.receiver import Receiver
from webhooks.checks import check_json_encoder, check_settings
from webhooks.delivery.fanout import fan_out
from webhooks.delivery.loop import drain
from webhooks.events.payloads import json_encoder
from webhooks.exceptions import PayloadError, WebhooksConfigurationError
from webhooks.models import Endpoint
from webhooks.testing import capture_webhooks

pytestmark = pytest.mark.django_db

MONEY_ENCODER = "tests.test_json_encoder.MoneyEncoder"


class Money:
    """A site's money type: an amount and a currency, which no stock encoder knows."""

    def __init__(self, amount: str, currency: str) -> None:
        self.amount = Decimal(amount)
        self.currency = currency


class MoneyEncoder(DjangoJSONEncoder):
    """Django's encoder, plus money as ``{"amount": "12.30", "currency": "EUR"}``."""

    def default(self, o: Any) -> Any:
        if isinstance(o, Money):
            return {"amount": str(o.amount), "currency": o.currency}
        return super().default(o)


class NotAnEncoder:
    pass


class StrictEncoder(json.JSONEncoder):
    """An encoder that takes no options: payloads cannot be built with it."""

    def __init__(self) -> None:
        super().__init__()


def test_a_custom_type_reaches_the_receiver_through_the_sites_encoder(
        receiver: Receiver) -> None:
    standard = make_endpoint(receiver.url("/standard"), "invoice.paid")
    cloud = make_endpoint(receiver.url("/cloud"), "invoice.paid",
                          body_format=Endpoint.Format.CLOUDEVENTS)
    with override_webhooks(JSON_ENCODER=MONEY_ENCODER):
        event = webhooks.send_event("invoice.paid", {"total": Money("12.30", "EUR"),
                                                     "paid": Decimal("1.5")})
    fan_out()
    drain()
    expected = {"total": {"amount": "12.30", "currency": "EUR"}, "paid": "1.5"}
    assert event.data == expected
    for endpoint, path in ((standard, "/standard"), (cloud, "/cloud")):
        (request,) = receiver.received(path)
        assert json.loads(request.body)["data"] == expected
        Webhook(endpoint.secret).verify(request.body, request.headers)
    # Encoded once, when the event was recorded: the CloudEvents body carries the same text.
    stored = event.payload
    data_text = stored[stored.index('"data":') + len('"data":'):-1]
    assert data_text.encode() in receiver.received("/cloud")[0].body


def test_without_it_the_custom_type_is_refused_when_sent() -> None:
    with pytest.raises(PayloadError, match="not JSON-serializable"):
        webhooks.send_event("invoice.paid", {"total": Money("1", "EUR")})


def test_the_encoder_is_built_once_and_again_when_the_setting_changes() -> None:
    default = json_encoder()
    assert type(default) is DjangoJSONEncoder
    assert json_encoder() is default
    with override_webhooks(JSON_ENCODER=MONEY_ENCODER):
        custom = json_encoder()
        assert type(custom) is MoneyEncoder and json_encoder() is custom
        assert (custom.item_separator, custom.key_separator) == (",", ":")
        assert (custom.ensure_ascii, custom.allow_nan) == (False, False)
    assert type(json_encoder()) is DjangoJSONEncoder


def test_captured_webhooks_compare_data_through_the_sites_encoder() -> None:
    with override_webhooks(JSON_ENCODER=MONEY_ENCODER), capture_webhooks() as captured:
        webhooks.send_event("invoice.paid", {"total": Money("9.99", "USD")})
        captured.assert_sent("invoice.paid", data={"total": Money("9.99", "USD")})
        captured.assert_sent("invoice.paid", data_contains={"total": {"currency": "USD"}})
        assert "9.99" in captured.events[0].describe()


@pytest.mark.parametrize("path,fragment", [
    ("tests.test_json_encoder.Missing", "cannot be imported"),
    ("no_such_module.Encoder", "cannot be imported"),
    ("tests.test_json_encoder.NotAnEncoder", "is not a json.JSONEncoder subclass"),
    ("json.dumps", "is not a json.JSONEncoder subclass"),
    ("tests.test_json_encoder.StrictEncoder", "cannot be built"),
])
def test_a_bad_encoder_is_a_check_error(path: str, fragment: str) -> None:
    with override_webhooks(JSON_ENCODER=path):
        (error,) = check_json_encoder()
        assert error.id == "webhooks.E061"
        assert fragment in error.msg
        assert path in error.msg
        if fragment != "cannot be built":
            with pytest.raises(WebhooksConfigurationError, match="JSON_ENCODER"):
                webhooks.send_event("invoice.paid", {"n": 1})


def test_a_good_encoder_passes_and_a_bad_value_is_e003() -> None:
    assert check_json_encoder() == []
    with override_webhooks(JSON_ENCODER=MONEY_ENCODER):
        assert check_json_encoder() == []
    with override_webhooks(JSON_ENCODER=42):
        assert check_json_encoder() == []  # reported once, as a bad value
        assert [e.id for e in check_settings() if e.id != "webhooks.W001"] == ["webhooks.E003"]
