"""The staff admin: every page and action, constant query counts, secrets never listed."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.factories import make_attempts, make_delivery, make_endpoint, make_event, make_owner
from tests.helpers import override_webhooks
from tests.receiver import Receiver, Reply
from webhooks import admin as webhooks_admin
from webhooks import ids
from webhooks.admin.health import chart_svg, health_by_endpoint, hourly_buckets
from webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event, Subscription

pytestmark = pytest.mark.django_db

Status = Delivery.Status


# --- data ------------------------------------------------------------------------------------


def seed(n: int) -> dict[str, str]:
    """``n`` endpoints, ``n`` events, one event with ``n`` deliveries, one delivery with ``n``
    attempts; returns the URL of every page, keyed by name."""
    endpoints = [make_endpoint(f"https://example.com/hook/{i}", "invoice.paid", "ping.sent")
                 for i in range(n)]
    events = [make_event() for _ in range(n)]
    deliveries = [make_delivery(endpoint, event=events[0],
                                status=Status.FAILED if i % 2 else Status.SUCCEEDED)
                  for i, endpoint in enumerate(endpoints)]
    make_attempts(deliveries[0], n)
    for delivery in deliveries[1:]:
        make_attempts(delivery, 1, status_code=500 if delivery.status == Status.FAILED
                      else 200)
    attempt = DeliveryAttempt.objects.filter(delivery=deliveries[0]).first()
    assert attempt is not None
    return {
        "index": reverse("admin:index"),
        "endpoints": reverse("admin:webhooks_endpoint_changelist"),
        "endpoint": reverse("admin:webhooks_endpoint_change", args=[endpoints[0].public_id]),
        "endpoint_add": reverse("admin:webhooks_endpoint_add"),
        "events": reverse("admin:webhooks_event_changelist"),
        "event": reverse("admin:webhooks_event_change", args=[events[0].public_id]),
        "deliveries": reverse("admin:webhooks_delivery_changelist"),
        "deliveries_filtered": reverse("admin:webhooks_delivery_changelist")
        + f"?status=failed&event_type=invoice.paid&endpoint={endpoints[0].public_id}",
        "delivery": reverse("admin:webhooks_delivery_change", args=[deliveries[0].public_id]),
        "failed": reverse("admin:webhooks_faileddelivery_changelist"),
        "attempts": reverse("admin:webhooks_deliveryattempt_changelist"),
        "attempt": reverse("admin:webhooks_deliveryattempt_change", args=[attempt.public_id]),
    }


def query_count(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(queries)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- pages -----------------------------------------------------------------------------------


def test_every_page_renders(admin_client: Client) -> None:
    urls = seed(3)
    for name, url in urls.items():
        response = admin_client.get(url)
        assert response.status_code == 200, name
    index = admin_client.get(urls["index"]).content.decode()
    assert "Failed deliveries" in index
    assert urls["failed"] in index


def test_query_counts_do_not_grow_with_rows(admin_client: Client) -> None:
    small = seed(5)
    admin_client.get(small["index"])  # warm the session and content type caches
    counts_small = {name: query_count(admin_client, url) for name, url in small.items()}
    Endpoint.objects.all().delete()
    Event.objects.all().delete()
    large = seed(50)
    counts_large = {name: query_count(admin_client, url) for name, url in large.items()}
    assert counts_small == counts_large
    # And they are small: a page of a large table is a handful of queries.
    assert max(counts_large.values()) <= 12, counts_large


def test_failed_deliveries_list_only_failed(admin_client: Client) -> None:
    endpoint = make_endpoint("https://example.com/a")
    ok = make_delivery(endpoint, status=Status.SUCCEEDED)
    bad = make_delivery(endpoint, status=Status.FAILED)
    page = admin_client.get(reverse("admin:webhooks_faileddelivery_changelist"))
    assert page.status_code == 200
    assert bad.public_id in page.content.decode()
    assert ok.public_id not in page.content.decode()
    # Its change page is the delivery's.
    response = admin_client.get(reverse("admin:webhooks_faileddelivery_change", args=[bad.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:webhooks_delivery_change", args=[bad.pk])


def test_delivery_filters(admin_client: Client) -> None:
    a = make_endpoint("https://example.com/a")
    b = make_endpoint("https://example.com/b")
    d1 = make_delivery(a, "invoice.paid", status=Status.FAILED)
    d2 = make_delivery(b, "ping.sent", status=Status.SUCCEEDED)
    url = reverse("admin:webhooks_delivery_changelist")

    def listed(query: str) -> set[str]:
        html = admin_client.get(url + query).content.decode()
        return {d.public_id for d in (d1, d2) if d.public_id in html}

    assert listed("") == {d1.public_id, d2.public_id}
    assert listed("?status=failed") == {d1.public_id}
    assert listed(f"?endpoint={b.public_id}") == {d2.public_id}
    assert listed(f"?endpoint={b.pk}") == {d2.public_id}  # the bare UUID works too
    assert listed(f"?q={b.public_id}") == {d2.public_id}
    assert listed("?event_type=ping.sent") == {d2.public_id}
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    html = admin_client.get(url, {"created_at__gte": str(today),
                                  "created_at__lt": str(today + timedelta(days=1))})
    assert d1.public_id in html.content.decode()
    html = admin_client.get(url, {"created_at__lt": str(today - timedelta(days=1))})
    assert d1.public_id not in html.content.decode()
    assert listed(f"?q={d1.public_id}") == {d1.public_id}
    assert listed(f"?q={d2.event.public_id}") == {d2.public_id}
    assert listed("?q=example.com/b") == {d2.public_id}
    assert listed("?q=invoice.paid") == {d1.public_id}


@pytest.mark.owners
def test_endpoint_filter_tells_endpoints_with_one_url_apart(admin_client: Client) -> None:
    url = "https://example.com/shared"
    make_endpoint(url, owner=make_owner("acme"))
    make_endpoint(url, owner=make_owner("globex"))
    make_endpoint(url, description="Staging")
    make_endpoint(url, description="Production")
    page = admin_client.get(reverse("admin:webhooks_delivery_changelist"))
    (spec,) = [f for f in page.context["cl"].filter_specs
              if getattr(f, "parameter_name", "") == "endpoint"]
    labels = sorted(label for _value, label in spec.lookup_choices)
    assert labels == [f"{url} (acme)", f"{url} (globex)", f"{url} · Production",
                      f"{url} · Staging"]
    # Owners are read in the same query, however many endpoints there are.
    with CaptureQueriesContext(connection) as few:
        admin_client.get(reverse("admin:webhooks_delivery_changelist"))
    for n in range(10):
        make_endpoint(f"{url}/{n}", owner=make_owner(f"owner{n}"))
    with CaptureQueriesContext(connection) as many:
        admin_client.get(reverse("admin:webhooks_delivery_changelist"))
    assert len(few) == len(many)


def test_event_search_by_public_id_uuid_and_type(admin_client: Client) -> None:
    paid, ping = make_event("invoice.paid"), make_event("ping.sent")
    url = reverse("admin:webhooks_event_changelist")

    def listed(query: str) -> set[str]:
        html = admin_client.get(url, {"q": query}).content.decode()
        return {e.public_id for e in (paid, ping) if e.public_id in html}

    assert listed(paid.public_id) == {paid.public_id}
    assert listed(str(ping.id)) == {ping.public_id}
    assert listed("ping") == {ping.public_id}
    assert listed("invoice.paid") == {paid.public_id}
    assert listed("evt_nonsense") == set()
    filtered = admin_client.get(url, {"event_type": "ping.sent"}).content.decode()
    assert ping.public_id in filtered and paid.public_id not in filtered


def test_event_page_shows_payload_and_deliveries_inline(admin_client: Client) -> None:
    event = make_event()
    delivery = make_delivery(make_endpoint("https://example.com/inline"), event=event)
    html = admin_client.get(reverse("admin:webhooks_event_change", args=[event.pk])
                            ).content.decode()
    assert event.public_id in html
    assert delivery.public_id in html
    assert "https://example.com/inline" in html


def test_one_id_label_per_page(admin_client: Client) -> None:
    urls = seed(1)
    for name in ("endpoint", "event", "delivery", "attempt"):
        html = admin_client.get(urls[name]).content.decode()
        labels = re.findall(r"<label[^>]*>\s*(?:ID|Id|id)\s*:?\s*</label>", html)
        assert len(labels) <= 1, (name, labels)
    for name in ("event", "delivery"):
        html = admin_client.get(urls[name]).content.decode()
        assert re.search(r"<label>ID:</label>", html), name


def test_counts_are_singular_when_one(admin_client: Client) -> None:
    endpoint = make_endpoint("https://example.com/one")
    make_attempts(make_delivery(endpoint), 1, status_code=200)
    page = admin_client.get(reverse("admin:webhooks_endpoint_change", args=[endpoint.pk]))
    assert "100.0% succeeded · 1 attempt ·" in page.content.decode()
    listing = admin_client.get(reverse("admin:webhooks_endpoint_changelist")).content.decode()
    assert "1 of 1 attempt succeeded in the last 24 hours" in listing
    assert " 1 attempts" not in listing + page.content.decode()


def test_delivery_page_shows_attempts_with_request_and_response(admin_client: Client) -> None:
    delivery = make_delivery(make_endpoint("https://example.com/d"))
    DeliveryAttempt.objects.create(
        delivery=delivery, endpoint=delivery.endpoint, number=1, url=delivery.endpoint.url,
        request_headers={"webhook-id": "evt_request_header"}, status_code=502,
        response_headers={"X-Upstream": "sad"}, response_body="B" * 5000, duration=0.25,
        error_class="http_status", error="HTTP 502")
    html = admin_client.get(reverse("admin:webhooks_delivery_change", args=[delivery.pk])
                            ).content.decode()
    assert "evt_request_header" in html
    assert "X-Upstream" in html
    assert "http_status" in html
    assert "250 ms" in html
    assert "502 Bad Gateway" in html
    assert "B" * webhooks_admin.INLINE_BODY_CHARS + "…" in html  # capped in the inline
    assert "B" * (webhooks_admin.INLINE_BODY_CHARS + 1) not in html
    assert "Retry now" in html


def test_attempt_blocks_read_as_http(admin_client: Client) -> None:
    """Headers one per line, JSON indented, HTML folded and escaped, long bodies folded."""
    delivery = make_delivery(make_endpoint("https://example.com/blocks"))

    def attempt(number: int, **fields: Any) -> DeliveryAttempt:
        return DeliveryAttempt.objects.create(
            delivery=delivery, endpoint=delivery.endpoint, number=number,
            url=delivery.endpoint.url, request_headers={"webhook-id": "evt_1", "X-A": "b"},
            **fields)

    json_answer = attempt(1, status_code=200, response_headers={"Content-Type": "application/json"},
                          response_body='{"ok":true,"items":[1,2]}')
    attempt(2, status_code=502, response_headers={"Content-Type": "text/html"},
            response_body="<h1>Bad <b>gateway</b></h1><script>alert(1)</script>")
    attempt(3, status_code=None, error_class="timeout", error="no answer within 10 s")
    attempt(4, status_code=200, response_headers={}, response_body="line\n" * 40)
    html = admin_client.get(reverse("admin:webhooks_delivery_change", args=[delivery.pk])
                            ).content.decode()
    assert html.count('class="webhooks-attempt"') == 4
    # One header a line, in whatever order the database keeps a JSON object's keys (jsonb
    # sorts them by length).
    first, second = sorted(["webhook-id:</span> evt_1", "X-A:</span> b"], key=html.index)
    assert f"{first}\n" in html and second in html
    assert '{\n  &quot;ok&quot;: true,\n  &quot;items&quot;: [\n    1,' in html  # indented
    assert "&lt;h1&gt;Bad &lt;b&gt;gateway&lt;/b&gt;&lt;/h1&gt;" in html  # text, not markup
    assert "<script>alert(1)" not in html
    folded = [s.replace("\xa0", " ") for s in re.findall(r"<summary>([^<]*)</summary>", html)]
    assert folded == ["HTML body, shown as text · 52 bytes · 1 line",
                      "Body · 200 bytes · 40 lines"], folded
    assert "No response" in html and "no answer within 10 s" in html
    # The attempt's own page: the same blocks, whole.
    page = admin_client.get(reverse("admin:webhooks_deliveryattempt_change",
                                    args=[json_answer.pk])).content.decode()
    assert "200 OK" in page and "&quot;items&quot;: [" in page


def test_the_delivery_page_stays_small_whatever_its_attempts_hold(
        admin_client: Client) -> None:
    """150 attempts, each with as many response headers and as much body as the caps let
    in: the page shows a bounded share of each (the rest is on the attempt's own page)."""
    delivery = make_delivery(make_endpoint("https://example.com/big"))
    headers = {f"X-Header-{n:02}": "v" * 1000 for n in range(30)}  # 30 KB of headers
    make_attempts(delivery, 150, status_code=500, response_body="b" * 20_000,
                  response_headers=headers)
    html = admin_client.get(reverse("admin:webhooks_delivery_change", args=[delivery.pk])
                            ).content.decode()
    assert "X-Header-00" in html
    assert len(html) < 1_000_000, len(html)


def test_attempt_list_filters_and_search(admin_client: Client) -> None:
    endpoint = make_endpoint("https://example.com/att")
    good = make_delivery(endpoint, status=Status.SUCCEEDED)
    bad = make_delivery(endpoint)
    make_attempts(good, 1, status_code=204)
    make_attempts(bad, 1, status_code=None)
    url = reverse("admin:webhooks_deliveryattempt_changelist")

    def listed(query: str) -> set[str]:
        html = admin_client.get(url + query).content.decode()
        return {d.public_id for d in (good, bad) if d.public_id in html}

    assert listed("") == {good.public_id, bad.public_id}
    assert listed("?outcome=ok") == {good.public_id}
    assert listed("?outcome=error") == {bad.public_id}
    assert listed("?outcome=http") == set()
    assert listed(f"?q={bad.public_id}") == {bad.public_id}
    assert listed(f"?q={good.attempt_log.get().public_id}") == {good.public_id}
    assert listed("?q=att_nonsense") == set()
    assert listed(f"?endpoint={endpoint.pk}") == {good.public_id, bad.public_id}


def test_capped_count_paginator(admin_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks_admin.CappedCountPaginator, "cap", 3)
    endpoint = make_endpoint("https://example.com/many")
    for _ in range(5):
        make_delivery(endpoint)
    html = admin_client.get(reverse("admin:webhooks_delivery_changelist")).content.decode()
    assert "More than 3 deliveries" in html  # (PostgreSQL: pages use the estimate)
    html = admin_client.get(reverse("admin:webhooks_delivery_changelist") + "?status=pending"
                            ).content.decode()
    assert "0 deliveries" in html


def test_no_full_table_count_on_large_lists(admin_client: Client) -> None:
    endpoint = make_endpoint("https://example.com/nocount")
    make_attempts(make_delivery(endpoint), 3)
    for name in ("delivery", "faileddelivery", "deliveryattempt", "event"):
        with CaptureQueriesContext(connection) as queries:
            admin_client.get(reverse(f"admin:webhooks_{name}_changelist"))
            # Facet counts ("Show counts") are off on these tables.
            admin_client.get(reverse(f"admin:webhooks_{name}_changelist") + "?_facets=True")
        counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
        assert counts, name
        assert all("LIMIT" in sql.upper() for sql in counts), (name, counts)


# --- endpoints: form, catalog widget, health -------------------------------------------------


def endpoint_form_data(**values: Any) -> dict[str, Any]:
    data = {"url": "https://example.com/new", "description": "", "owner": "",
            "is_active": "on", "events": ["invoice.paid"], "headers": "{}", "rate_limit": ""}
    data.update(values)
    return data


def choices_of(form: Any) -> list[tuple[str, Any]]:
    return list(form.fields["events"].choices)


def test_event_types_widget_comes_from_the_catalog_at_instantiation() -> None:
    form = webhooks_admin.EndpointForm()
    names = [value for value, _label in choices_of(form)]
    assert names[0] == "*"
    assert {"invoice.paid", "ping.sent", "order.created", "product.created"} <= set(names)
    assert "webhook.test" not in names
    assert form.initial["events"] == ["*"]
    with override_webhooks(EVENTS={"invoice.paid": "Paid.", "refund.issued": "Refunded."}):
        names = [value for value, _label in choices_of(webhooks_admin.EndpointForm())]
        assert "refund.issued" in names
        assert "ping.sent" not in names


def test_create_endpoint_saves_subscriptions(admin_client: Client) -> None:
    response = admin_client.post(reverse("admin:webhooks_endpoint_add"), endpoint_form_data(
        events=["invoice.paid", "ping.sent"], headers='{"Authorization": "Bearer abc"}'))
    assert response.status_code == 302, response.content.decode()[:3000]
    endpoint = Endpoint.objects.get()
    assert sorted(endpoint.event_types) == ["invoice.paid", "ping.sent"]
    assert endpoint.headers == {"Authorization": "Bearer abc"}
    # Editing replaces the subscriptions; "*" stands alone.
    response = admin_client.post(
        reverse("admin:webhooks_endpoint_change", args=[endpoint.pk]),
        endpoint_form_data(events=["*", "ping.sent"]))
    assert response.status_code == 302
    assert list(Subscription.objects.values_list("event_type", flat=True)) == ["*"]
    form = admin_client.get(reverse("admin:webhooks_endpoint_change", args=[endpoint.pk]))
    assert form.context["adminform"].form.initial["events"] == ["*"]


def test_endpoint_form_validates_url_headers_and_events(admin_client: Client) -> None:
    url = reverse("admin:webhooks_endpoint_add")
    cases = [
        (endpoint_form_data(url="http://10.0.0.1/hook"), "private, loopback or reserved"),
        (endpoint_form_data(url="ftp://example.com/x"), "must start with http:// or https://"),
        (endpoint_form_data(url="not a url"), "Enter a valid URL"),
        (endpoint_form_data(headers='{"webhook-id": "x"}'), "cannot be replaced"),
        (endpoint_form_data(headers='{"X-Bad": "a\\nb"}'), "line break"),
        (endpoint_form_data(events=[]), "This field is required"),
        (endpoint_form_data(events=["no.such"]), "Select a valid choice"),
    ]
    for data, message in cases:
        response = admin_client.post(url, data)
        assert response.status_code == 200
        assert message in response.content.decode(), message
    assert not Endpoint.objects.exists()


def test_endpoint_list_shows_health(admin_client: Client) -> None:
    endpoint = make_endpoint("https://example.com/health", consecutive_failures=2,
                             is_active=False, disabled_reason="The endpoint answered 410 Gone.")
    delivery = make_delivery(endpoint)
    make_attempts(delivery, 3, status_code=200, duration=0.2)
    make_attempts(delivery, 1, status_code=500, duration=0.4)
    make_attempts(delivery, 1, status_code=200, duration=9.0, ago=timedelta(hours=30))
    failing = make_endpoint("https://example.com/failing", consecutive_failures=1)
    make_endpoint("https://example.com/quiet", "invoice.paid", "ping.sent",
                  description="No traffic yet")
    html = admin_client.get(reverse("admin:webhooks_endpoint_changelist")).content.decode()
    assert "75.0% (4)" in html
    assert "median 200 ms" in html
    assert "The endpoint answered 410 Gone." in html
    assert "Disabled" in html and "Failing" in html and "1 failure in a row" in html
    assert "all event types" in html and ">*<" not in html
    assert "invoice.paid, ping.sent" in html and "No traffic yet" in html
    assert failing.url in html
    page = admin_client.get(reverse("admin:webhooks_endpoint_change", args=[endpoint.pk]))
    html = page.content.decode()
    assert "<svg" in html and "75.0% succeeded" in html
    assert "<script" not in chart_svg(hourly_buckets(endpoint.pk))


def test_health_median_and_unanswered_attempts() -> None:
    a = make_endpoint("https://example.com/a")
    b = make_endpoint("https://example.com/b")
    c = make_endpoint("https://example.com/c")
    for endpoint, durations in ((a, [0.1, 0.3, 0.2]), (b, [0.1, 0.2, 0.3, 0.4])):
        delivery = make_delivery(endpoint)
        for d in durations:
            make_attempts(delivery, 1, duration=d)
    make_attempts(make_delivery(c), 2, status_code=None, duration=5.0)
    health = health_by_endpoint([a.pk, b.pk, c.pk])
    assert health[a.pk].median_latency == pytest.approx(0.2)
    assert health[b.pk].median_latency == pytest.approx(0.25)
    assert health[a.pk].success_rate == 1.0
    assert health[c.pk].attempts == 2 and health[c.pk].success_rate == 0.0
    assert health[c.pk].median_latency is None
    assert health_by_endpoint([]) == {}


def test_chart_buckets_by_hour() -> None:
    endpoint = make_endpoint("https://example.com/chart")
    delivery = make_delivery(endpoint)
    make_attempts(delivery, 2, status_code=200, ago=timedelta(minutes=1))
    make_attempts(delivery, 1, status_code=503, ago=timedelta(minutes=1))
    make_attempts(delivery, 1, status_code=200, ago=timedelta(days=3))
    buckets = hourly_buckets(endpoint.pk)
    assert len(buckets) == 24
    assert sum(b.succeeded for b in buckets) == 2
    assert sum(b.failed for b in buckets) == 1
    svg = str(chart_svg(buckets))
    assert "http://" not in svg.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in svg


# --- secrets ---------------------------------------------------------------------------------


def test_secret_never_in_list_or_change_pages(admin_client: Client) -> None:
    endpoint = make_endpoint("https://example.com/secret")
    endpoint.rotate_secret()
    secrets = [endpoint.secret, endpoint.previous_secret]
    delivery = make_delivery(endpoint)
    make_attempts(delivery, 1)
    for url in [
        reverse("admin:webhooks_endpoint_changelist"),
        reverse("admin:webhooks_endpoint_change", args=[endpoint.pk]),
        reverse("admin:webhooks_delivery_changelist"),
        reverse("admin:webhooks_delivery_change", args=[delivery.pk]),
        reverse("admin:webhooks_deliveryattempt_changelist"),
        reverse("admin:webhooks_event_changelist"),
        reverse("admin:webhooks_endpoint_secret", args=[endpoint.pk]),  # GET: asks first
    ]:
        html = admin_client.get(url).content.decode()
        for secret in secrets:
            assert secret not in html, url
            assert secret[6:20] not in html, url


def test_reveal_secret_is_post_and_logged_without_the_secret(admin_client: Client) -> None:
    from django.contrib.admin.models import LogEntry

    endpoint = make_endpoint("https://example.com/reveal")
    url = reverse("admin:webhooks_endpoint_secret", args=[endpoint.pk])
    response = admin_client.post(url)
    assert response.status_code == 200
    assert endpoint.secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    (entry,) = LogEntry.objects.all()
    assert "Revealed" in entry.get_change_message()
    assert endpoint.secret not in entry.change_message


def test_rotate_secret_keeps_the_old_one_for_the_grace_period(admin_client: Client) -> None:
    endpoint = make_endpoint("https://example.com/rotate")
    old = endpoint.secret
    url = reverse("admin:webhooks_endpoint_rotate_secret", args=[endpoint.pk])
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, follow=True)
    endpoint.refresh_from_db()
    assert endpoint.secret != old
    assert endpoint.signing_secrets() == [endpoint.secret, old]
    (message,) = messages_of(response)
    assert "keeps signing until" in message
    assert old not in response.content.decode()
    assert endpoint.secret not in response.content.decode()


