"""The re-ranking stage end to end on drawn images; the reference store; attribute heads."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ml.rerank.attributes import (
    AttributePredictor,
    attribute_agreement,
    soft_attribute_agreement,
)
from ml.rerank.fusion import FusionModel
from ml.rerank.stage import RerankConfig, Reranker
from ml.rerank.store import ReferenceStore, build_store
from ml.rerank.types import CatalogueEntry, RerankQuery
from ml.types import SkuScore
from tests.ml.test_rerank_spatial import H_TRUE, textured

FUSION = FusionModel(
    {"visual": 10.0, "visual_gap": 10.0, "spatial": 1.0, "text": 1.0, "query_text": 2.0,
     "attributes": 2.0, "soft_attributes": 1.0},
    intercept=-8.0, threshold=0.5,
)
CATALOGUE = {
    1: CatalogueEntry(1, name="Maison Lune Black", brand="Maison", series="Lune",
                      attributes={"colour": "black"}),
    2: CatalogueEntry(2, name="Kirin Harbour Red", brand="Kirin", series="Harbour",
                      attributes={"colour": "red"}),
    3: CatalogueEntry(3, name="Velluto Arco Navy", brand="Velluto", series="Arco",
                      attributes={"colour": "navy"}),
}
REFERENCES = {10: 1, 11: 1, 20: 2, 30: 3}


@pytest.fixture(scope="module")
def store() -> ReferenceStore:
    images = [(10, textured(1), True), (11, textured(11), False), (20, textured(2), True),
              (30, textured(3), True)]
    return build_store(images)


def query_of_sku_2() -> RerankQuery:
    warped = cv2.warpPerspective(np.asarray(textured(2)), H_TRUE, (320, 320),
                                 borderValue=(235, 230, 220))
    from PIL import Image

    # The search liked SKU 1's references a little more than SKU 2's.
    cosines = np.array([[0.80, 0.79, 0.78, 0.50]], dtype=np.float32)
    ids = np.array([[10, 20, 11, 30]], dtype=np.int64)
    return RerankQuery(crops=[Image.fromarray(warped)], cosines=cosines, reference_ids=ids)


VISUAL = [SkuScore(1, 0.90, 0.80, 0, 10), SkuScore(2, 0.895, 0.79, 0, 20),
          SkuScore(3, 0.75, 0.50, 0, 30)]


def test_spatial_evidence_lifts_the_right_candidate(store):
    reranker = Reranker(RerankConfig(top_k=8), store=store, fusion=FUSION)
    result = reranker.rerank(query_of_sku_2(), VISUAL, catalogue=CATALOGUE,
                             ref_to_sku=REFERENCES)
    assert [c.sku_id for c in result.candidates] == [2, 1, 3]
    top = result.evidence[0]
    assert top.sku_id == 2 and top.visual_rank == 2
    assert top.spatial is not None and top.spatial.reference_id == 20
    assert top.spatial.inliers >= 20
    assert len(top.spatial.query_points) == len(top.spatial.reference_points) > 0
    assert top.spatial.reference_parts and top.spatial.reference_parts[0].inliers >= 2
    assert top.contributions["spatial"] > 0
    assert result.candidates[0].score == pytest.approx(top.probability)
    assert result.confident == (top.probability >= FUSION.threshold)
    assert "rerank_spatial" in result.timings_ms
    # The JSON the app stores is plain data.
    assert top.to_json()["spatial"]["inliers"] == top.spatial.inliers
    # Candidate 1 was checked against its catalogue image first, not the appraisal photo.
    other = next(e for e in result.evidence if e.sku_id == 1)
    assert other.spatial is None or other.spatial.inliers < top.spatial.inliers


def test_each_kind_can_be_switched_off(store):
    reranker = Reranker(RerankConfig().without("spatial"), store=store, fusion=FUSION)
    result = reranker.rerank(query_of_sku_2(), VISUAL, catalogue=CATALOGUE,
                             ref_to_sku=REFERENCES)
    assert [c.sku_id for c in result.candidates] == [1, 2, 3]
    assert all(e.spatial is None for e in result.evidence)
    assert "rerank_spatial" not in result.timings_ms


def test_typed_text_and_soft_attributes_are_evidence_not_filters(store):
    reranker = Reranker(RerankConfig().without("spatial"), store=store, fusion=FUSION)
    query = query_of_sku_2()
    typed = RerankQuery(query.crops, query.cosines, query.reference_ids,
                        query_text="red harbour bag", soft_attributes={"colour": "navy"})
    result = reranker.rerank(typed, VISUAL, catalogue=CATALOGUE, ref_to_sku=REFERENCES)
    assert result.candidates[0].sku_id == 2
    assert len(result.candidates) == 3  # nothing filtered out
    by_sku = {e.sku_id: e for e in result.evidence}
    assert {m.matched for m in by_sku[2].query_text.matches} == {"red", "harbour"}
    assert by_sku[3].soft_attributes.score == 1.0 and by_sku[2].soft_attributes.score == -1.0


def test_only_the_top_k_are_reranked(store):
    reranker = Reranker(RerankConfig(top_k=2), store=store, fusion=FUSION)
    result = reranker.rerank(query_of_sku_2(), VISUAL, catalogue=CATALOGUE,
                             ref_to_sku=REFERENCES)
    assert [c.sku_id for c in result.candidates] == [2, 1, 3]
    assert len(result.evidence) == 2
    assert result.candidates[2].score <= result.candidates[1].score


def test_ocr_only_on_close_calls(store):
    class CountingOcr:
        name = "counting"
        calls = 0

        def read(self, image):
            CountingOcr.calls += 1
            return []

    close = Reranker(RerankConfig(ocr_margin=0.05), store=store, fusion=FUSION, ocr=CountingOcr())
    close.rerank(query_of_sku_2(), VISUAL, catalogue=CATALOGUE, ref_to_sku=REFERENCES)
    assert CountingOcr.calls == 1
    far = [SkuScore(1, 0.95, 0.90, 0, 10), *VISUAL[1:]]
    close.rerank(query_of_sku_2(), far, catalogue=CATALOGUE, ref_to_sku=REFERENCES)
    assert CountingOcr.calls == 1  # 0.90 vs 0.79: not a close call


def test_store_round_trip(store, tmp_path: Path):
    store.save(tmp_path / "idx-1")
    loaded = ReferenceStore.load(tmp_path / "idx-1")
    assert loaded is not None and len(loaded) == 4
    for reference_id in (10, 11, 20, 30):
        a, b = store.get(reference_id), loaded.get(reference_id)
        np.testing.assert_allclose(a.features.xy, b.features.xy)
        np.testing.assert_allclose(a.features.descriptors, b.features.descriptors, atol=1e-6)
        assert a.primary == b.primary and a.features.image_size == b.features.image_size
    assert not loaded.is_primary(11) and loaded.is_primary(10)
    # Stored descriptors are uint8: close to the float originals, still unit rows.
    original = build_store([(20, textured(2), True)]).get(20)
    assert original is not None
    smaller = loaded.updated(add={}, remove=[10, 11])
    assert sorted(smaller.ids().tolist()) == [20, 30]
    # Another feature setting is not misread: the store must be rebuilt.
    meta = tmp_path / "idx-1" / "rerank" / "meta.json"
    meta.write_text(meta.read_text().replace('"side": 320', '"side": 999'))
    assert ReferenceStore.load(tmp_path / "idx-1") is None
    assert ReferenceStore.load(tmp_path / "missing") is None


def test_attribute_heads_from_a_checkpoint(lite0, tmp_path: Path):
    from ml.model import ATTRIBUTE_HEADS_KEY, save_checkpoint

    dim = lite0.dim
    rng = np.random.default_rng(0)
    colours = rng.standard_normal((3, dim)).astype(np.float32)
    heads = {"names": ["colour"], "values": {"colour": ["black", "navy", "red"]},
             "weights": {"colour": torch.from_numpy(colours)}, "scale": 16.0}
    path = tmp_path / "m.pt"
    save_checkpoint(path, lite0, {}, {}, extra={ATTRIBUTE_HEADS_KEY: heads})
    predictor = AttributePredictor.from_checkpoint(path)
    assert predictor is not None and predictor.values["colour"] == ("black", "navy", "red")
    # An embedding pointing at the "red" row predicts red.
    query = colours[2] / np.linalg.norm(colours[2])
    predicted = predictor.predict(query[None])
    assert predicted["colour"].argmax() == 2
    evidence = attribute_agreement(predicted, predictor, [CATALOGUE[1], CATALOGUE[2],
                                                          CatalogueEntry(9)])
    assert evidence[1].score > 0 > evidence[0].score
    assert evidence[1].matches[0].agrees and not evidence[0].matches[0].agrees
    assert evidence[2].matches == [] and evidence[2].score == 0.0

    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, lite0, {}, {})
    assert AttributePredictor.from_checkpoint(plain) is None


def test_soft_attributes_fuzzy_and_case_blind():
    entries = [CatalogueEntry(1, brand="Kirin & Co", attributes={"colour": "Red"}),
               CatalogueEntry(2, brand="Velluto", attributes={"colour": "navy"})]
    first, second = soft_attribute_agreement({"Colour": "red", "brand": "kirin"}, entries)
    assert first.score == 2.0 and second.score == -2.0
