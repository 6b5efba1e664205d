"""A small world of rows of every kind, and hostile values, for the URL walk and the corpus."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from PIL import Image

from tests.webapp.conftest import jpeg_bytes
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
from webapp.learning.models import ModelVersion, TrainingRun
from webapp.matching.models import Candidate, Decision, MatchRequest, QueryPhoto
from webapp.review.models import BadCase, CatalogueGap

HUGE = "9" * 30  # past any integer column
WORDS_5000 = " ".join(f"w{i}" for i in range(5000))
HOSTILE_TEXT = ["", "\x00", "%00", "<script>alert(1)</script>", "' OR 1=1 --", "é" * 500,
                "x" * 100_000, WORDS_5000, "-1", HUGE, "1e309", "nan", "[]", "{}"]


@dataclass
class World:
    appraiser: User
    sku: SKU
    other_sku: SKU
    image: SKUImage
    match: MatchRequest
    photo: QueryPhoto
    case: BadCase
    gap: CatalogueGap
    run: TrainingRun
    model: ModelVersion
    bundle: CatalogueImport
    scan: DuplicateScan
    pair: DuplicatePair

    def ids(self) -> dict[str, int]:
        """The id each URL parameter name stands for."""
        return {
            "request_id": self.match.pk, "match_id": self.match.pk, "position": 0,
            "case_id": self.case.pk, "gap_id": self.gap.pk, "run_id": self.run.pk,
            "model_id": self.model.pk, "sku_id": self.sku.pk, "image_id": self.image.pk,
            "import_id": self.bundle.pk, "scan_id": self.scan.pk, "pair_id": self.pair.pk,
            "user_id": self.appraiser.pk, "pk": self.sku.series_id,
        }


def jpeg(size: tuple[int, int] = (64, 64), colour: str = "red") -> bytes:
    return jpeg_bytes(Image.new("RGB", size, colour))


def build_world(appraiser: User) -> World:
    category = Category.objects.create(name="Bags")
    series = Series.objects.create(brand=Brand.objects.create(category=category, name="B"),
                                   name="S")
    sku = SKU.objects.create(series=series, code="W-1", name="World bag")
    other = SKU.objects.create(series=series, code="W-2", name="Other bag")
    image = SKUImage(sku=sku, position=0)
    image.image.save("w.jpg", ContentFile(jpeg()))
    other_image = SKUImage(sku=other, position=0)
    other_image.image.save("w2.jpg", ContentFile(jpeg()))
    match = MatchRequest.objects.create(created_by=appraiser, status=MatchRequest.Status.DONE)
    photo = QueryPhoto(request=match, position=0, original_format="JPEG", width=64, height=64,
                       box=[0, 0, 64, 64], box_source=QueryPhoto.BoxSource.DETECTOR)
    photo.original.save(f"m{match.pk}-0.jpg", ContentFile(jpeg()), save=False)
    photo.image.save(f"m{match.pk}-0.jpg", ContentFile(jpeg()), save=False)
    photo.save()
    Candidate.objects.create(request=match, rank=1, sku=sku, score=0.9, cosine=0.8,
                             query_photo=photo, reference_image=image)
    decided = MatchRequest.objects.create(created_by=appraiser, status=MatchRequest.Status.DONE)
    decided_photo = QueryPhoto.objects.create(request=decided, position=0, original_format="JPEG",
                                              width=64, height=64, original=photo.original.name,
                                              image=photo.image.name)
    decision = Decision.objects.create(request=decided, outcome="reject", decided_by=appraiser)
    case = BadCase.objects.create(request=decided, decision=decision)
    assert decided_photo.pk
    gap = CatalogueGap.objects.create(bad_case=case, reported_by=appraiser)
    run = TrainingRun.objects.create(status=TrainingRun.Status.FAILED)
    model = ModelVersion.objects.create(name="m-test", model_ref="/nonexistent/m.pt",
                                        source=ModelVersion.Source.TRAINED)
    bundle = CatalogueImport(original_name="c.zip")
    bundle.bundle.save("c.zip", ContentFile(b"PK\x05\x06" + b"\x00" * 18))
    scan = DuplicateScan.objects.create(threshold=0.97, status=DuplicateScan.Status.DONE)
    pair = DuplicatePair.objects.create(sku_a=sku, sku_b=other, image_a=image,
                                        image_b=other_image, image_cosine=0.99)
    return World(appraiser, sku, other, image, match, photo, case, gap, run, model, bundle,
                 scan, pair)
