"""Models & training pages (catalogue admins): runs, the registry, the gate, promotion."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from webapp.accounts.roles import AuthenticatedRequest, Role, role_required
from webapp.learning.models import ModelVersion, Promotion, TrainingRun
from webapp.learning.promotion import PromotionError, promotion_kind, promotion_request
from webapp.learning.selectors import (
    active_index_version,
    live_model,
    live_model_ref,
    model_versions,
    promotion_in_flight,
    promotions,
    training_run_in_flight,
    training_runs,
)
from webapp.learning.training import (
    TrainingError,
    new_resolved_bad_cases,
    training_run_cancel,
    training_run_request,
)


def _go(request: AuthenticatedRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@role_required(Role.CATALOGUE_ADMIN)
@require_GET
def home(request: AuthenticatedRequest) -> TemplateResponse:
    context = {
        "live_ref": live_model_ref(),
        "live": live_model(),
        "index": active_index_version(),
        "runs": training_runs(limit=20),
        "models": model_versions()[:50],
        "promotions": promotions(limit=10),
        "run_in_flight": training_run_in_flight(),
        "promotion_in_flight": promotion_in_flight(),
        "new_cases": new_resolved_bad_cases(),
        "threshold": settings.RETRAIN_MIN_BAD_CASES,
        "auto_promote": settings.AUTO_PROMOTE,
    }
    template = "learning/_live.html" if request.htmx else "learning/home.html"
    return TemplateResponse(request, template, context)


@role_required(Role.CATALOGUE_ADMIN)
@require_POST
def run_create(request: AuthenticatedRequest) -> HttpResponse:
    try:
        run = training_run_request(trigger=TrainingRun.Trigger.MANUAL, user=request.user)
    except TrainingError as exc:
        messages.error(request, str(exc))
        return _go(request, reverse("learning:home"))
    return _go(request, reverse("learning:run", args=[run.pk]))


@role_required(Role.CATALOGUE_ADMIN)
@require_GET
def run_detail(request: AuthenticatedRequest, run_id: int) -> TemplateResponse:
    run = get_object_or_404(TrainingRun.objects.select_related("requested_by"), pk=run_id)
    model = ModelVersion.objects.filter(training_run=run).first()
    template = "learning/_run_status.html" if request.htmx else "learning/run.html"
    return TemplateResponse(request, template, {"run": run, "model": model})


@role_required(Role.CATALOGUE_ADMIN)
@require_POST
def run_cancel(request: AuthenticatedRequest, run_id: int) -> HttpResponse:
    run = training_run_cancel(run=get_object_or_404(TrainingRun, pk=run_id))
    if run.status == TrainingRun.Status.RUNNING:
        messages.info(request, "Cancelling: the run stops at its next training step.")
    return _go(request, reverse("learning:run", args=[run_id]))


@role_required(Role.CATALOGUE_ADMIN)
@require_GET
def model_detail(request: AuthenticatedRequest, model_id: int) -> TemplateResponse:
    model = get_object_or_404(ModelVersion.objects.select_related("training_run"), pk=model_id)
    return TemplateResponse(
        request,
        "learning/model.html",
        {
            "model": model,
            "is_live": model.model_ref == live_model_ref(),
            "kind": promotion_kind(model),
            "report": model.gate_report,
            "promotions": Promotion.objects.filter(model=model).select_related("requested_by"),
        },
    )


@role_required(Role.CATALOGUE_ADMIN)
@require_POST
def model_activate(request: AuthenticatedRequest, model_id: int) -> HttpResponse:
    """Promote a model that passed the gate, or roll back to an earlier live one."""
    model = get_object_or_404(ModelVersion, pk=model_id)
    try:
        promotion = promotion_request(model=model, user=request.user)
    except PromotionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{promotion.get_kind_display()} of {model.name} queued.")
    return _go(request, reverse("learning:home"))
