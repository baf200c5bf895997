"""The admin in a real headless Chromium: log in, add an endpoint, send a test event, see it.

At 1280 px wide with the navigation sidebar open, every list of the app shows its key columns
without scrolling sideways, and a delivery's attempts read as request and response blocks.

Needs the ``playwright`` Python package and Debian's ``chromium`` (``/usr/bin/chromium``;
Playwright's own browser download is not used). Screenshots go to ``var/test-artifacts/``:
``admin-<model>-list.png`` for each list, ``admin.png`` (the test event's delivery),
``admin-failing-delivery.png`` (a timeout and an HTML error page), ``admin-endpoint.png`` and
``admin-endpoints.png`` (the top of the endpoint list, the picture in docs/admin.md).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.servers.basehttp import ThreadedWSGIServer
from django.test.testcases import LiveServerThread
from django.utils import timezone

from tests.factories import make_delivery, make_endpoint, make_owner
from tests.receiver import PromptShutdown, Receiver, Reply
from webhooks.models import Delivery, DeliveryAttempt, Endpoint

CHROMIUM = os.environ.get("WEBHOOKS_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

# CI sets WEBHOOKS_REQUIRE_BROWSER=1: there a missing browser is a failure, not a skip.
_REQUIRED = os.environ.get("WEBHOOKS_REQUIRE_BROWSER") == "1"
_MISSING = (
    "the playwright package is not installed (pip install playwright)"
    if importlib.util.find_spec("playwright") is None
    else f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if not os.path.exists(CHROMIUM) else ""
)
if _MISSING and _REQUIRED:
    raise RuntimeError(f"browser test required but {_MISSING}")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(bool(_MISSING), reason=f"browser test: {_MISSING}"),
]


class PromptWSGIServer(PromptShutdown, ThreadedWSGIServer):
    """Django's live server, stopping at once."""


class PromptLiveServerThread(LiveServerThread):
    """Django's live server thread with a server that stops at once."""

    server_class = PromptWSGIServer


@pytest.fixture
def server(transactional_db: Any) -> Iterator[str]:
    """A live server that also serves the admin's static files (CSS, JS)."""
    thread = PromptLiveServerThread("127.0.0.1", StaticFilesHandler)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    try:
        yield f"http://127.0.0.1:{thread.port}"
    finally:
        thread.terminate()


#: The width the admin must read at, navigation sidebar open (Django's default).
WIDTH = 1280

#: The columns of each list that must show without scrolling sideways, by changelist URL.
KEY_COLUMNS = {
    "endpoint": ["endpoint", "health", "subscribed_events", "last_24h"],
    "delivery": ["status_summary", "attempts", "last_error_display"],
    "faileddelivery": ["status_summary", "attempts", "last_error_display"],
    "deliveryattempt": ["status", "duration_ms", "error_display"],
    "event": ["public_id", "type"],
}

#: A script for the page: where each key column sits, and how far the list scrolls sideways.
MEASURE = """(names) => {
  const results = document.querySelector("#changelist .results");
  const box = results.getBoundingClientRect();
  return {
    listRight: box.right,
    listScroll: results.scrollWidth - results.clientWidth,
    pageScroll: document.documentElement.scrollWidth - window.innerWidth,
    sidebarOpen: document.querySelector("#nav-sidebar").getBoundingClientRect().width > 0,
    columns: names.map((name) => {
      const cells = document.querySelectorAll(
        `#result_list th.column-${name}, #result_list .field-${name}`);
      return [name, cells.length,
              Math.max(0, ...Array.from(cells, (c) => c.getBoundingClientRect().right))];
    }),
  };
}"""


