"""The demo's event catalog against its schemas, run as ``python -m tests.demo_catalog`` with
``DJANGO_SETTINGS_MODULE=example_project.settings`` and a scratch ``DATABASE_URL``
(``tests/test_schemas.py`` does). It migrates, makes every demo event happen (orders with
items, a payment, product changes, a deletion, a test event), validates every event row and
every type's example against the type's schema, generates the OpenAPI 3.1 document with the
webhooks, and prints a JSON report: per type, the schema's size in bytes (compact JSON), the
number of real payloads and what did not validate.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from decimal import Decimal
from typing import Any


def exercise() -> None:
    """Every demo event type, once at least: what the admin does, through the models."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    import webhooks
    from example_project.shop.models import Membership, Order, OrderItem, Organization, Product
    from webhooks import services

    user = get_user_model().objects.create_user("alice", password="alice")
    acme = Organization.objects.create(name="Acme Coffee", email="ops@acme.example")
    Membership.objects.create(organization=acme, user=user)
    beans = Product.objects.create(name="Beans", price=Decimal("12.50"))
    cups = Product.objects.create(name="Cups", price=Decimal("3.00"))
    order = Order.objects.create(organization=acme, customer=user)
    OrderItem.objects.create(order=order, product=beans, quantity=2)
    OrderItem.objects.create(order=order, product=cups, quantity=1)
    order.update_total()
    with transaction.atomic():  # the admin's "Mark as paid"
        order.status = Order.Status.PAID
        order.save()
        webhooks.send_event("invoice.paid", {"order_id": order.pk, "amount": order.total},
                            owner=order.organization_id)
    webhooks.send_model_event(order, "shipped")  # the admin's "Mark as shipped"
    beans.price = Decimal("13.00")
    beans.save()
    Order.objects.create(organization=None, customer=None).delete()
    endpoint = services.create_endpoint(acme, ["*"],
                                        url="http://127.0.0.1:8000/receiver/demo/")
    services.send_test_event(endpoint)


def openapi() -> dict[str, Any]:
    """The demo's API document, with the webhooks (its SPECTACULAR_SETTINGS)."""
    from django.urls import include, path
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema
    from openapi_spec_validator import validate

    patterns = [path("api/webhooks/", include("webhooks.api.urls"))]
    document = SchemaGenerator(patterns=patterns).get_schema(request=None, public=True)
    document = json.loads(json.dumps(document))
    validate(document)
    validate_schema(document)
    return {"version": document["openapi"], "valid": True,
            "webhooks": sorted(document.get("webhooks", {}))}


def main() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    from tests.schema_check import strict_errors
    from webhooks.api.examples import example_body
    from webhooks.events.catalog import get_catalog
    from webhooks.events.schemas import event_schema
    from webhooks.models import Event

    call_command("migrate", verbosity=0)
    exercise()
    catalog = get_catalog()
    payloads: dict[str, list[str]] = defaultdict(list)
    for event in Event.objects.order_by("created_at"):
        payloads[event.type].append(event.payload)
    types = {}
    for name, event_type in catalog.types.items():
        schema = event_schema(event_type, catalog)
        errors = [error for payload in payloads[name]
                  for error in strict_errors(schema, json.loads(payload))]
        types[name] = {
            "schema_bytes": len(json.dumps(schema, separators=(",", ":"),
                                           ensure_ascii=False).encode()),
            "example_errors": strict_errors(schema, example_body(event_type, catalog)),
            "payloads": len(payloads[name]),
            "payload_errors": errors,
        }
    json.dump({"types": types, "openapi": openapi()}, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
