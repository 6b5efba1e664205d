"""/api/v1/skus: the catalogue, read-only, filterable and paginated."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.request import Request

from webapp.api.permissions import IsAnyRole
from webapp.catalog.models import SKU


class SkuListApi(ListAPIView):
    permission_classes = [IsAnyRole]

    class OutputSerializer(serializers.ModelSerializer):
        category = serializers.CharField(source="series.brand.category.name")
        brand = serializers.CharField(source="series.brand.name")
        series = serializers.CharField(source="series.name")
        image_urls = serializers.SerializerMethodField()

        class Meta:
            model = SKU
            fields = ["id", "code", "name", "category", "brand", "series", "colour",
                      "material", "size", "attributes", "is_active", "image_urls"]

        def get_image_urls(self, sku: SKU) -> list[str]:
            request: Request = self.context["request"]
            return [request.build_absolute_uri(i.image.url) for i in sku.images.all()]

    serializer_class = OutputSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        skus = SKU.objects.select_related("series__brand__category").prefetch_related("images")
        params = self.request.query_params
        if params.get("category"):
            skus = skus.filter(series__brand__category_id=params["category"])
        if params.get("brand"):
            skus = skus.filter(series__brand_id=params["brand"])
        if params.get("series"):
            skus = skus.filter(series_id=params["series"])
        if params.get("q"):
            skus = skus.filter(name__icontains=params["q"])
        if params.get("active") in ("true", "false"):
            skus = skus.filter(is_active=params["active"] == "true")
        return skus.order_by("code")
