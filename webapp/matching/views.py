"""Appraiser pages. Views translate HTTP to services and back; nothing else."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from ml.types import Box
from webapp.accounts.roles import AuthenticatedRequest, Role, role_required
from webapp.catalog.selectors import filter_choices, sku_attribute_keys, sku_search
from webapp.etags import not_modified, page_etag, tagged
from webapp.matching.calibration import calibration_thresholds, confident_threshold
from webapp.matching.decisions import (
    DecisionError,
    decision_record,
    decision_undo,
    decision_undo_deadline,
    decision_undoable_by,
    undo_open,
)
from webapp.matching.forms import BoxForm, DecisionForm, MatchRequestForm
from webapp.matching.models import Decision, MatchRequest, QueryPhoto
from webapp.matching.query_inputs import MAX_QUERY_TEXT_CHARS, MAX_SOFT_ATTRIBUTES, QueryInputError
from webapp.matching.requests import (
    match_request_create,
    match_request_retry,
    query_photo_box_correct,
)
from webapp.matching.runner import StorageFullError
from webapp.matching.selectors import (
    HISTORY_SHOWS,
    match_request_for,
    query_photo_for,
    recent_requests,
    request_history,
    request_with_candidates,
    result_page_state,
)
from webapp.matching.validation import PhotoValidationError, UploadRejected, upload_list
from webapp.params import choice_param, int_param, search_text
from webapp.review.crops import jpeg, query_photo_crop


def _load_request(request: AuthenticatedRequest, request_id: int) -> MatchRequest:
    try:
        match = request_with_candidates(request_id=request_id, user=request.user)
    except MatchRequest.DoesNotExist as exc:
        raise Http404("No such match") from exc
    return match


def _owned_request(request: AuthenticatedRequest, request_id: int) -> MatchRequest:
    """A request the user may act on (their own), else 404."""
    try:
        return match_request_for(user=request.user, request_id=request_id, act=True)
    except MatchRequest.DoesNotExist as exc:
        raise Http404("No such match") from exc


@role_required(Role.APPRAISER)
@require_GET
def home(request: AuthenticatedRequest) -> TemplateResponse:
    return TemplateResponse(
        request,
        "matching/home.html",
        {
            "form": MatchRequestForm(),
            "recent": recent_requests(user=request.user),
            "max_photos": settings.MATCH_MAX_PHOTOS,
            "max_mb": settings.UPLOAD_MAX_BYTES // (1024 * 1024),
            "attribute_keys": sku_attribute_keys(),
            "max_attributes": MAX_SOFT_ATTRIBUTES,
            "max_text_chars": MAX_QUERY_TEXT_CHARS,
            **filter_choices(),
        },
    )


@role_required(Role.APPRAISER)
@require_POST
def create(request: AuthenticatedRequest) -> HttpResponse:
    errors: list[str] = []
    try:
        uploads = upload_list(request)
    except UploadRejected as exc:
        uploads, errors = [], [str(exc)]
    form = MatchRequestForm(request.POST if not errors else None)
    if not errors and not form.is_valid():
        errors = [f"{field}: {' '.join(map(str, msgs))}" for field, msgs in form.errors.items()]
    elif not errors:
        try:
            match = match_request_create(
                user=request.user,
                uploads=uploads,
                category=form.cleaned_data["category"],
                brand=form.cleaned_data["brand"],
                series=form.cleaned_data["series"],
                query_text=form.cleaned_data["query_text"],
                soft_attributes=form.soft_attribute_pairs(),
            )
        except (PhotoValidationError, QueryInputError) as exc:
            errors = exc.messages
        except StorageFullError as exc:
            errors = [str(exc)]
        else:
            url = reverse("matching:detail", args=[match.pk])
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    if request.htmx:
        return TemplateResponse(request, "matching/_errors.html", {"errors": errors}, status=422)
    for error in errors:
        messages.error(request, error)
    return redirect("matching:home")


def _confident_score(match: MatchRequest) -> float:
    """The calibrated threshold of the top candidate's category."""
    candidates = list(match.candidates.all())
    return confident_threshold(candidates[0].sku.category if candidates else None)


def _result_etag(request: AuthenticatedRequest, request_id: int) -> str | None:
    """What the result partial shows that can change: the match's state, the threshold it is
    judged by and whether undo is still open. None when the viewer may not see the request."""
    state = result_page_state(request_id=request_id, user=request.user)
    if state is None:
        return None
    can_undo = undo_open(decided_at=state["decision__decided_at"],
                         decided_by_id=state["decision__decided_by_id"], user=request.user)
    by_category, fused = calibration_thresholds()
    return page_etag(request, sorted(by_category.items()), fused, can_undo,
                     sorted(state.items()))


