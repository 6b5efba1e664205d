"""The statistics page (QA and catalogue admins) and its SVG plots."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET

from webapp.accounts.roles import Role, role_required
from webapp.params import int_param
from webapp.review import plots
from webapp.review import stats as numbers

PERIODS = [(7, "7 days"), (30, "30 days"), (90, "90 days"), (365, "a year")]


def _window(request: HttpRequest) -> numbers.Window:
    days = int_param(request.GET, "days", default=30, max_value=3650, strict=False)
    return numbers.Window.last(days or 30)


@role_required(Role.QA, Role.CATALOGUE_ADMIN)
@require_GET
def stats(request: HttpRequest) -> TemplateResponse:
    window = _window(request)
    return TemplateResponse(
        request,
        "review/stats.html",
        {
            "window": window,
            "periods": PERIODS,
            "summary": numbers.summary(window),
            "versions": numbers.accuracy_by_model_version(window),
            "causes": sorted(numbers.bad_cases_by_cause(window).totals().items(),
                             key=lambda kv: -kv[1]),
            "latency": numbers.match_latency(window),
            "plots": list(plots.PLOTS),
        },
    )


@role_required(Role.QA, Role.CATALOGUE_ADMIN)
@require_GET
def plot(request: HttpRequest, name: str) -> HttpResponse:
    if name not in plots.PLOTS:
        raise Http404("No such plot")
    response = HttpResponse(plots.PLOTS[name](_window(request)), content_type="image/svg+xml")
    response["Cache-Control"] = "private, max-age=60"
    return response
