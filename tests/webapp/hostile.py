"""A small world of rows of every kind, and hostile values, for the URL walk and the corpus."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from PIL import Image

from tests.webapp.conftest import jpeg_bytes
from tests.webapp.factories import (
    BadCaseFactory,
    CandidateFactory,
    CatalogueGapFactory,
    CatalogueImportFactory,
    DuplicatePairFactory,
    DuplicateScanFactory,
    MatchRequestFactory,
    ModelVersionFactory,
    QueryPhotoFactory,
    SeriesFactory,
    SKUFactory,
    SKUImageFactory,
    TrainingRunFactory,
)
from webapp.catalog.models import (
    SKU,
    CatalogueImport,
    DuplicatePair,
    DuplicateScan,
    SKUImage,
)
from webapp.learning.models import ModelVersion, TrainingRun
from webapp.matching.models import MatchRequest, QueryPhoto
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
    series = SeriesFactory(brand__category__name="Bags", brand__name="B", name="S")
    sku = SKUFactory(series=series, code="W-1", name="World bag")
    other = SKUFactory(series=series, code="W-2", name="Other bag")
    image = SKUImageFactory(sku=sku, image__filename="w.jpg")
    other_image = SKUImageFactory(sku=other, image__filename="w2.jpg")
    match = MatchRequestFactory(created_by=appraiser)
    photo = QueryPhotoFactory(request=match, box=[0, 0, 64, 64],
                              box_source=QueryPhoto.BoxSource.DETECTOR)
    CandidateFactory(request=match, sku=sku, query_photo=photo, reference_image=image)
    decided = MatchRequestFactory(created_by=appraiser)
    decided_photo = QueryPhotoFactory(request=decided, original=photo.original.name,
                                      image=photo.image.name)
    case = BadCaseFactory(decision__request=decided)
    assert decided_photo.pk
    gap = CatalogueGapFactory(bad_case=case, reported_by=appraiser)
    run = TrainingRunFactory(status=TrainingRun.Status.FAILED)
    model = ModelVersionFactory(name="m-test", model_ref="/nonexistent/m.pt")
    bundle = CatalogueImportFactory(original_name="c.zip", bundle__filename="c.zip")
    scan = DuplicateScanFactory(status=DuplicateScan.Status.DONE)
    pair = DuplicatePairFactory(sku_a=sku, sku_b=other, image_a=image, image_b=other_image,
                                image_cosine=0.99)
    return World(appraiser, sku, other, image, match, photo, case, gap, run, model, bundle,
                 scan, pair)
