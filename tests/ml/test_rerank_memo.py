"""The query-evidence memo: the same photo re-ranked again reuses its features and words."""

from __future__ import annotations

from ml.rerank import spatial
from ml.rerank.memo import QueryEvidenceMemo
from ml.rerank.stage import RerankConfig, Reranker
from ml.rerank.types import OcrWord
from tests.ml.test_rerank_stage import CATALOGUE, FUSION, REFERENCES, VISUAL, query_of_sku_2, store

__all__ = ["store"]  # the fixture


class _WordsOcr:
    name = "words"

    def __init__(self) -> None:
        self.calls = 0

    def read(self, image):
        self.calls += 1
        return [OcrWord("kirin", 0.9, (0.0, 0.0, 10.0, 10.0)), OcrWord("harbour", 0.8, None)]


def test_a_memo_changes_no_result_and_computes_each_crop_once(store, monkeypatch) -> None:
    extracted = []
    original = spatial.extract

    def counting(image, **kwargs):
        extracted.append(image.size)
        return original(image, **kwargs)

    monkeypatch.setattr(spatial, "extract", counting)
    config = RerankConfig(ocr_margin=None)  # read on every query
    plain_ocr, memo_ocr = _WordsOcr(), _WordsOcr()
    plain = Reranker(config, store=store, fusion=FUSION, ocr=plain_ocr)
    memo = QueryEvidenceMemo()
    kept = Reranker(config, store=store, fusion=FUSION, ocr=memo_ocr, memo=memo)
    expected = plain.rerank(query_of_sku_2(), VISUAL, catalogue=CATALOGUE,
                            ref_to_sku=REFERENCES)
    assert len(extracted) == 1 and plain_ocr.calls == 1
    for _ in range(3):  # a new RerankQuery each time, with equal pixels
        got = kept.rerank(query_of_sku_2(), VISUAL, catalogue=CATALOGUE, ref_to_sku=REFERENCES)
        assert [c.sku_id for c in got.candidates] == [c.sku_id for c in expected.candidates]
        assert [e.to_json() for e in got.evidence] == [e.to_json() for e in expected.evidence]
    assert len(extracted) == 2 and memo_ocr.calls == 1
    assert memo.hits == 4 and memo.misses == 2


def test_the_memo_forgets_the_least_recent_crops() -> None:
    from PIL import Image

    memo = QueryEvidenceMemo(max_crops=2)
    crops = [Image.new("RGB", (8, 8), (i, 0, 0)) for i in range(6)]
    for crop in crops:
        memo.words(crop, lambda c: [])
    assert len(memo) == 4  # two kinds' worth
    memo.words(crops[0], lambda c: [])
    assert memo.misses == 7
    memo.words(crops[5], lambda c: [])
    assert memo.hits == 1
