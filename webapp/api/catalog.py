"""/api/v1 catalogue reads: the hierarchy and SKUs, filterable and paginated (any role)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.api.errors import ApiError
from webapp.api.fields import IdField, SearchTextField
from webapp.api.permissions import IsAnyRole
from webapp.api.schema import error_responses
from webapp.catalog.models import SKU, Brand, Category, Series, SKUImage
from webapp.catalog.search import sku_text_rank
from webapp.catalog.selectors import sku_browse

# A bad filter is a 400; a page past the end a 404.
READ_ERRORS = error_responses(400, 401, 403, 404, 429)


class FilterInput(serializers.Serializer):
    """Query parameters; unknown ones are ignored, malformed ones are a 400."""

    category = IdField(required=False)
    brand = IdField(required=False)
    series = IdField(required=False)
    q = SearchTextField(required=False, allow_blank=True)
    active = serializers.ChoiceField(choices=["true", "false"], required=False)


def _filters(request: Request, serializer: type[serializers.Serializer]) -> dict[str, Any]:
    data = serializer(data=request.query_params)
    data.is_valid(raise_exception=True)
    return dict(data.validated_data)


@extend_schema_serializer(component_name="SkuImage")
class ImageOutput(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = SKUImage
        fields = ["id", "url", "position", "source"]

    def get_url(self, image: SKUImage) -> str:
        return self.context["request"].build_absolute_uri(image.image.url)


@extend_schema_serializer(component_name="Sku")
class SkuOutput(serializers.ModelSerializer):
    category = serializers.CharField(source="series.brand.category.name")
    category_id = serializers.IntegerField(source="series.brand.category_id")
    brand = serializers.CharField(source="series.brand.name")
    brand_id = serializers.IntegerField(source="series.brand_id")
    series = serializers.CharField(source="series.name")
    series_id = serializers.IntegerField()
    attributes = serializers.DictField(child=serializers.CharField())
    image_urls = serializers.SerializerMethodField()

    class Meta:
        model = SKU
        fields = ["id", "code", "name", "category", "category_id", "brand", "brand_id", "series",
                  "series_id", "colour", "material", "size", "attributes", "is_active",
                  "image_urls"]

    def get_image_urls(self, sku: SKU) -> list[str]:
        request: Request = self.context["request"]
        return [request.build_absolute_uri(i.image.url) for i in sku.images.all()]


@extend_schema_serializer(component_name="SkuDetail")
class SkuDetailOutput(SkuOutput):
    images = ImageOutput(many=True)
    merged_into = serializers.CharField(source="merged_into.code", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta(SkuOutput.Meta):
        fields = [*SkuOutput.Meta.fields, "images", "merged_into", "created_at", "updated_at"]


def skus_with_images() -> QuerySet[SKU]:
    images = Prefetch("images", queryset=SKUImage.objects.order_by("position", "id"))
    return SKU.objects.select_related("series__brand__category", "merged_into").prefetch_related(
        images
    )


class SkuListApi(ListAPIView):
    permission_classes = [IsAnyRole]
    serializer_class = SkuOutput

    @extend_schema(parameters=[FilterInput], responses={200: SkuOutput(many=True), **READ_ERRORS},
                   operation_id="skus_list")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[SKU]:
        params = _filters(self.request, FilterInput)
        status = {"true": "active", "false": "inactive"}.get(params.get("active", ""), "all")
        browse = sku_browse(
            query=params.get("q", ""), status=status, category_id=params.get("category"),
            brand_id=params.get("brand"), series_id=params.get("series"),
        )
        skus = skus_with_images().filter(pk__in=browse.values("pk"))
        query = params.get("q", "")
        # A text query lists the best matches first (full-text rank), then by code.
        return sku_text_rank(skus, query) if query.strip() else skus.order_by("code")


class SkuDetailApi(APIView):
    permission_classes = [IsAnyRole]

    @extend_schema(responses={200: SkuDetailOutput, **error_responses(401, 403, 404, 429)},
                   operation_id="skus_retrieve")
    def get(self, request: Request, sku_id: int) -> Response:
        sku = skus_with_images().filter(pk=sku_id).first()
        if sku is None:
            raise ApiError("No such SKU.", code="not_found", http_status=404)
        return Response(SkuDetailOutput(sku, context={"request": request}).data)


class CategoryListApi(ListAPIView):
    permission_classes = [IsAnyRole]

    @extend_schema_serializer(component_name="Category")
    class OutputSerializer(serializers.ModelSerializer):
        sku_count = serializers.IntegerField(help_text="active SKUs")

        class Meta:
            model = Category
            fields = ["id", "name", "sku_count"]

    serializer_class = OutputSerializer

    @extend_schema(responses={200: OutputSerializer(many=True), **READ_ERRORS},
                   operation_id="categories_list")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Category]:
        active = Q(brands__series__skus__is_active=True)
        return Category.objects.annotate(
            sku_count=Count("brands__series__skus", filter=active, distinct=True)
        ).order_by("name")


class BrandListApi(ListAPIView):
    permission_classes = [IsAnyRole]

    class FilterSerializer(serializers.Serializer):
        category = IdField(required=False)

    @extend_schema_serializer(component_name="Brand")
    class OutputSerializer(serializers.ModelSerializer):
        category = serializers.CharField(source="category.name")
        sku_count = serializers.IntegerField(help_text="active SKUs")

        class Meta:
            model = Brand
            fields = ["id", "name", "category_id", "category", "sku_count"]

    serializer_class = OutputSerializer

    @extend_schema(parameters=[FilterSerializer],
                   responses={200: OutputSerializer(many=True), **READ_ERRORS},
                   operation_id="brands_list")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Brand]:
        params = _filters(self.request, self.FilterSerializer)
        brands = Brand.objects.select_related("category").annotate(
            sku_count=Count("series__skus", filter=Q(series__skus__is_active=True), distinct=True)
        )
        if params.get("category"):
            brands = brands.filter(category_id=params["category"])
        return brands.order_by("name", "category__name")


class SeriesListApi(ListAPIView):
    permission_classes = [IsAnyRole]

    class FilterSerializer(serializers.Serializer):
        category = IdField(required=False)
        brand = IdField(required=False)

    @extend_schema_serializer(component_name="Series")
    class OutputSerializer(serializers.ModelSerializer):
        brand = serializers.CharField(source="brand.name")
        category_id = serializers.IntegerField(source="brand.category_id")
        sku_count = serializers.IntegerField(help_text="active SKUs")

        class Meta:
            model = Series
            fields = ["id", "name", "brand_id", "brand", "category_id", "sku_count"]

    serializer_class = OutputSerializer

    @extend_schema(parameters=[FilterSerializer],
                   responses={200: OutputSerializer(many=True), **READ_ERRORS},
                   operation_id="series_list")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Series]:
        params = _filters(self.request, self.FilterSerializer)
        series = Series.objects.select_related("brand").annotate(
            sku_count=Count("skus", filter=Q(skus__is_active=True), distinct=True)
        )
        if params.get("category"):
            series = series.filter(brand__category_id=params["category"])
        if params.get("brand"):
            series = series.filter(brand_id=params["brand"])
        return series.order_by("name", "brand__name")
