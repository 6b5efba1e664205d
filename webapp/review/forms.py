from __future__ import annotations

from django import forms

from webapp.catalog.models import SKU
from webapp.review.models import CatalogueGap, FailureCause
from webapp.review.services import BulkAction


class ResolveForm(forms.Form):
    RESOLVE, GAP = "resolve", "gap"

    action = forms.ChoiceField(choices=[(RESOLVE, "Resolve"), (GAP, "Catalogue gap")])
    causes = forms.MultipleChoiceField(choices=FailureCause.choices, required=False)
    correct_sku = forms.ModelChoiceField(SKU.objects.filter(is_active=True), required=False)
    note = forms.CharField(required=False, max_length=2000)


class BulkForm(forms.Form):
    """The selected ids are read with `selected_ids`: checkboxes, any number of them."""

    action = forms.ChoiceField(choices=BulkAction.CHOICES)
    cause = forms.ChoiceField(choices=[("", "—"), *FailureCause.choices], required=False)


def selected_ids(values: list[str]) -> list[int]:
    return [int(v) for v in values if v.isdigit()][:1000]


class GapCloseForm(forms.Form):
    status = forms.ChoiceField(
        choices=[(CatalogueGap.Status.ADDED, "Added"), (CatalogueGap.Status.DISMISSED, "Dismissed")]
    )
    sku = forms.ModelChoiceField(SKU.objects.all(), required=False, to_field_name="code")
