"""factory-boy factories for the Django suite: the one way tests make rows.

Defaults are the smallest valid row; a test names every value it relies on. Files are real
(small generated JPEGs) and land in the test's own MEDIA_ROOT. Users with a role are made by the
product's own service (`user_create_with_role`), so their groups and staff flag are the real ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import factory
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from factory.django import DjangoModelFactory

from webapp.accounts.roles import Role
from webapp.accounts.services import user_create_with_role
from webapp.catalog.demo import demo_skus, render_photo
from webapp.catalog.models import (
    SKU,
    Brand,
    CatalogueImport,
    Category,
    DuplicatePair,
    DuplicateScan,
    Series,
    SKUImage,
)
from webapp.history.models import HistoryImport
from webapp.learning.models import IndexVersion, ModelVersion, Promotion, TrainingRun
from webapp.matching.decisions import decision_record
from webapp.matching.models import Candidate, Decision, MatchRequest, QueryPhoto
from webapp.review.models import BadCase, CatalogueGap

PASSWORD = "correct-horse-battery"
EMPTY_ZIP = b"PK\x05\x06" + b"\x00" * 18  # an end-of-central-directory record and nothing else


# ----- people -------------------------------------------------------------------------------


class UserFactory(DjangoModelFactory):
    """A user without a role (or, with `superuser=True`, one holding every role)."""

    class Meta:
        model = User
        django_get_or_create = ("username",)

    class Params:
        superuser = factory.Trait(is_superuser=True, is_staff=True)

    username = factory.Sequence(lambda n: f"user-{n}")
    password = factory.django.Password(PASSWORD)


class RoleUserFactory(DjangoModelFactory):
    """A user holding one role, named `<role>-user` unless told otherwise; made (or found, by
    username) through `user_create_with_role`, as the app's own admin command does."""

    class Meta:
        model = User

    role = Role.APPRAISER
    username = factory.LazyAttribute(lambda o: f"{Role(o.role).value}-user")
    password = PASSWORD

    @classmethod
    def _create(cls, model_class: type[User], *args: Any, **kwargs: Any) -> User:
        return user_create_with_role(
            username=kwargs["username"], password=kwargs["password"], role=Role(kwargs["role"])
        )


# ----- the catalogue ------------------------------------------------------------------------


class CategoryFactory(DjangoModelFactory):
    class Meta:
        model = Category
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Category {n}")


class BrandFactory(DjangoModelFactory):
    class Meta:
        model = Brand
        django_get_or_create = ("category", "name")

    category = factory.SubFactory(CategoryFactory)
    name = factory.Sequence(lambda n: f"Brand {n}")


class SeriesFactory(DjangoModelFactory):
    class Meta:
        model = Series
        django_get_or_create = ("brand", "name")

    brand = factory.SubFactory(BrandFactory)
    name = factory.Sequence(lambda n: f"Series {n}")


class SKUFactory(DjangoModelFactory):
    class Meta:
        model = SKU
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"SKU-{n}")
    name = factory.LazyAttribute(lambda o: f"SKU {o.code}")
    series = factory.SubFactory(SeriesFactory)


class SKUImageFactory(DjangoModelFactory):
    """A catalogue reference image: a 64 x 64 JPEG of one colour (`image__color`), or the
    name of a file already in storage (`image="catalog/..."`)."""

    class Meta:
        model = SKUImage

    sku = factory.SubFactory(SKUFactory)
    image = factory.django.ImageField(width=64, height=64, color="red", filename="ref.jpg")
    position = 0


class DuplicatePairFactory(DjangoModelFactory):
    class Meta:
        model = DuplicatePair
        django_get_or_create = ("sku_a", "sku_b")

    # Made in this order, so sku_a has the smaller id (the table's ordering constraint).
    sku_a = factory.SubFactory(SKUFactory)
    sku_b = factory.SubFactory(SKUFactory)


class DuplicateScanFactory(DjangoModelFactory):
    class Meta:
        model = DuplicateScan

    threshold = 0.97


class CatalogueImportFactory(DjangoModelFactory):
    """A bulk import row whose bundle is an empty zip."""

    class Meta:
        model = CatalogueImport

    bundle = factory.django.FileField(data=EMPTY_ZIP, filename="bundle.zip")


# ----- matching -----------------------------------------------------------------------------


class MatchRequestFactory(DjangoModelFactory):
    """A finished appraisal request (no photos, candidates or decision unless made)."""

    class Meta:
        model = MatchRequest

    created_by = factory.SubFactory(RoleUserFactory)
    status = MatchRequest.Status.DONE


def _photo_name(extension: str) -> factory.LazyAttribute:
    # Inside a file declaration, `factory_parent` is the photo being made.
    return factory.LazyAttribute(
        lambda o: f"m{o.factory_parent.request.pk}-{o.factory_parent.position}.{extension}"
    )


