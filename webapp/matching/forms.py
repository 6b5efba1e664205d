from __future__ import annotations

from django import forms
from django.http import QueryDict

from webapp.catalog.models import Brand, Category, Series
from webapp.matching.models import Decision
from webapp.params import MAX_ID


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MatchRequestForm(forms.Form):
    """Filters and the raw words: photos are validated by webapp.matching.validation, by
    content, and the words by webapp.matching.query_inputs."""

    category = forms.ModelChoiceField(Category.objects.all(), required=False)
    brand = forms.ModelChoiceField(Brand.objects.all(), required=False)
    series = forms.ModelChoiceField(Series.objects.all(), required=False)
    query_text = forms.CharField(required=False, strip=False)

    def soft_attribute_pairs(self) -> list[tuple[str, str]]:
        """The page's attribute rows (attr_key[i], attr_value[i]), as typed."""
        assert isinstance(self.data, QueryDict)  # bound to request.POST
        keys, values = self.data.getlist("attr_key"), self.data.getlist("attr_value")
        return list(zip(keys, values, strict=False))


class DecisionForm(forms.Form):
    outcome = forms.ChoiceField(choices=Decision.Outcome.choices)
    candidate = forms.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    sku = forms.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    note = forms.CharField(required=False, max_length=2000)


class BoxForm(forms.Form):
    """A corrected item box in pixels of the stored (EXIF-oriented) photo."""

    x0 = forms.FloatField(min_value=0)
    y0 = forms.FloatField(min_value=0)
    x1 = forms.FloatField(min_value=0)
    y1 = forms.FloatField(min_value=0)