def test_view_only_staff_cannot_reveal_or_rotate_or_act() -> None:
    user = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_endpoint", "view_delivery", "view_faileddelivery"]))
    client = Client()
    client.force_login(user)
    endpoint = make_endpoint("https://example.com/viewer")
    delivery = make_delivery(endpoint)
    assert client.get(reverse("admin:webhooks_endpoint_changelist")).status_code == 200
    assert client.post(reverse("admin:webhooks_endpoint_secret", args=[endpoint.pk])
                       ).status_code == 403
    assert client.post(reverse("admin:webhooks_endpoint_rotate_secret", args=[endpoint.pk])
                       ).status_code == 403
    assert client.post(reverse("admin:webhooks_delivery_retry", args=[delivery.pk])
                       ).status_code == 403
    page = client.get(reverse("admin:webhooks_delivery_changelist"))
    assert "retry_now" not in page.content.decode()
    page = client.get(reverse("admin:webhooks_endpoint_changelist"))
    assert "send_test" not in page.content.decode()
    # The endpoint's page: no buttons they cannot use, subscriptions and headers readable,
    # header values masked.
    Endpoint.objects.filter(pk=endpoint.pk).update(headers={"Authorization": "Bearer s3cret"})
    html = client.get(reverse("admin:webhooks_endpoint_change", args=[endpoint.pk])
                      ).content.decode()
    assert "whsec_••" in html
    assert "Reveal" not in html and "Rotate" not in html
    assert reverse("admin:webhooks_endpoint_secret", args=[endpoint.pk]) not in html
    assert "all event types" in html and ">None<" not in html
    assert "Authorization: ••••••" in html and "s3cret" not in html
    assert "Retry now" not in client.get(
        reverse("admin:webhooks_delivery_change", args=[delivery.pk])).content.decode()


