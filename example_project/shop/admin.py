"""Admin of the demo shop: every change made here is published as a webhook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

import webhooks
from example_project.shop.models import Membership, Order, OrderItem, Organization, Product


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    """Organizations own webhook endpoints: ``search_fields`` lets the endpoint form's owner
    field search them."""

    list_display = ["name", "email"]
    search_fields = ["name", "email"]
    inlines = [MembershipInline]


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["name", "price"]
    search_fields = ["name"]


class OrderItemInline(admin.TabularInline):
    model = OrderItem
    extra = 1


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["__str__", "organization", "customer", "status", "total", "created_at",
                    "updated_at"]
    list_filter = ["status", "organization"]
    list_select_related = ["organization", "customer"]
    autocomplete_fields = ["organization", "customer"]
    readonly_fields = ["total", "created_at", "updated_at"]
    inlines = [OrderItemInline]
    actions = ["mark_paid", "mark_shipped"]

    def save_related(self, request: HttpRequest, form: ModelForm, formsets: Any,
                     change: bool) -> None:
        super().save_related(request, form, formsets, change)
        form.instance.update_total()

    @admin.action(description="Mark as paid (sends invoice.paid)")
    def mark_paid(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        def invoice(order: Order) -> None:  # a custom event
            webhooks.send_event("invoice.paid", {"order_id": order.pk, "amount": order.total},
                                owner=order.organization_id)

        self._change_status(request, queryset, Order.Status.PAID, invoice)

    @admin.action(description="Mark as shipped (sends order.shipped)")
    def mark_shipped(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        # The order's own custom action: its serializer, owner and sequence counter.
        self._change_status(request, queryset, Order.Status.SHIPPED,
                            lambda order: webhooks.send_model_event(order, "shipped"))

    def _change_status(self, request: HttpRequest, queryset: QuerySet[Order],
                       status: Order.Status, publish: Callable[[Order], object]) -> None:
        """Give each order ``status`` (publishing ``order.updated``) and ``publish`` an event
        about it, in one transaction: the event is sent only if the change commits."""
        count = 0
        for order in queryset.exclude(status=status):
            with transaction.atomic():
                order.status = status
                order.save()
                publish(order)
            count += 1
        self.message_user(request, f"{count} order(s) marked as {status.label.lower()}.",
                          messages.SUCCESS)
