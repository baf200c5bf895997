"""The serializer that builds the ``data`` of ``order.*`` webhooks (named in settings)."""

from __future__ import annotations

from rest_framework import serializers

from example_project.shop.models import Order, OrderItem


class OrderItemSerializer(serializers.ModelSerializer):
    product_name = serializers.CharField(source="product.name", read_only=True)

    class Meta:
        model = OrderItem
        fields = ["product", "product_name", "quantity"]
        read_only_fields = fields


class OrderSerializer(serializers.ModelSerializer):
    items = OrderItemSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = ["id", "organization", "status", "total", "customer", "created_at", "updated_at",
                  "items"]
        read_only_fields = fields