def test_staff_who_may_change_see_reveal_and_rotate(admin_client: Client) -> None:
    endpoint = make_endpoint("https://example.com/changer")
    html = admin_client.get(reverse("admin:webhooks_endpoint_change", args=[endpoint.pk])
                            ).content.decode()
    assert reverse("admin:webhooks_endpoint_secret", args=[endpoint.public_id]) in html
    assert reverse("admin:webhooks_endpoint_rotate_secret", args=[endpoint.public_id]) in html


def test_custom_header_values_are_shown_only_to_those_who_may_reveal_the_secret(
        admin_client: Client) -> None:
    """Names visible to view-only staff, values not; staff who may change the endpoint (and so
    reveal its secret) see them, on a page that is never stored (issue 14, finding 3)."""
    endpoint = make_endpoint("https://example.com/headers",
                             headers={"X-Api-Key": "tok-7f3a9c1e", "X-Tenant": "acme-42"})
    change = reverse("admin:webhooks_endpoint_change", args=[endpoint.pk])
    viewer = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_endpoint"))
    client = Client()
    client.force_login(viewer)
    response = client.get(change)
    html = response.content.decode()
    assert response.status_code == 200
    assert "X-Api-Key" in html and "X-Tenant" in html
    assert "tok-7f3a9c1e" not in html and "acme-42" not in html
    response = admin_client.get(change)
    html = response.content.decode()
    assert "tok-7f3a9c1e" in html and "acme-42" in html  # in the form, to edit
    assert "no-store" in response["Cache-Control"]


