"""/api/v1 catalogue writes, for catalogue admins only: the same services as the pages."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.accounts.roles import Role
from webapp.api.catalog import ImageOutput, SkuDetailOutput, skus_with_images
from webapp.api.errors import ApiError
from webapp.api.permissions import role_permission
from webapp.api.schema import error_responses
from webapp.audit.selectors import audit_entries
from webapp.catalog.models import SKU, SKUImage
from webapp.catalog.services import (
    CatalogueError,
    sku_create,
    sku_image_remove,
    sku_images_add,
    sku_merge,
    sku_set_active,
    sku_update,
)
from webapp.catalog.validation import ReferenceImageError, images_check
from webapp.learning.index_status import index_status

IsCatalogueAdmin = role_permission(Role.CATALOGUE_ADMIN)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 429)
HISTORY_LIMIT = 200


def _sku(sku_id: int) -> SKU:
    sku = skus_with_images().filter(pk=sku_id).first()
    if sku is None:
        raise ApiError("No such SKU.", code="not_found", http_status=404)
    return sku


def _detail(request: Request, sku_id: int, http_status: int = 200) -> Response:
    return Response(SkuDetailOutput(_sku(sku_id), context={"request": request}).data,
                    status=http_status)


def _refused(exc: CatalogueError) -> ApiError:
    return ApiError(str(exc), code="catalogue_refused", http_status=409)


class SkuFieldsInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    category = serializers.CharField(max_length=120)
    brand = serializers.CharField(max_length=120)
    series = serializers.CharField(max_length=120)
    colour = serializers.CharField(max_length=60, required=False, allow_blank=True)
    material = serializers.CharField(max_length=60, required=False, allow_blank=True)
    size = serializers.CharField(max_length=60, required=False, allow_blank=True)
    attributes = serializers.DictField(child=serializers.CharField(allow_blank=True),
                                       required=False)


class SkuCreateApi(APIView):
    permission_classes = [IsCatalogueAdmin]
    parser_classes = [JSONParser]

    @extend_schema_serializer(component_name="SkuCreate")
    class InputSerializer(SkuFieldsInput):
        code = serializers.CharField(max_length=64)

    @extend_schema(request=InputSerializer, responses={201: SkuDetailOutput, **WRITE_ERRORS},
                   operation_id="skus_create")
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            sku = sku_create(actor=request.user, **serializer.validated_data)
        except CatalogueError as exc:
            raise _refused(exc) from exc
        return _detail(request, sku.pk, status.HTTP_201_CREATED)


class SkuUpdateApi(APIView):
    """Partial update: only the fields sent change. `is_active` false deactivates."""

    permission_classes = [IsCatalogueAdmin]
    parser_classes = [JSONParser]

    @extend_schema_serializer(component_name="SkuUpdate")
    class InputSerializer(SkuFieldsInput):
        code = serializers.CharField(max_length=64)
        is_active = serializers.BooleanField()

    @extend_schema(request=InputSerializer(partial=True),
                   responses={200: SkuDetailOutput, **WRITE_ERRORS},
                   operation_id="skus_update")
    def post(self, request: Request, sku_id: int) -> Response:
        sku = _sku(sku_id)
        serializer = self.InputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        active = data.pop("is_active", None)
        try:
            if data:
                sku = sku_update(sku=sku, actor=request.user, **data)
            if active is not None:
                sku_set_active(sku=sku, actor=request.user, active=active)
        except CatalogueError as exc:
            raise _refused(exc) from exc
        return _detail(request, sku.pk)


class SkuMergeApi(APIView):
    permission_classes = [IsCatalogueAdmin]
    parser_classes = [JSONParser]

    @extend_schema_serializer(component_name="SkuMerge")
    class InputSerializer(serializers.Serializer):
        into = serializers.CharField(max_length=64, help_text="code of the SKU that remains")

    @extend_schema_serializer(component_name="SkuMergeResult")
    class OutputSerializer(serializers.Serializer):
        into = SkuDetailOutput()
        images = serializers.IntegerField()
        candidates = serializers.IntegerField()
        decisions = serializers.IntegerField()
        bad_cases = serializers.IntegerField()

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer, **WRITE_ERRORS},
                   operation_id="skus_merge")
    def post(self, request: Request, sku_id: int) -> Response:
        source = _sku(sku_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        target = SKU.objects.filter(code=serializer.validated_data["into"]).first()
        if target is None:
            raise ApiError("No SKU has that code.", code="not_found", http_status=404)
        try:
            moved = sku_merge(source=source, target=target, actor=request.user)
        except CatalogueError as exc:
            raise _refused(exc) from exc
        body = {"into": _sku(target.pk), **moved.__dict__}
        return Response(self.OutputSerializer(body, context={"request": request}).data)


class SkuImageAddApi(APIView):
    permission_classes = [IsCatalogueAdmin]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema_serializer(component_name="SkuImagesUpload")
    class InputSerializer(serializers.Serializer):
        images = serializers.ListField(child=serializers.FileField(), min_length=1)

    @extend_schema(request={"multipart/form-data": InputSerializer},
                   responses={201: ImageOutput(many=True), **WRITE_ERRORS},
                   operation_id="skus_images_create")
    def post(self, request: Request, sku_id: int) -> Response:
        sku = _sku(sku_id)
        serializer = self.InputSerializer(data={"images": request.FILES.getlist("images")})
        serializer.is_valid(raise_exception=True)
        files = [(f.name or "image", f.read()) for f in serializer.validated_data["images"]]
        try:
            added = sku_images_add(sku=sku, actor=request.user, images=images_check(files))
        except ReferenceImageError as exc:
            raise ApiError(str(exc), code="invalid_image", messages=exc.messages) from exc
        return Response(ImageOutput(added, many=True, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)


class SkuImageDeleteApi(APIView):
    permission_classes = [IsCatalogueAdmin]

    @extend_schema(responses={204: None, **error_responses(401, 403, 404, 429)},
                   operation_id="skus_images_destroy")
    def delete(self, request: Request, sku_id: int, image_id: int) -> Response:
        image = SKUImage.objects.filter(pk=image_id, sku_id=sku_id).select_related("sku").first()
        if image is None:
            raise ApiError("No such image.", code="not_found", http_status=404)
        sku_image_remove(image=image, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SkuHistoryApi(APIView):
    permission_classes = [IsCatalogueAdmin]

    @extend_schema_serializer(component_name="AuditEntry")
    class OutputSerializer(serializers.Serializer):
        created_at = serializers.DateTimeField()
        actor = serializers.CharField(source="actor_name")
        action = serializers.CharField()
        object = serializers.CharField(source="object_repr")
        changes = serializers.JSONField()

    @extend_schema(responses={200: OutputSerializer(many=True),
                              **error_responses(401, 403, 404, 429)},
                   operation_id="skus_history")
    def get(self, request: Request, sku_id: int) -> Response:
        sku = _sku(sku_id)
        ids = [sku.pk, *sku.merged_from.values_list("pk", flat=True)]
        entries = audit_entries(sku_ids=ids)[:HISTORY_LIMIT]
        return Response(self.OutputSerializer(entries, many=True).data)


class IndexStatusApi(APIView):
    permission_classes = [IsCatalogueAdmin]

    @extend_schema_serializer(component_name="IndexStatus")
    class OutputSerializer(serializers.Serializer):
        name = serializers.CharField(allow_null=True)
        model_version = serializers.CharField()
        vectors = serializers.IntegerField()
        expected = serializers.IntegerField(help_text="reference images of active SKUs")
        embedded = serializers.IntegerField(help_text="of those, embedded with the index's model")
        waiting = serializers.IntegerField()
        in_sync = serializers.BooleanField()
        updated_at = serializers.DateTimeField(allow_null=True)

    @extend_schema(responses={200: OutputSerializer, **error_responses(401, 403, 429)},
                   operation_id="index_status")
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(index_status()).data)
