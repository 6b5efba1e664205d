from __future__ import annotations

from django.http import HttpRequest
from django.template.response import TemplateResponse

from webapp.accounts.roles import Role, role_required
from webapp.review.selectors import bad_case_queue


@role_required(Role.QA)
def queue(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(
        request, "review/queue.html", {"bad_cases": bad_case_queue()[:200]}
    )