# --- actions ---------------------------------------------------------------------------------


def run_action(client: Client, model: str, action: str, objects: list[Any],
               **extra: Any) -> Any:
    return client.post(reverse(f"admin:webhooks_{model}_changelist"), {
        "action": action, "_selected_action": [str(o.pk) for o in objects], **extra,
    }, follow=True)


def test_send_test_event_action_delivers(admin_client: Client, receiver: Receiver,
                                         django_capture_on_commit_callbacks: Any) -> None:
    receiver.script("/a", Reply(201, b"created"))
    a = make_endpoint(receiver.url("/a"), "invoice.paid")
    b = make_endpoint(receiver.url("/b"), "invoice.paid")
    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(admin_client, "endpoint", "send_test", [a, b])
    assert messages_of(response) == ["Sent a test event to 2 endpoints."]
    assert len(receiver.wait_for(2)) == 2
    attempt = DeliveryAttempt.objects.get(delivery__endpoint=a)
    assert attempt.endpoint_id == a.pk  # recorded with its endpoint
    assert attempt.status_code == 201 and attempt.response_body == "created"
    response = run_action(admin_client, "endpoint", "send_test", [a])
    assert messages_of(response) == ["Sent a test event to 1 endpoint."]


def test_enable_and_disable_actions(admin_client: Client) -> None:
    a = make_endpoint("https://example.com/a")
    b = make_endpoint("https://example.com/b", is_active=False, disabled_reason="410",
                      consecutive_failures=7)
    response = run_action(admin_client, "endpoint", "disable", [a, b])
    # b was off already (a 410): now staff's too, which its owner cannot lift.
    assert messages_of(response) == ["Disabled 2 endpoints."]
    a.refresh_from_db()
    assert not a.is_active and a.disabled_reason == "Disabled by staff." and a.disabled_at
    b.refresh_from_db()
    assert (b.disabled_by, b.disabled_reason) == ("staff", "Disabled by staff.")
    response = run_action(admin_client, "endpoint", "enable", [a, b])
    assert messages_of(response) == ["Enabled 2 endpoints."]
    b.refresh_from_db()
    assert b.is_active and b.disabled_reason == "" and b.consecutive_failures == 0