def seed_lists(hook_url: str) -> str:
    """What a busy site shows: owners, a shared URL, long URLs and errors, a disabled and a
    failing endpoint, an HTML error page and a timeout. Returns the failing delivery's id."""
    acme, globex = make_owner("acme"), make_owner("globex")
    long_url = ("https://hooks.example-customer-with-a-long-name.com/api/v2/integrations/"
                "webhooks/inbound/orders?token=abcdef0123456789")
    shared = make_endpoint(long_url, "invoice.paid", "order.created", owner=acme,
                           description="Orders integration")
    disabled = make_endpoint(long_url, owner=globex, is_active=False, disabled_reason=(
        "Disabled after 4 days of failures: the receiver answered 503 Service Unavailable "
        "to every attempt since 2026-01-02."))
    failing = make_endpoint("https://erp.example.org/webhooks/receive", "invoice.paid",
                            consecutive_failures=3)
    html = ("<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
            "<h1 id='rendered'>Bad Gateway</h1><p>" + "The upstream server failed. " * 40
            + "</p></body></html>")
    now = timezone.now()
    delivery = make_delivery(
        failing, status="pending", last_status_code=502, last_attempt_at=now,
        next_attempt_at=now + timedelta(hours=1), last_error=(
            "http_status: the receiver answered 502 Bad Gateway (upstream connect error or "
            "disconnect/reset before headers)"))
    DeliveryAttempt.objects.create(
        delivery=delivery, endpoint=failing, number=1, url=failing.url,
        request_headers={"Content-Type": "application/json", "webhook-id": "evt_x"},
        status_code=None, duration=10.0, error_class="read_timeout",
        error="the receiver sent nothing for 10 seconds")
    DeliveryAttempt.objects.create(
        delivery=delivery, endpoint=failing, number=2, url=failing.url,
        request_headers={"Content-Type": "application/json", "webhook-id": "evt_x"},
        status_code=502, response_headers={"Content-Type": "text/html; charset=utf-8",
                                           "Server": "nginx"},
        response_body=html, duration=0.61, error_class="http_status", error="HTTP 502")
    Delivery.objects.filter(pk=delivery.pk).update(attempts=2)
    make_delivery(shared, status="succeeded", attempts=1, last_status_code=200)
    make_delivery(disabled, status="failed", attempts=1, attempt_status=503,
                  last_status_code=503, last_error="http_status: HTTP 503")
    return str(delivery.pk)


def measure_list(page: Any, server: str, model: str) -> dict[str, Any]:
    """Open the list of ``model``; where its key columns end, and whether it scrolls."""
    page.goto(f"{server}/admin/webhooks/{model}/")
    page.wait_for_selector("#result_list")
    measured: dict[str, Any] = page.evaluate(MEASURE, KEY_COLUMNS[model])
    return measured


