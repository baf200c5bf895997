"""The admin in a real headless Chromium: log in, add an endpoint, send a test event, see it.

Needs the ``playwright`` Python package and Debian's ``chromium`` (``/usr/bin/chromium``;
Playwright's own browser download is not used). Screenshots go to ``var/test-artifacts/``.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.servers.basehttp import ThreadedWSGIServer
from django.test.testcases import LiveServerThread

from tests.receiver import PromptShutdown, Receiver, Reply
from webhooks.models import DeliveryAttempt, Endpoint

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


def test_send_a_test_event_from_the_admin(server: str, receiver: Receiver) -> None:
    from playwright.sync_api import expect, sync_playwright

    get_user_model().objects.create_superuser("staff", "staff@example.com", "pw")
    receiver.script("/hook", Reply(200, b'{"received": true}',
                                   {"Content-Type": "application/json"}))
    hook_url = receiver.url("/hook")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # No database access from this thread while Playwright's event loop runs: Django would
    # refuse it. The live server thread does all the work.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
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

            page.locator("input[name=_selected_action]").first.check()
            page.select_option("select[name=action]", "send_test")
            page.click("button[name=index]")
            expect(page.locator("ul.messagelist")).to_contain_text(
                "Sent a test event to 1 endpoint.")
            page.screenshot(path=str(ARTIFACTS / "admin-endpoints.png"))

            page.goto(f"{server}/admin/webhooks/delivery/")
            page.locator("#result_list tbody tr th a").first.click()
            attempts = page.locator("#attempt_log-group")
            expect(attempts).to_contain_text("200")
            expect(attempts).to_contain_text('{"received": true}')
            expect(attempts).to_contain_text("webhook-signature")
            expect(page.locator("#content")).to_contain_text("Succeeded")
            page.screenshot(path=str(ARTIFACTS / "admin.png"), full_page=True)

            # The endpoint page: masked secret, health line and chart.
            page.goto(f"{server}/admin/webhooks/endpoint/")
            page.locator("#result_list tbody tr th a").first.click()
            expect(page.locator("svg.webhooks-chart")).to_be_visible()
            expect(page.locator("#content")).to_contain_text("100.0% succeeded")
            content = page.content()
        finally:
            browser.close()
    (received,) = receiver.received("/hook")
    endpoint = Endpoint.objects.get()
    assert endpoint.url == hook_url
    assert sorted(endpoint.event_types) == ["*"]
    assert endpoint.secret not in content
    assert re.search(r"whsec_•+", content)
    attempt = DeliveryAttempt.objects.get()
    assert attempt.endpoint_id == endpoint.pk and attempt.status_code == 200
    assert received.headers["webhook-id"].startswith("evt_")
    assert (ARTIFACTS / "admin.png").stat().st_size > 10_000
