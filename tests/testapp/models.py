from __future__ import annotations

from django.conf import settings
from django.db import models


class Organization(models.Model):
    """An owner other than a user (``tests.settings_org``: ``WEBHOOKS_OWNER_MODEL``)."""

    name = models.CharField(max_length=100)
    email = models.EmailField(blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership",
                                     related_name="organizations")

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "user"],
                                               name="testapp_one_membership")]

    def __str__(self) -> str:
        return f"membership {self.pk}"


class Product(models.Model):
    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=10, decimal_places=2, default=0)

    def __str__(self) -> str:
        return self.name


class Order(models.Model):
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                 on_delete=models.CASCADE, related_name="orders")
    organization = models.ForeignKey(Organization, null=True, blank=True,
                                     on_delete=models.CASCADE, related_name="orders")
    status = models.CharField(max_length=20, default="new")
    total = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Order {self.pk}"


class LineItem(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    quantity = models.PositiveIntegerField(default=1)

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_id}"


class Note(models.Model):
    """A model that publishes nothing."""

    text = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.text