def test_the_page_says_who_disabled_an_endpoint(admin_client: Client) -> None:
    """Staff see that a staff disable is theirs alone to lift, and can filter by who disabled
    (issue 14, finding 7)."""
    staff = make_endpoint("https://example.com/staff")
    make_endpoint("https://example.com/gone", is_active=False, disabled_by="system",
                  disabled_reason="The endpoint answered 410 Gone.")
    run_action(admin_client, "endpoint", "disable", [staff])
    page = admin_client.get(reverse("admin:webhooks_endpoint_change", args=[staff.pk]))
    html = page.content.decode()
    assert "Disabled by" in html and "Staff" in html
    assert "its owner cannot switch it on again: only staff can" in html
    listed = admin_client.get(reverse("admin:webhooks_endpoint_changelist") + "?disabled_by=staff")
    assert "example.com/staff" in listed.content.decode()
    assert "example.com/gone" not in listed.content.decode()


def test_reenable_through_the_form_clears_the_reason(admin_client: Client) -> None:
    endpoint = make_endpoint("https://example.com/form", "invoice.paid", is_active=False,
                             disabled_reason="The endpoint answered 410 Gone.")
    response = admin_client.post(
        reverse("admin:webhooks_endpoint_change", args=[endpoint.pk]),
        endpoint_form_data(url=endpoint.url))
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.disabled_reason == ""
    assert endpoint.disabled_by == ""


