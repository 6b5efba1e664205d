"""/api/v1/matches: one APIView per operation, nested Input/Output serializers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.api.errors import ApiError
from webapp.api.fields import IdField, SearchTextField
from webapp.api.permissions import IsAppraiser, request_user
from webapp.api.schema import error_responses
from webapp.catalog.models import Brand, Category, Series
from webapp.matching.decisions import (
    DecisionError,
    DecisionInvalid,
    decision_record,
    decision_undo,
    decision_undo_deadline,
)
from webapp.matching.models import Candidate, Decision, MatchRequest
from webapp.matching.query_inputs import (
    MAX_QUERY_TEXT_CHARS,
    MAX_QUERY_TEXT_WORDS,
    MAX_SOFT_ATTRIBUTES,
    QueryInputError,
)
from webapp.matching.requests import match_request_create
from webapp.matching.runner import StorageFullError
from webapp.matching.selectors import (
    HISTORY_SHOWS,
    match_request_for,
    request_history,
    request_with_candidates,
)
from webapp.matching.validation import PhotoValidationError, UploadedPhoto


def _absolute(request: HttpRequest, field: object) -> str | None:
    url = getattr(field, "url", None) if field else None
    return request.build_absolute_uri(url) if url else None


class CandidateSkuOutput(serializers.Serializer):
    """Documents CandidateOutput.get_sku's dict."""

    id = serializers.IntegerField()
    code = serializers.CharField()
    name = serializers.CharField()
    category = serializers.CharField()
    brand = serializers.CharField()
    series = serializers.CharField()
    colour = serializers.CharField()
    material = serializers.CharField()
    size = serializers.CharField()
    attributes = serializers.DictField()


class DecisionSummaryOutput(serializers.Serializer):
    """Documents MatchOutput.get_decision's dict."""

    outcome = serializers.ChoiceField(choices=Decision.Outcome.choices)
    sku_id = serializers.IntegerField(allow_null=True)
    decided_at = serializers.DateTimeField()
    undo_until = serializers.DateTimeField(
        allow_null=True, help_text="the decider may undo it until then; null: undo is off")


class CandidateOutput(serializers.Serializer):
    rank = serializers.IntegerField()
    score = serializers.FloatField()
    sku = serializers.SerializerMethodField()
    query_photo = serializers.IntegerField(source="query_photo.position")
    reference_image_url = serializers.SerializerMethodField()
    evidence = serializers.JSONField(
        help_text="what the re-ranking stage found, empty when it did not run: visual_rank, "
        "cosine, probability, features and contributions (evidence kind -> its part of the "
        "score's logit); spatial (reference_id, inliers, colour_inliers, query_points and "
        "reference_points as [x, y] pixel pairs of the query crop and the reference image, "
        "query_parts/reference_parts: the key parts' boxes); text (OCR words matched: word, "
        "matched, source, similarity, box); attributes, query_text, soft_attributes"
    )

    @extend_schema_field(CandidateSkuOutput)
    def get_sku(self, candidate: Candidate) -> dict[str, object]:
        sku = candidate.sku
        return {
            "id": sku.id,
            "code": sku.code,
            "name": sku.name,
            "category": sku.series.brand.category.name,
            "brand": sku.series.brand.name,
            "series": sku.series.name,
            "colour": sku.colour,
            "material": sku.material,
            "size": sku.size,
            "attributes": sku.attributes,
        }

    def get_reference_image_url(self, candidate: Candidate) -> str | None:
        ref = candidate.reference_image
        return _absolute(self.context["request"], ref.image) if ref else None


class MatchOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=MatchRequest.Status.choices)
    stage = serializers.CharField()
    progress = serializers.IntegerField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    relaxed_filters = serializers.ListField(child=serializers.CharField())
    model_version = serializers.CharField()
    index_version = serializers.CharField()
    timings_ms = serializers.DictField(child=serializers.FloatField())
    batch_size = serializers.IntegerField(help_text="requests run through the model together")
    query_text = serializers.CharField(help_text="the appraiser's description of the item")
    soft_attributes = serializers.DictField(
        child=serializers.CharField(), help_text="attribute: value the appraiser stated")
    confident = serializers.BooleanField(
        allow_null=True,
        help_text="the first candidate is a confident match (its score reaches the calibrated "
        "threshold); false: no confident match, possibly a new SKU; null: not finished",
    )
    candidates = CandidateOutput(many=True)
    decision = serializers.SerializerMethodField()

    @extend_schema_field(DecisionSummaryOutput(allow_null=True))
    def get_decision(self, match: MatchRequest) -> dict[str, object] | None:
        decision = getattr(match, "decision", None)
        if decision is None:
            return None
        deadline = decision_undo_deadline(decision)
        return {"outcome": decision.outcome, "sku_id": decision.sku_id,
                "decided_at": decision.decided_at.isoformat(),
                "undo_until": deadline.isoformat() if deadline else None}


