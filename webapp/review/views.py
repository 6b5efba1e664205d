"""QA pages: the bad-case queue, one case, catalogue gaps. Views only translate."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from webapp.accounts.roles import AuthenticatedRequest, Role, role_required
from webapp.catalog.selectors import sku_search
from webapp.etags import content_key, not_modified, page_etag, tagged
from webapp.matching.models import QueryPhoto
from webapp.matching.selectors import match_requests_visible_to
from webapp.params import choice_param, int_param, search_text
from webapp.review.crops import jpeg, query_photo_crop
from webapp.review.forms import BulkForm, GapCloseForm, ResolveForm, selected_ids
from webapp.review.models import BadCase, CatalogueGap, FailureCause
from webapp.review.selectors import (
    QueueFilters,
    bad_case_detail,
    bad_case_queue,
    catalogue_gaps,
    next_open_case,
    open_case_count,
    queue_choices,
    queue_page_state,
)
from webapp.review.services import (
    BulkAction,
    ReviewError,
    bad_case_reopen,
    bad_case_resolve,
    bad_cases_bulk,
    catalogue_gap_close,
)

QUEUE_PAGE = 50  # rows a page: each costs ~1 ms of template rendering
# The rendered rows of a page are shared by every reviewer for this long. Their key holds all
# that they show, so a change renders them anew; ages move once a minute, so each minute's
# first reload renders them and the other reviewers' reloads reuse them.
QUEUE_ROWS_CACHE_S = 300
CANDIDATE_KEYS = "asdf"
# Keys 1-8 toggle the causes on the case page, in taxonomy order.
CAUSE_KEYS = [(str(i), value, label) for i, (value, label) in
              enumerate(FailureCause.choices, start=1)]


def _go(request: AuthenticatedRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@role_required(Role.QA)
@require_GET
def queue(request: AuthenticatedRequest) -> HttpResponse:
    """The bad-case queue; a reload of an unchanged page is answered 304 without rendering."""
    filters = QueueFilters.from_query(request.GET.dict())
    page_number = int_param(request.GET, "page", default=1, strict=False)
    open_count, choices = open_case_count(), queue_choices()
    state = queue_page_state(filters=filters, page=page_number, per_page=QUEUE_PAGE)
    # The rows say how long ago each case was opened, as of the minute: the text then changes
    # at most once a minute, not at each row's own second.
    ages_as_of = timezone.now().replace(second=0, microsecond=0)
    ages = [timesince(opened, ages_as_of) for opened in state.opened]
    # The filter bar's options that change with the cases: categories and model versions.
    categories = [(c.pk, c.name) for c in choices["categories"]]
    etag = page_etag(request, request.GET.urlencode(), open_count, categories,
                     choices["model_versions"], state, ages)
    if (unchanged := not_modified(request, etag)) is not None:
        return unchanged
    page = Paginator(bad_case_queue(filters=filters), QUEUE_PAGE).get_page(page_number)
    kept = request.GET.copy()
    kept.pop("page", None)
    context = {
        "bad_cases": page.object_list,
        "page": page,
        "total": page.paginator.count,
        "filters": filters,
        "query": request.GET.urlencode(),
        "params": kept.urlencode(),
        "open_count": open_count,
        "bulk_actions": BulkAction.CHOICES,
        "ages_as_of": ages_as_of,
        "rows_key": content_key(state.rows, state.codes, ages, categories),
        "rows_cache_s": QUEUE_ROWS_CACHE_S,
        **choices,
    }
    template = "review/_queue_table.html" if request.htmx else "review/queue.html"
    return tagged(TemplateResponse(request, template, context), etag)


@role_required(Role.QA)
@require_POST
def bulk(request: AuthenticatedRequest) -> HttpResponse:
    form = BulkForm(request.POST)
    ids = selected_ids(request.POST.getlist("ids"))
    if not ids:
        messages.error(request, "Select at least one case.")
    elif not form.is_valid():
        messages.error(request, "Choose a bulk action.")
    else:
        try:
            result = bad_cases_bulk(ids=ids, action=form.cleaned_data["action"],
                                    cause=form.cleaned_data["cause"], actor=request.user)
        except ReviewError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{result.done} case{'s' if result.done != 1 else ''} "
                                      "updated.")
            for error in result.errors[:10]:
                messages.error(request, error)
    back = request.POST.get("back", "")
    return _go(request, reverse("review:queue") + (f"?{back}" if back else ""))


@role_required(Role.QA)
@require_GET
def detail(request: AuthenticatedRequest, case_id: int) -> TemplateResponse:
    try:
        case = bad_case_detail(case_id=case_id)
    except BadCase.DoesNotExist as exc:
        raise Http404("No such bad case") from exc
    # The first four candidates (the business Top-4) get keys a, s, d, f.
    candidates = [(c, CANDIDATE_KEYS[i] if i < len(CANDIDATE_KEYS) else "")
                  for i, c in enumerate(case.request.candidates.all())]
    return TemplateResponse(
        request,
        "review/detail.html",
        {
            "case": case,
            "candidates": candidates,
            "cause_keys": CAUSE_KEYS,
            "open_count": open_case_count(),
        },
    )


@role_required(Role.QA)
@require_GET
def crop(request: AuthenticatedRequest, case_id: int, position: int) -> HttpResponse:
    """The item as the network saw it (box, mask, neutral background), as a JPEG."""
    visible = QueryPhoto.objects.filter(request__in=match_requests_visible_to(request.user))
    photo = get_object_or_404(visible, request__bad_case__pk=case_id, position=position)
    response = HttpResponse(jpeg(query_photo_crop(photo)), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=300"
    return response


@role_required(Role.QA)
@require_POST
def resolve(request: AuthenticatedRequest, case_id: int) -> HttpResponse:
    case = get_object_or_404(BadCase, pk=case_id)
    form = ResolveForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(f"{k}: {' '.join(map(str, v))}"
                                          for k, v in form.errors.items()))
        return _go(request, reverse("review:detail", args=[case_id]))
    data = form.cleaned_data
    causes = list(data["causes"])
    if data["action"] == ResolveForm.GAP:
        causes.append(FailureCause.CATALOGUE_GAP)
    try:
        bad_case_resolve(bad_case=case, actor=request.user, causes=causes,
                         correct_sku=data["correct_sku"], note=data["note"])
    except ReviewError as exc:
        messages.error(request, str(exc))
        return _go(request, reverse("review:detail", args=[case_id]))
    messages.success(request, f"Bad case #{case.pk} resolved.")
    following = next_open_case(after=case)
    url = reverse("review:detail", args=[following.pk]) if following else reverse("review:queue")
    return _go(request, url)


@role_required(Role.QA)
@require_POST
def reopen(request: AuthenticatedRequest, case_id: int) -> HttpResponse:
    bad_case_reopen(bad_case=get_object_or_404(BadCase, pk=case_id), actor=request.user)
    return _go(request, reverse("review:detail", args=[case_id]))


@role_required(Role.QA)
@require_GET
def sku_lookup(request: AuthenticatedRequest) -> TemplateResponse:
    query = search_text(request.GET.get("q"))
    return TemplateResponse(
        request, "review/_sku_results.html",
        {"skus": sku_search(query=query) if query else [], "query": query},
    )


@role_required(Role.QA, Role.CATALOGUE_ADMIN)
@require_GET
def gaps(request: AuthenticatedRequest) -> TemplateResponse:
    show = choice_param(request.GET, "show", [*CatalogueGap.Status.values, "all"],
                        CatalogueGap.Status.OPEN, strict=False)
    return TemplateResponse(
        request,
        "review/gaps.html",
        {"gaps": catalogue_gaps(status=show)[:200], "show": show,
         "statuses": [*CatalogueGap.Status.choices, ("all", "All")]},
    )


@role_required(Role.CATALOGUE_ADMIN)
@require_POST
def gap_close(request: AuthenticatedRequest, gap_id: int) -> HttpResponse:
    gap = get_object_or_404(CatalogueGap, pk=gap_id)
    form = GapCloseForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown SKU code, or no outcome chosen.")
    else:
        try:
            catalogue_gap_close(gap=gap, actor=request.user, status=form.cleaned_data["status"],
                                sku=form.cleaned_data["sku"])
        except ReviewError as exc:
            messages.error(request, str(exc))
    return _go(request, reverse("review:gaps"))