@role_required(Role.APPRAISER)
@require_GET
def detail(request: AuthenticatedRequest, request_id: int) -> HttpResponse:
    """The result page; its htmx partial (polled while matching) answers a repeat with 304."""
    etag = _result_etag(request, request_id) if request.htmx else None
    if (unchanged := not_modified(request, etag)) is not None:
        return unchanged
    match = _load_request(request, request_id)
    template = "matching/_result.html" if request.htmx else "matching/detail.html"
    decision = getattr(match, "decision", None)
    response = TemplateResponse(
        request,
        template,
        {
            "match": match,
            "confident_score": _confident_score(match),
            "can_undo": decision_undoable_by(decision, request.user),
            "undo_deadline": decision_undo_deadline(decision) if decision else None,
            "words_ranked": settings.RERANK and bool(
                {"query_text", "soft_attributes"} & set(settings.RERANK_EVIDENCE)),
        },
    )
    return tagged(response, etag)


@role_required(Role.APPRAISER)
@require_POST
def undo(request: AuthenticatedRequest, request_id: int) -> HttpResponse:
    match = _owned_request(request, request_id)  # another appraiser's item is a 404
    decision = Decision.objects.filter(request=match).first()
    if decision is None:
        raise Http404("This match has no decision to undo.")
    try:
        decision_undo(decision=decision, user=request.user)
    except DecisionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Decision undone: decide again.")
    url = reverse("matching:detail", args=[request_id])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@role_required(Role.APPRAISER)
@require_GET
def crop(request: AuthenticatedRequest, request_id: int, position: int) -> HttpResponse:
    """The item as the network saw it (box, mask, neutral background), as a JPEG."""
    try:
        photo = query_photo_for(user=request.user, request_id=request_id, position=position)
    except QueryPhoto.DoesNotExist as exc:
        raise Http404("No such photo") from exc
    response = HttpResponse(jpeg(query_photo_crop(photo)), content_type="image/jpeg")
    # The URL carries the match's finish time, so a re-run with a new box gets a new URL.
    response["Cache-Control"] = "private, max-age=3600"
    return response


HISTORY_PAGE = 25


@role_required(Role.APPRAISER)
@require_GET
def history(request: AuthenticatedRequest) -> TemplateResponse:
    # Too much search text is a 400; a malformed filter or page falls back to its default
    # and the search still applies.
    query = search_text(request.GET.get("q"))
    show = choice_param(request.GET, "show", HISTORY_SHOWS, "all", strict=False)
    items = request_history(user=request.user, query=query, show=show)
    page = Paginator(items, HISTORY_PAGE).get_page(
        int_param(request.GET, "page", default=1, strict=False))
    params = {k: v for k, v in {"q": query, "show": show if show != "all" else ""}.items() if v}
    template = "matching/_history_table.html" if request.htmx else "matching/history.html"
    return TemplateResponse(request, template, {
        "page": page, "query": query, "show": show, "shows": HISTORY_SHOWS,
        "max_search_chars": settings.SEARCH_MAX_CHARS,
        "params": urlencode(params),
    })


@role_required(Role.APPRAISER)
@require_POST
def decide(request: AuthenticatedRequest, request_id: int) -> HttpResponse:
    match = _owned_request(request, request_id)
    form = DecisionForm(request.POST)
    if form.is_valid():
        try:
            decision_record(
                request=match,
                user=request.user,
                outcome=form.cleaned_data["outcome"],
                candidate_id=form.cleaned_data["candidate"],
                sku_id=form.cleaned_data["sku"],
                note=form.cleaned_data["note"],
            )
        except DecisionError as exc:
            messages.error(request, str(exc))
    else:
        messages.error(request, "The decision was incomplete.")
    url = reverse("matching:detail", args=[request_id])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@role_required(Role.APPRAISER)
@require_POST
def retry(request: AuthenticatedRequest, request_id: int) -> HttpResponse:
    match_request_retry(request=_owned_request(request, request_id))
    url = reverse("matching:detail", args=[request_id])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@role_required(Role.APPRAISER)
@require_POST
def correct_box(request: AuthenticatedRequest, request_id: int, position: int) -> HttpResponse:
    try:
        photo = query_photo_for(user=request.user, request_id=request_id, position=position,
                                act=True)
    except QueryPhoto.DoesNotExist as exc:
        raise Http404("No such photo") from exc
    form = BoxForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The box was incomplete.")
    else:
        try:
            query_photo_box_correct(photo=photo, box=Box(**form.cleaned_data))
        except DecisionError as exc:
            messages.error(request, str(exc))
    url = reverse("matching:detail", args=[request_id])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@role_required(Role.APPRAISER, Role.QA, Role.CATALOGUE_ADMIN)
@require_GET
def sku_lookup(request: AuthenticatedRequest) -> TemplateResponse:
    query = search_text(request.GET.get("q"))
    return TemplateResponse(
        request,
        "matching/_sku_results.html",
        {
            "skus": sku_search(query=query) if query else [],
            "query": query,
            "request_id": int_param(request.GET, "request_id"),
        },
    )
