"""The demo comes with drawn labelled history, imported through import_history, sized for the
gate's hold-out, and unlike the sample photos people upload."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from PIL import Image

from webapp.catalog.demo import (
    HISTORY_LISTINGS_PER_SKU,
    demo_skus,
    write_demo_history,
)
from webapp.catalog.models import SKU
from webapp.history.models import HistoryImport
from webapp.learning.dataset import is_holdout, labelled_requests
from webapp.learning.gate import evaluation_sets
from webapp.matching.models import MatchRequest


def test_the_demo_history_gives_the_gate_enough_held_out_requests() -> None:
    items = HISTORY_LISTINGS_PER_SKU * len(demo_skus())
    percent = django_settings.GATE_HOLDOUT_PERCENT
    # Whatever ids the requests get (a fresh database starts at 1; a used one later).
    worst = min(sum(is_holdout(i, percent) for i in range(first, first + items))
                for first in range(1, 1000))
    assert worst >= django_settings.GATE_MIN_HOLDOUT


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB").resize((64, 64)), dtype=np.float32)


def test_history_photos_are_not_the_sample_photos(demo_folder, tmp_path) -> None:
    csv_path = write_demo_history(tmp_path, listings_per_sku=1)
    samples = {p.name.split("-photo")[0]: p.read_bytes()
               for p in (demo_folder / "photos").glob("*.jpg")}
    sample_hashes = {hashlib.sha256(d).hexdigest() for d in samples.values()}
    lines = csv_path.read_text().splitlines()[1:]
    assert len(lines) == len(demo_skus())
    for line in lines:
        code, path = line.split(",")[:2]
        data = (tmp_path / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() not in sample_hashes
        difference = np.abs(_pixels(data) - _pixels(samples[code])).mean()
        assert difference > 10, (code, difference)  # another scene, not a re-encoding


@pytest.mark.slow
def test_load_demo_catalogue_imports_the_history(db, settings, tmp_path) -> None:
    settings.VAR_DIR = tmp_path
    call_command("load_demo_catalogue", stdout=io.StringIO())
    record = HistoryImport.objects.get()
    assert record.origin == "command" and record.status == HistoryImport.Status.APPLIED
    skus = SKU.objects.count()
    assert record.items_created == HISTORY_LISTINGS_PER_SKU * skus
    assert record.photos_created > record.items_created  # some listings have two photos
    known = labelled_requests()
    assert len(known) == record.items_created
    assert {r.sku_id for r in known} == set(SKU.objects.values_list("pk", flat=True))
    holdout, _ = evaluation_sets()
    assert len(holdout) >= settings.GATE_MIN_HOLDOUT
    assert MatchRequest.objects.exclude(source="history").count() == 0
    # The sample photos are left for people to upload.
    assert len(list((tmp_path / "demo" / "photos").glob("*.jpg"))) == 2 * skus
