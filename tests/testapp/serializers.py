from __future__ import annotations

from typing import Any

from rest_framework import serializers

from tests.testapp.models import LineItem, Product


class ProductSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = ["id", "name", "price"]


class Opaque:
    """Something no JSON encoder knows."""


class BrokenSerializer(serializers.ModelSerializer):
    """Returns data that cannot be serialized as JSON."""

    extra = serializers.SerializerMethodField()

    class Meta:
        model = Product
        fields = ["id", "extra"]

    def get_extra(self, obj: Any) -> Any:
        return Opaque()


class RaisingSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = ["id"]

    def to_representation(self, instance: Any) -> Any:
        raise RuntimeError("the serializer exploded")


class LineItemSerializer(serializers.ModelSerializer):
    """A nested serializer, a dotted source, a method field and a string relation (the schema
    tests)."""

    product = ProductSerializer(read_only=True)
    order_status = serializers.CharField(source="order.status", read_only=True)
    label = serializers.SerializerMethodField()
    order_label = serializers.StringRelatedField(source="order")

    class Meta:
        model = LineItem
        fields = ["id", "order", "product", "order_status", "quantity", "label", "order_label"]
        read_only_fields = ["id", "order", "quantity"]

    def get_label(self, obj: LineItem) -> str:
        return f"{obj.quantity} x {obj.product.name}"