class MatchCreateApi(APIView):
    permission_classes = [IsAppraiser]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema_serializer(component_name="MatchCreate")
    class InputSerializer(serializers.Serializer):
        photos = serializers.ListField(child=serializers.FileField(), min_length=1)
        category = serializers.PrimaryKeyRelatedField(
            queryset=Category.objects.all(), required=False, allow_null=True
        )
        brand = serializers.PrimaryKeyRelatedField(
            queryset=Brand.objects.all(), required=False, allow_null=True
        )
        series = serializers.PrimaryKeyRelatedField(
            queryset=Series.objects.all(), required=False, allow_null=True
        )
        query_text = serializers.CharField(
            required=False, allow_blank=True, trim_whitespace=False,
            help_text=f"free text about the item, at most {MAX_QUERY_TEXT_CHARS} characters "
                      f"and {MAX_QUERY_TEXT_WORDS} words; evidence, not a filter")
        soft_attributes = serializers.JSONField(
            required=False, binary=True,
            help_text=f'a JSON object, e.g. {{"colour": "red"}}: up to {MAX_SOFT_ATTRIBUTES} '
                      "of the catalogue's attribute keys (colour, material, size and the "
                      "SKUs' attribute keys); evidence, not a filter")

    @extend_schema_serializer(component_name="MatchCreated")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        status = serializers.CharField()
        url = serializers.CharField()

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={202: OutputSerializer, **error_responses(400, 401, 403, 413, 429, 507)},
        operation_id="matches_create",
    )
    def post(self, request: Request) -> Response:
        fields = ("category", "brand", "series", "query_text", "soft_attributes")
        form = request.data
        assert isinstance(form, dict)  # the form parsers give a QueryDict, or {} with no body
        data: dict[str, Any] = {key: form.get(key) for key in fields}
        photos: Sequence[UploadedPhoto] = request.FILES.getlist("photos")
        data["photos"] = photos
        serializer = self.InputSerializer(data={k: v for k, v in data.items() if v})
        serializer.is_valid(raise_exception=True)
        words = serializer.validated_data.get("soft_attributes")
        if words is not None and not isinstance(words, dict):
            raise ApiError("soft_attributes must be a JSON object of attribute: value.",
                           code="invalid_query")
        try:
            match = match_request_create(
                user=request_user(request), uploads=photos,
                query_text=serializer.validated_data.get("query_text", ""),
                soft_attributes=words,
                **{k: serializer.validated_data.get(k) for k in ("category", "brand", "series")},
            )
        except QueryInputError as exc:
            raise ApiError(str(exc), code="invalid_query", messages=exc.messages) from exc
        except PhotoValidationError as exc:
            raise ApiError(str(exc), code="invalid_photo", messages=exc.messages) from exc
        except StorageFullError as exc:
            raise ApiError(str(exc), code="storage_full", http_status=507) from exc
        url = request.build_absolute_uri(f"/api/v1/matches/{match.pk}")
        return Response(
            self.OutputSerializer({"id": match.pk, "status": match.status, "url": url}).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": url},
        )


class MatchDetailApi(APIView):
    permission_classes = [IsAppraiser]

    @extend_schema(responses={200: MatchOutput, **error_responses(401, 403, 404, 429)},
                   operation_id="matches_retrieve")
    def get(self, request: Request, match_id: int) -> Response:
        try:
            match = request_with_candidates(request_id=match_id, user=request.user)
        except MatchRequest.DoesNotExist as exc:
            raise ApiError("No such match.", code="not_found", http_status=404) from exc
        return Response(MatchOutput(match, context={"request": request}).data)