def test_retry_failed_deliveries_action(admin_client: Client, enqueued: list[Any],
                                        django_capture_on_commit_callbacks: Any) -> None:
    a = make_endpoint("https://example.com/a")
    b = make_endpoint("https://example.com/b")
    make_delivery(a, status=Status.FAILED)
    make_delivery(a, status=Status.FAILED)
    make_delivery(a, status=Status.SUCCEEDED)
    make_delivery(b, status=Status.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(admin_client, "endpoint", "retry_failed", [a])
    assert messages_of(response) == ["Queued 2 failed deliveries for retry."]
    assert Delivery.objects.filter(status=Status.PENDING).count() == 2
    assert ("drain", ()) in enqueued
    response = run_action(admin_client, "endpoint", "retry_failed", [b])
    assert messages_of(response) == ["Queued 1 failed delivery for retry."]


def test_replay_action_asks_for_a_time_then_replays(admin_client: Client,
                                                   enqueued: list[Any]) -> None:
    endpoint = make_endpoint("https://example.com/replay", "invoice.paid")
    old = make_delivery(endpoint, status=Status.FAILED)
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    make_delivery(endpoint, status=Status.FAILED)
    make_event()  # missed: no delivery for this endpoint
    page = run_action(admin_client, "endpoint", "replay_since", [endpoint])
    html = page.content.decode()
    assert page.templates[0].name == "admin/webhooks/endpoint/replay.html"
    assert 'name="since"' in html and endpoint.url in html
    since = timezone.localtime() - timedelta(hours=1)
    response = run_action(admin_client, "endpoint", "replay_since", [endpoint], apply="yes",
                          since=since.strftime("%Y-%m-%dT%H:%M"))
    assert messages_of(response) == [
        "Replayed 1 endpoint: 1 failed delivery retried, 1 missed event queued."]
    assert Delivery.objects.get(pk=old.pk).status == Status.FAILED  # before "since"
    # Too far back: the form says so and nothing happens.
    too_old = timezone.localtime() - timedelta(days=30)
    response = run_action(admin_client, "endpoint", "replay_since", [endpoint], apply="yes",
                          since=too_old.strftime("%Y-%m-%dT%H:%M"))
    assert "hours at most" in response.content.decode()


def test_retry_now_action_and_button(admin_client: Client, enqueued: list[Any]) -> None:
    endpoint = make_endpoint("https://example.com/retry")
    a = make_delivery(endpoint, status=Status.FAILED)
    b = make_delivery(endpoint, status=Status.SUCCEEDED)
    response = run_action(admin_client, "delivery", "retry_now", [a, b])
    assert messages_of(response) == ["Queued 2 deliveries for retry."]
    Delivery.objects.update(status=Status.FAILED)
    response = run_action(admin_client, "faileddelivery", "retry_now", [a])
    assert messages_of(response) == ["Queued 1 delivery for retry."]
    response = admin_client.post(reverse("admin:webhooks_delivery_retry", args=[b.pk]),
                                 follow=True)
    assert messages_of(response) == ["The delivery was queued for retry."]
    assert admin_client.get(reverse("admin:webhooks_delivery_retry", args=[b.pk])
                            ).status_code == 403


def test_the_failed_deliveries_route_retries_only_failed_deliveries(enqueued: list[Any]) -> None:
    """Staff holding only the failed deliveries' permissions retry failed deliveries, and only
    them: not a succeeded or pending one by its id (issue 14, finding 8)."""
    user = get_user_model().objects.create_user("support", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_faileddelivery", "change_faileddelivery"]))
    client = Client()
    client.force_login(user)
    endpoint = make_endpoint("https://example.com/failed-only")
    failed = make_delivery(endpoint, status=Status.FAILED)
    succeeded = make_delivery(endpoint, status=Status.SUCCEEDED)
    waiting = make_delivery(endpoint, status=Status.PENDING,
                            next_attempt_at=timezone.now() + timedelta(hours=1))

    def retry(delivery: Delivery) -> int:
        url = reverse("admin:webhooks_faileddelivery_retry", args=[delivery.pk])
        return client.post(url).status_code

    assert retry(succeeded) == 404
    assert retry(waiting) == 404
    assert retry(failed) == 302
    run_action(client, "faileddelivery", "retry_now", [succeeded, waiting])
    statuses = dict(Delivery.objects.values_list("pk", "status"))
    assert statuses == {failed.pk: Status.PENDING, succeeded.pk: Status.SUCCEEDED,
                        waiting.pk: Status.PENDING}
    waiting.refresh_from_db()
    assert waiting.next_attempt_at > timezone.now() + timedelta(minutes=59)  # not brought forward
    # The failed deliveries list is where it goes back to (the delivery's page is not theirs).
    Delivery.objects.filter(pk=failed.pk).update(status=Status.FAILED)
    response = client.post(reverse("admin:webhooks_faileddelivery_retry", args=[failed.pk]))
    assert response["Location"] == reverse("admin:webhooks_faileddelivery_changelist")


def test_admin_pages_are_reached_and_linked_by_public_id(admin_client: Client) -> None:
    """One id per object: the admin shows, links and searches the public id (what the API
    answers and the logs and commands use); the bare UUID still reaches every page."""
    endpoint = make_endpoint("https://example.com/one-id")
    delivery = make_delivery(endpoint, status=Status.FAILED)
    make_attempts(delivery, 1, status_code=500)
    attempt = delivery.attempt_log.get()
    for obj in (endpoint, delivery, delivery.event, attempt):
        name = obj._meta.model_name
        assert isinstance(obj, (Endpoint, Delivery, Event, DeliveryAttempt))
        for key in (obj.public_id, str(obj.pk)):
            page = admin_client.get(reverse(f"admin:webhooks_{name}_change", args=[key]))
            assert page.status_code == 200, (name, key)
            assert obj.public_id in page.content.decode()
        changelist = admin_client.get(reverse(f"admin:webhooks_{name}_changelist"))
        html = changelist.content.decode()
        assert reverse(f"admin:webhooks_{name}_change", args=[obj.public_id]) in html
        assert f"/{obj.pk}/" not in html  # no page is linked by its UUID
        # Another kind of object's id is no page (Django's "does not exist" redirect).
        other = delivery if obj is not delivery else endpoint
        missing = admin_client.get(reverse(f"admin:webhooks_{name}_change",
                                           args=[other.public_id]))
        assert missing.status_code == 302
    page = admin_client.get(reverse("admin:webhooks_delivery_change", args=[delivery.public_id]))
    html = page.content.decode()
    assert reverse("admin:webhooks_endpoint_change", args=[endpoint.public_id]) in html
    assert reverse("admin:webhooks_deliveryattempt_change", args=[attempt.public_id]) in html
    retry = admin_client.post(reverse("admin:webhooks_delivery_retry",
                                      args=[delivery.public_id]), follow=True)
    assert messages_of(retry) == ["The delivery was queued for retry."]
    endpoints = reverse("admin:webhooks_endpoint_changelist")
    for key in (endpoint.public_id, str(endpoint.pk)):
        found = admin_client.get(endpoints, {"q": key}).content.decode()
        assert reverse("admin:webhooks_endpoint_change", args=[endpoint.public_id]) in found
    nothing = admin_client.get(endpoints, {"q": delivery.public_id}).content.decode()
    assert reverse("admin:webhooks_endpoint_change", args=[endpoint.public_id]) not in nothing


def test_public_ids_in_lists_are_ours() -> None:
    delivery = make_delivery(make_endpoint("https://example.com/ids"))
    assert re.fullmatch(r"dlv_[0-9A-Z]{26}", delivery.public_id)
    assert ids.from_public("dlv", delivery.public_id) == delivery.pk
