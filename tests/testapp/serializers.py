from __future__ import annotations

from typing import Any

from rest_framework import serializers

from tests.testapp.models import Product


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
