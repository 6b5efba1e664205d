"""Text evidence: folding, fuzzy matching with candidate-relative weights, OCR on a real photo."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ml.images import load_rgb
from ml.rerank.text import fold, match_words, similarity, vocabulary, words
from ml.rerank.types import CatalogueEntry, OcrWord


def test_fold_and_words():
    assert fold("Mjölk ÄPPLE") == "mjolk apple"
    assert words("God-Morgon Äpple & 100% juice, och mer") == ["god", "morgon", "apple", "100",
                                                                "juice", "mer"]


def test_similarity_whole_words_and_run_together_words():
    assert similarity("bravo", "bravo") == 100.0
    assert similarity("brav0", "bravo") == 80.0
    assert similarity("theoriginal", "original") == 95.0  # found inside, 5 points less
    assert similarity("or", "original") < 80


def entry(sku: int, name: str, description: str = "", **attrs: str) -> CatalogueEntry:
    return CatalogueEntry(sku, name=name, description=description, attributes=attrs)


def test_words_weigh_by_how_few_candidates_share_them():
    vocabs = [
        vocabulary(entry(1, "Bravo Apple Juice")),
        vocabulary(entry(2, "Bravo Orange Juice")),
        vocabulary(entry(3, "God Morgon Orange Juice"), reference_words=["GOD", "MORGON"]),
    ]
    read = [OcrWord("BRAVO", 0.9, (0, 0, 10, 5)), OcrWord("JUICE", 0.9, (0, 6, 10, 9)),
            OcrWord("APPLE", 0.9, (0, 10, 10, 15))]
    apple, orange, god = match_words(read, vocabs)
    k = 3
    # juice is in all three (weight log(4/3)), bravo in two (log(4/2)), apple in one (log 4).
    assert {m.matched: m.weight for m in apple.matches} == pytest.approx(
        {"bravo": math.log((k + 1) / 2), "juice": math.log((k + 1) / 3),
         "apple": math.log((k + 1) / 1)}, abs=1e-4)
    assert apple.score == pytest.approx(math.log(2) + math.log(4 / 3) + math.log(4), abs=1e-3)
    assert apple.score > orange.score > god.score > 0
    assert [m.matched for m in god.matches] == ["juice"]
    assert apple.matches[0].box == (0, 10, 10, 15)  # the APPLE line, for highlighting


def test_typed_words_match_reference_text_and_fields():
    vocabs = [vocabulary(entry(1, "Kirin Harbour Tote Red", "leather tote"), ["HARBOUR"]),
              vocabulary(entry(2, "Velluto Mercato Tote Navy", "canvas"))]
    harbour, mercato = match_words("red leather harbor tote".split(), vocabs)
    assert {m.matched for m in harbour.matches} == {"red", "leather", "harbour", "tote"}
    assert {m.source for m in harbour.matches} >= {"name", "description"}
    assert [m.matched for m in mercato.matches] == ["tote"]
    assert harbour.score > mercato.score


def test_no_words_no_evidence():
    (empty,) = match_words([], [vocabulary(entry(1, "Anything"))])
    assert empty.matches == [] and empty.score == 0.0


def test_ocr_reads_a_real_package(grocery_root: Path):
    """RapidOCR (PP-OCRv4 ONNX from its wheel) on the iconic Bravo apple juice carton."""
    ocr = pytest.importorskip("ml.rerank.ocr")
    try:
        engine = ocr.RapidOcrEngine()
    except ocr.OcrUnavailable as exc:
        pytest.skip(f"OCR models unavailable: {exc}")
    image = load_rgb(grocery_root / "iconic-images-and-descriptions/Packages/Juice/"
                     "Bravo-Apple-Juice/Bravo-Apple-Juice_Iconic.jpg")
    read = engine.read(image)
    texts = {fold(w.text) for w in read}
    assert {"bravo", "apple"} <= texts, texts
    for w in read:
        x0, y0, x1, y1 = w.box
        assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height
        assert w.confidence >= 0.5
    # ...and the words pick the right carton among its neighbours.
    vocabs = [vocabulary(entry(i, name)) for i, name in
              enumerate(["Bravo Apple Juice", "Bravo Orange Juice", "God Morgon Apple Juice"])]
    scores = [t.score for t in match_words(read, vocabs)]
    assert scores.index(max(scores)) == 0


def test_a_narrow_recogniser_floor_reads_the_same_carton(grocery_root: Path):
    """``rec_min_width``: lines are padded only to their batch's widest, not to 320 px."""
    ocr = pytest.importorskip("ml.rerank.ocr")
    try:
        engine = ocr.RapidOcrEngine(rec_min_width=48)
    except ocr.OcrUnavailable as exc:
        pytest.skip(f"OCR models unavailable: {exc}")
    assert engine._engine.text_rec.rec_image_shape[2] == 48
    image = load_rgb(grocery_root / "iconic-images-and-descriptions/Packages/Juice/"
                     "Bravo-Apple-Juice/Bravo-Apple-Juice_Iconic.jpg")
    assert {"bravo", "apple"} <= {fold(w.text) for w in engine.read(image)}
