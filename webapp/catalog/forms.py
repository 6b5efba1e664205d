from __future__ import annotations

from typing import Any

from django import forms

from webapp.catalog.models import SKU


def attributes_to_text(attributes: dict[str, Any]) -> str:
    return "\n".join(f"{key}: {value}" for key, value in sorted(attributes.items()))


class SkuForm(forms.Form):
    """The SKU's fields; the hierarchy is given by names and created when new."""

    code = forms.CharField(max_length=64)
    name = forms.CharField(max_length=200)
    category = forms.CharField(max_length=120)
    brand = forms.CharField(max_length=120)
    series = forms.CharField(max_length=120)
    colour = forms.CharField(max_length=60, required=False)
    material = forms.CharField(max_length=60, required=False)
    size = forms.CharField(max_length=60, required=False)
    attributes = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "hardware: gold\npattern: quilted"}),
        help_text="One attribute per line, as key: value.",
    )

    @classmethod
    def for_sku(cls, sku: SKU, data: Any = None) -> SkuForm:
        initial = {
            "code": sku.code, "name": sku.name, "category": sku.series.brand.category.name,
            "brand": sku.series.brand.name, "series": sku.series.name, "colour": sku.colour,
            "material": sku.material, "size": sku.size,
            "attributes": attributes_to_text(sku.attributes),
        }
        return cls(data, initial=initial)

    def clean_attributes(self) -> dict[str, str]:
        attributes: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["attributes"].splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, value = line.partition(":")
            if not sep or not key.strip():
                raise forms.ValidationError(f"Line {number}: write it as key: value.")
            attributes[key.strip()] = value.strip()
        return attributes


class MergeForm(forms.Form):
    target = forms.CharField(max_length=64, label="Merge into SKU code")

    def clean_target(self) -> SKU:
        code = self.cleaned_data["target"].strip()
        sku = SKU.objects.filter(code=code).first()
        if sku is None:
            raise forms.ValidationError(f"No SKU has the code {code}.")
        return sku


class ScanForm(forms.Form):
    threshold = forms.FloatField(min_value=0.5, max_value=0.9999)


class NameForm(forms.Form):
    name = forms.CharField(max_length=120)