class MatchDecisionApi(APIView):
    permission_classes = [IsAppraiser]
    parser_classes = [JSONParser, FormParser]

    @extend_schema_serializer(component_name="MatchDecision")
    class InputSerializer(serializers.Serializer):
        outcome = serializers.ChoiceField(choices=Decision.Outcome.choices)
        candidate_rank = serializers.IntegerField(required=False, min_value=1, max_value=1000)
        sku_id = IdField(required=False)
        note = serializers.CharField(required=False, allow_blank=True, max_length=2000)

    @extend_schema_serializer(component_name="MatchDecisionRecorded")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        outcome = serializers.CharField()
        sku_id = serializers.IntegerField(allow_null=True)

    @extend_schema(request=InputSerializer,
                   responses={201: OutputSerializer,
                              **error_responses(400, 401, 403, 404, 409, 422, 429)},
                   operation_id="matches_decision_create")
    def post(self, request: Request, match_id: int) -> Response:
        try:  # first: someone else's match is a 404 whatever the body says
            match = match_request_for(user=request.user, request_id=match_id, act=True)
        except MatchRequest.DoesNotExist as exc:
            raise ApiError("No such match.", code="not_found", http_status=404) from exc
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rank = serializer.validated_data.get("candidate_rank")
        candidates = match.candidates.filter(rank=rank)
        candidate_id = candidates.values_list("id", flat=True).first() if rank else None
        try:
            decision = decision_record(
                request=match,
                user=request_user(request),
                outcome=serializer.validated_data["outcome"],
                candidate_id=candidate_id,
                sku_id=serializer.validated_data.get("sku_id"),
                note=serializer.validated_data.get("note", ""),
            )
        except DecisionInvalid as exc:
            raise ApiError(str(exc), code="decision_invalid", http_status=422) from exc
        except DecisionError as exc:
            raise ApiError(str(exc), code="decision_refused", http_status=409) from exc
        return Response(
            self.OutputSerializer(
                {"id": decision.pk, "outcome": decision.outcome, "sku_id": decision.sku_id}
            ).data,
            status=status.HTTP_201_CREATED,
        )


class MatchDecisionUndoApi(APIView):
    """Withdraw one's own decision within SKULENS_UNDO_WINDOW_S (see decision_undo)."""

    permission_classes = [IsAppraiser]

    @extend_schema(request=None, responses={200: MatchOutput,
                                            **error_responses(401, 403, 404, 409, 429)},
                   operation_id="matches_decision_undo")
    def post(self, request: Request, match_id: int) -> Response:
        try:  # someone else's match is a 404, as for an id that does not exist
            owned = match_request_for(user=request.user, request_id=match_id, act=True)
        except MatchRequest.DoesNotExist as exc:
            raise ApiError("No such match.", code="not_found", http_status=404) from exc
        decision = Decision.objects.filter(request=owned).first()
        if decision is None:
            raise ApiError("This match has no decision to undo.", code="not_found",
                           http_status=404)
        try:
            decision_undo(decision=decision, user=request_user(request))
        except DecisionError as exc:
            raise ApiError(str(exc), code="undo_refused", http_status=409) from exc
        match = request_with_candidates(request_id=match_id, user=request.user)
        return Response(MatchOutput(match, context={"request": request}).data)


class MatchHistoryApi(ListAPIView):
    """The caller's own matches, newest first, searchable like the history page."""

    permission_classes = [IsAppraiser]

    class FilterSerializer(serializers.Serializer):
        q = SearchTextField(required=False, allow_blank=True,
                            help_text="item number, decided SKU code or name, "
                                      "description or note words")
        show = serializers.ChoiceField(choices=list(HISTORY_SHOWS), required=False)

    @extend_schema_serializer(component_name="MatchHistoryItem")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        status = serializers.ChoiceField(choices=MatchRequest.Status.choices)
        created_at = serializers.DateTimeField()
        query_text = serializers.CharField()
        soft_attributes = serializers.DictField(child=serializers.CharField())
        outcome = serializers.ChoiceField(choices=Decision.Outcome.choices,
                                          source="decision.outcome", default=None,
                                          allow_null=True)
        sku_code = serializers.CharField(source="decision.sku.code", default=None,
                                         allow_null=True)
        url = serializers.SerializerMethodField()

        def get_url(self, match: MatchRequest) -> str:
            return self.context["request"].build_absolute_uri(f"/api/v1/matches/{match.pk}")

    serializer_class = OutputSerializer

    @extend_schema(parameters=[FilterSerializer],
                   responses={200: OutputSerializer(many=True),
                              **error_responses(400, 401, 403, 404, 429)},
                   operation_id="matches_history")
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[MatchRequest]:
        params = self.FilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return request_history(user=request_user(self.request),
                               query=params.validated_data.get("q", ""),
                               show=params.validated_data.get("show", "all"))