class QueryPhotoFactory(DjangoModelFactory):
    """One uploaded photo: its original and normalised image are the same `width` x `height`
    JPEG of one colour; `masked=True` adds a segmentation mask."""

    class Meta:
        model = QueryPhoto

    class Params:
        colour = "red"
        masked = factory.Trait(
            mask=factory.django.ImageField(
                width=factory.SelfAttribute("..width"), height=factory.SelfAttribute("..height"),
                color="white", format="PNG", filename=_photo_name("png"),
            )
        )

    request = factory.SubFactory(MatchRequestFactory)
    position = 0
    original_format = "JPEG"
    width = 64
    height = 64
    original = factory.django.ImageField(
        width=factory.SelfAttribute("..width"), height=factory.SelfAttribute("..height"),
        color=factory.SelfAttribute("..colour"), filename=_photo_name("jpg"),
    )
    image = factory.django.ImageField(
        width=factory.SelfAttribute("..width"), height=factory.SelfAttribute("..height"),
        color=factory.SelfAttribute("..colour"), filename=_photo_name("jpg"),
    )


class CandidateFactory(DjangoModelFactory):
    """A ranked candidate; its photo is a new one of the same request unless given."""

    class Meta:
        model = Candidate

    request = factory.SubFactory(MatchRequestFactory)
    rank = 1
    sku = factory.SubFactory(SKUFactory)
    score = 0.9
    cosine = 0.8
    query_photo = factory.SubFactory(QueryPhotoFactory, request=factory.SelfAttribute("..request"))
    reference_image = None


class DecisionFactory(DjangoModelFactory):
    """A decision row written directly (no audit, no bad case): by the request's owner, a
    rejection unless told otherwise. `decided_request` records one through the service."""

    class Meta:
        model = Decision

    request = factory.SubFactory(MatchRequestFactory)
    outcome = Decision.Outcome.REJECT
    decided_by = factory.SelfAttribute("request.created_by")


# ----- review -------------------------------------------------------------------------------


class BadCaseFactory(DjangoModelFactory):
    class Meta:
        model = BadCase

    decision = factory.SubFactory(DecisionFactory)
    request = factory.SelfAttribute("decision.request")


class CatalogueGapFactory(DjangoModelFactory):
    class Meta:
        model = CatalogueGap

    bad_case = factory.SubFactory(BadCaseFactory)


# ----- learning -----------------------------------------------------------------------------


class TrainingRunFactory(DjangoModelFactory):
    class Meta:
        model = TrainingRun


class ModelVersionFactory(DjangoModelFactory):
    """A registered trained model; its checkpoint path need not exist."""

    class Meta:
        model = ModelVersion

    name = factory.Sequence(lambda n: f"model-{n}")
    model_ref = factory.LazyAttribute(lambda o: f"/models/{o.name}.pt")
    source = ModelVersion.Source.TRAINED


class PromotionFactory(DjangoModelFactory):
    class Meta:
        model = Promotion

    kind = Promotion.Kind.PROMOTE
    model = factory.SubFactory(ModelVersionFactory)


class IndexVersionFactory(DjangoModelFactory):
    """An index version row (building, inactive); its files are the test's business."""

    class Meta:
        model = IndexVersion

    name = factory.Sequence(lambda n: f"idx-{n}")
    model_version = "m"


# ----- history ------------------------------------------------------------------------------


class HistoryImportFactory(DjangoModelFactory):
    class Meta:
        model = HistoryImport


# ----- composite rows -----------------------------------------------------------------------


def decided_request(
    *,
    appraiser: User,
    truth: SKU,
    shown: Sequence[SKU],
    outcome: str,
    scores: Sequence[float] | None = None,
    seed: int = 1,
    model_version: str = "test-model|full-frame|none",
) -> MatchRequest:
    """A finished request whose photo is a real demo rendering of `truth` (so models can be
    evaluated on it), with `shown` as ranked candidates, and the appraiser's decision recorded
    by the service (accept `truth` if shown, other_sku `truth`, or reject), as the QA and
    learning tests need it."""
    from tests.webapp.conftest import jpeg_bytes

    spec = next(s for s in demo_skus() if s.code == truth.code)
    data = jpeg_bytes(render_photo(spec, seed), quality=90)
    request = MatchRequestFactory(
        created_by=appraiser, model_version=model_version, index_version="idx-test",
        timings_ms={"embed": 12.0},
    )
    # created_at is set on insert, so the duration is written afterwards.
    MatchRequest.objects.filter(pk=request.pk).update(
        finished_at=request.created_at + timedelta(milliseconds=180 + 40 * seed % 300)
    )
    photo = QueryPhotoFactory(
        request=request, original_format="jpeg", width=384, height=384,
        box=[20.0, 20.0, 364.0, 364.0], box_source=QueryPhoto.BoxSource.DETECTOR,
        original=ContentFile(data, name=f"t{request.pk}.jpg"),
        image=ContentFile(data, name=f"t{request.pk}.jpg"),
    )
    scores = list(scores or [0.9 - 0.05 * i for i in range(len(shown))])
    for rank, (sku, score) in enumerate(zip(shown, scores, strict=True), start=1):
        CandidateFactory(request=request, rank=rank, sku=sku, score=score, cosine=2 * score - 1,
                         query_photo=photo, reference_image=sku.images.first())
    chosen = request.candidates.filter(sku=truth).first()
    if outcome == Decision.Outcome.ACCEPT:
        decision_record(request=request, user=appraiser, outcome=outcome, candidate_id=chosen.pk)
    elif outcome == Decision.Outcome.OTHER_SKU:
        decision_record(request=request, user=appraiser, outcome=outcome, sku_id=truth.pk)
    else:
        decision_record(request=request, user=appraiser, outcome=outcome)
    return request
