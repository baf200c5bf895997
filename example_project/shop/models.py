"""Organizations and their members, products, orders and their items. Nothing here knows about
webhooks: the ``WEBHOOKS`` setting declares which changes are published, and
``WEBHOOKS_OWNER_MODEL = "shop.Organization"`` makes organizations own endpoints and events."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


class Organization(models.Model):
    """A customer account: its members share its orders and its webhook endpoints."""

    name = models.CharField(max_length=100, unique=True)
    email = models.EmailField(
        blank=True, help_text="Where notices about its webhook endpoints are sent."
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="organizations", blank=True
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user belongs to an organization."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="shop_membership_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization}"


class Product(models.Model):
    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=10, decimal_places=2)

    def __str__(self) -> str:
        return self.name


class Order(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "New"
        PAID = "paid", "Paid"
        SHIPPED = "shipped", "Shipped"
        CANCELLED = "cancelled", "Cancelled"

    # The order's webhooks go to this organization's endpoints (and to site-wide ones).
    organization = models.ForeignKey(
        Organization,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="orders",
    )
    # Who placed it: a member of the organization.
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="orders",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    total = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("0.00"))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Order #{self.pk}"

    def clean(self) -> None:
        """The customer, when given, must be a member of the order's organization."""
        if self.customer_id is None or self.organization_id is None:
            return
        if not Membership.objects.filter(
            organization_id=self.organization_id, user_id=self.customer_id
        ).exists():
            raise ValidationError(
                {"customer": "The customer is not a member of the order's organization."}
            )

    def update_total(self) -> None:
        """Set ``total`` from the items and save (publishing ``order.updated``) if it changed."""
        total = sum(
            (item.product.price * item.quantity for item in self.items.select_related("product")),
            Decimal("0.00"),
        )
        if total != self.total:
            self.total = total
            self.save(update_fields=["total", "updated_at"])


class OrderItem(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField(default=1)

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product}"