def test_send_a_test_event_from_the_admin(server: str, receiver: Receiver) -> None:
    from playwright.sync_api import expect, sync_playwright

    get_user_model().objects.create_superuser("staff", "staff@example.com", "pw")
    receiver.script("/hook", Reply(200, b'{"received": true}',
                                   {"Content-Type": "application/json"}))
    hook_url = receiver.url("/hook")
    failing_delivery = seed_lists(hook_url)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    lists: dict[str, dict[str, Any]] = {}
    # No database access from this thread while Playwright's event loop runs: Django would
    # refuse it. The live server thread does all the work.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.set_default_timeout(20_000)
            page.goto(f"{server}/admin/")
            page.fill("#id_username", "staff")
            page.fill("#id_password", "pw")
            page.click("input[type=submit]")
            expect(page.get_by_role("link", name="Failed deliveries")).to_be_visible()

            page.goto(f"{server}/admin/webhooks/endpoint/add/")
            page.fill("#id_url", hook_url)
            page.fill("#id_description", "Loopback receiver")
            expect(page.locator("input[name=events][value='*']")).to_be_checked()
            page.check("input[name=events][value='invoice.paid']")
            page.click("input[name=_save]")
            expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")

            page.goto(f"{server}/admin/webhooks/endpoint/?q=127.0.0.1")
            page.locator("input[name=_selected_action]").first.check()
            page.select_option("select[name=action]", "send_test")
            page.click("button[name=index]")
            expect(page.locator("ul.messagelist")).to_contain_text(
                "Sent a test event to 1 endpoint.")

            # Every list at 1280 px, sidebar open: its key columns in view, no sideways scroll.
            for model in KEY_COLUMNS:
                lists[model] = measure_list(page, server, model)
                page.screenshot(path=str(ARTIFACTS / f"admin-{model}-list.png"), full_page=True)
            page.goto(f"{server}/admin/webhooks/endpoint/")
            expect(page.locator("#result_list")).to_contain_text("all event types")
            expect(page.locator("#changelist-filter")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "admin-endpoints.png"),
                            clip={"x": 0, "y": 0, "width": WIDTH, "height": 600})

            # The test event's delivery: the attempt as request and response blocks.
            page.goto(f"{server}/admin/webhooks/delivery/?q=webhook.test")
            page.locator("#result_list tbody tr th a").first.click()
            attempts = page.locator("#attempt_log-group")
            expect(attempts.locator(".webhooks-attempt")).to_have_count(1)
            expect(attempts).to_contain_text("200 OK")
            expect(attempts.locator("pre.webhooks-http").first).to_contain_text(
                "webhook-signature: v1,")
            expect(attempts.locator("pre.webhooks-body")).to_contain_text('"received": true')
            expect(page.locator("#content")).to_contain_text("Succeeded")
            page.screenshot(path=str(ARTIFACTS / "admin.png"), full_page=True)

            # The failing delivery: a timeout, then an HTML error page folded and not rendered.
            page.goto(f"{server}/admin/webhooks/delivery/{failing_delivery}/change/")
            blocks = page.locator("#attempt_log-group .webhooks-attempt")
            expect(blocks).to_have_count(2)
            expect(blocks.nth(0)).to_contain_text("No response")
            expect(blocks.nth(0)).to_contain_text("read_timeout")
            folded = blocks.nth(1).locator("details.webhooks-details")
            expect(folded.locator("summary")).to_contain_text("HTML body")
            expect(folded.locator("pre")).to_be_hidden()
            folded.locator("summary").click()
            expect(folded.locator("pre")).to_contain_text("<h1 id='rendered'>Bad Gateway</h1>")
            expect(page.locator("#rendered")).to_have_count(0)
            page.screenshot(path=str(ARTIFACTS / "admin-failing-delivery.png"), full_page=True)

            # The endpoint page: masked secret, health line and chart.
            page.goto(f"{server}/admin/webhooks/endpoint/?q=127.0.0.1")
            page.locator("#result_list tbody tr th a").first.click()
            expect(page.locator("svg.webhooks-chart")).to_be_visible()
            expect(page.locator("#content")).to_contain_text("100.0% succeeded · 1 attempt ")
            content = page.content()
            page.screenshot(path=str(ARTIFACTS / "admin-endpoint.png"), full_page=True)
        finally:
            browser.close()
    for model, measured in lists.items():
        assert measured["sidebarOpen"], model
        assert measured["listScroll"] <= 0 and measured["pageScroll"] <= 0, (model, measured)
        for name, cells, right in measured["columns"]:
            assert cells >= 2, (model, name, measured)  # the header and at least one row
            assert right <= min(WIDTH, measured["listRight"]), (model, name, measured)
    (received,) = receiver.received("/hook")
    endpoint = Endpoint.objects.get(url=hook_url)
    assert sorted(endpoint.event_types) == ["*"]
    assert endpoint.secret not in content
    assert re.search(r"whsec_•+", content)
    attempt = DeliveryAttempt.objects.get(endpoint=endpoint)
    assert attempt.status_code == 200
    assert received.headers["webhook-id"].startswith("evt_")
    assert (ARTIFACTS / "admin.png").stat().st_size > 10_000
