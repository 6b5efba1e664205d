"""rank_skus and the retrieval path (ml.retrieval.Retriever) against hand-written loops."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ml.fuse import cosine_to_score, rank_skus
from ml.index import VectorIndex
from ml.retrieval import Isolator, Query, RetrievalConfig, Retriever, lookup_from
from ml.types import Box, SkuScore


def test_cosine_to_score():
    assert cosine_to_score(1.0) == 1.0
    assert cosine_to_score(-1.0) == 0.0
    assert cosine_to_score(0.0) == 0.5
    assert cosine_to_score(1.5) == 1.0 and cosine_to_score(-3.0) == 0.0
    np.testing.assert_allclose(cosine_to_score(np.array([-2.0, 0.2, 2.0])), [0.0, 0.6, 1.0])


def random_hits(rng, n_photos=3, k=12, n_refs=40, n_skus=9):
    ref_to_sku = {r: int(rng.integers(0, n_skus)) for r in range(n_refs)}
    ref_ids = np.stack([rng.choice(n_refs + 5, size=k, replace=False) for _ in range(n_photos)])
    cosines = rng.uniform(-1, 1, size=(n_photos, k)).astype(np.float32)
    # Quantise so that exact ties between SKUs happen and the tie-break is exercised.
    cosines = np.round(cosines * 8) / 8
    cosines[0, -2:] = -np.inf
    ref_ids[0, -2:] = -1
    return cosines, ref_ids.astype(np.int64), ref_to_sku  # refs >= n_refs are unknown


def hand_best(cosines, ref_ids, ref_to_sku, top_k):
    best: dict[int, tuple[float, int, int]] = {}
    for q in range(cosines.shape[0]):
        for j in range(cosines.shape[1]):
            ref, cos = int(ref_ids[q, j]), float(cosines[q, j])
            if ref == -1 or ref not in ref_to_sku:
                continue
            sku = ref_to_sku[ref]
            cur = best.get(sku)
            if cur is None or cos > cur[0] or (cos == cur[0] and (q, ref) < (cur[1], cur[2])):
                best[sku] = (cos, q, ref)
    rows = [
        SkuScore(sku, min(1.0, max(0.0, (c + 1) / 2)), c, q, r) for sku, (c, q, r) in best.items()
    ]
    rows.sort(key=lambda s: (-s.score, s.sku_id))
    return rows[:top_k]


@pytest.mark.parametrize("seed", range(20))
def test_best_matches_hand_loop(seed):
    rng = np.random.default_rng(seed)
    cosines, ref_ids, ref_to_sku = random_hits(rng)
    for top_k in (1, 4, 100):
        got = rank_skus(cosines, ref_ids, ref_to_sku, top_k=top_k, strategy="best")
        want = hand_best(cosines, ref_ids, ref_to_sku, top_k)
        assert [(s.sku_id, s.query_index, s.reference_id) for s in got] == [
            (s.sku_id, s.query_index, s.reference_id) for s in want
        ]
        np.testing.assert_allclose([s.score for s in got], [s.score for s in want], atol=1e-7)
        np.testing.assert_allclose([s.cosine for s in got], [s.cosine for s in want], atol=1e-7)


def test_ties_broken_by_sku_id():
    cos = np.array([[0.5, 0.5, 0.5]])
    ids = np.array([[10, 11, 12]])
    got = rank_skus(cos, ids, {10: 7, 11: 3, 12: 5}, top_k=3)
    assert [s.sku_id for s in got] == [3, 5, 7]


@pytest.mark.parametrize("seed", range(10))
def test_alternative_strategies_match_hand_loops(seed):
    rng = np.random.default_rng(seed)
    cosines, ref_ids, ref_to_sku = random_hits(rng)
    per_ref: dict[int, dict[int, float]] = {}
    per_query: dict[int, dict[int, float]] = {}
    floors = []
    for q in range(cosines.shape[0]):
        valid = [float(c) for c, r in zip(cosines[q], ref_ids[q], strict=True) if r >= 0]
        floors.append(min(valid))
        for c, r in zip(cosines[q].tolist(), ref_ids[q].tolist(), strict=True):
            if r < 0 or r not in ref_to_sku:
                continue
            sku = ref_to_sku[r]
            per_ref.setdefault(sku, {})[r] = max(per_ref.get(sku, {}).get(r, -9.0), c)
            per_query.setdefault(sku, {})[q] = max(per_query.get(sku, {}).get(q, -9.0), c)
    m = 2
    want_m = {
        sku: float(np.mean(sorted(d.values(), reverse=True)[:m])) for sku, d in per_ref.items()
    }
    want_q = {
        sku: float(np.mean([d.get(q, floors[q]) for q in range(len(floors))]))
        for sku, d in per_query.items()
    }
    for strategy, want in (("mean_top_m", want_m), ("query_mean", want_q)):
        got = rank_skus(cosines, ref_ids, ref_to_sku, top_k=100, strategy=strategy, m=m)
        assert {s.sku_id: s.cosine for s in got} == pytest.approx(want)
        order = sorted(want, key=lambda sku: (-cosine_to_score(want[sku]), sku))
        assert [s.sku_id for s in got] == order
    with pytest.raises(ValueError):
        rank_skus(cosines, ref_ids, ref_to_sku, top_k=3, strategy="nope")


class FakeEmbedder:
    """Deterministic embeddings: each image's colour picks a row of ``table``."""

    name = "fake"

    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self.dim = table.shape[1]
        self.calls: list[int] = []

    def embed(self, images, *, batch_size: int = 32) -> np.ndarray:
        self.calls.append(len(images))
        return np.stack([self.table[im.getpixel((0, 0))[0]] for im in images])


class BoxEverything:
    """A detector that finds the whole frame as a "handbag" (what the Isolator needs)."""

    name = "whole-frame-detector"

    def detect_all(self, images, *, classes=(), alone=False):
        from ml.yolo import Detection

        return [Detection(Box(0, 0, im.width, im.height), "handbag", 0.9) for im in images]


def test_retriever_end_to_end(rng, make_unit_vectors):
    table = make_unit_vectors(rng, 8, 16)
    refs = make_unit_vectors(rng, 60, 16)
    ref_ids = np.arange(100, 160, dtype=np.int64)
    ref_to_sku = {int(r): int(r) % 13 for r in ref_ids}
    index = VectorIndex.build(ref_ids, refs)
    embedder = FakeEmbedder(table)
    photos = [Image.new("RGB", (20, 10), (i, 0, 0)) for i in (2, 5)]
    allowed = ref_ids[::2]

    retriever = Retriever(
        embedder=embedder, index=index, sku_of=lookup_from(ref_to_sku),
        config=RetrievalConfig(strategy="best"),
    )
    (found,) = retriever.retrieve([Query(photos, allowed_ids=allowed)], top_k=3)
    assert embedder.calls == [2]  # one batch for all photos
    assert set(found.timings_ms) == {"detect", "segment", "embed", "search", "fuse"}
    assert [i.source for i in found.isolations] == ["full_frame", "full_frame"]
    # Oracle: brute force over allowed refs, best pair per SKU.
    sims = table[[2, 5]] @ refs[::2].T
    best: dict[int, float] = {}
    for q in range(2):
        for j, r in enumerate(ref_ids[::2]):
            sku = ref_to_sku[int(r)]
            best[sku] = max(best.get(sku, -9), float(sims[q, j]))
    want = sorted(best, key=lambda s: (-best[s], s))[:3]
    assert [c.sku_id for c in found.candidates] == want
    assert all(ref_to_sku[c.reference_id] == c.sku_id for c in found.candidates)
    assert all(c.reference_id in set(allowed.tolist()) for c in found.candidates)

    with_det = Retriever(
        embedder=embedder, index=index, sku_of=lookup_from(ref_to_sku),
        isolator=Isolator(BoxEverything(), segmentation="none"),
    ).retrieve([Query(photos)], top_k=3)[0]
    assert [i.box for i in with_det.isolations] == [Box(0, 0, 20, 10), Box(0, 0, 20, 10)]
    assert [i.source for i in with_det.isolations] == ["detector", "detector"]
    assert "detect" in with_det.timings_ms


def test_retriever_batches_queries_and_cuts_rankings_as_prefixes(rng, make_unit_vectors):
    """Several queries share one embedding pass, and each ranking is what the query alone
    gets; a shorter top_k is a prefix of a longer one (one search depth for every caller)."""
    table = make_unit_vectors(rng, 8, 16)
    refs = make_unit_vectors(rng, 90, 16)
    ref_ids = np.arange(90, dtype=np.int64)
    ref_to_sku = {int(r): int(r) % 17 for r in ref_ids}
    embedder = FakeEmbedder(table)
    retriever = Retriever(embedder=embedder, index=VectorIndex.build(ref_ids, refs),
                          sku_of=lookup_from(ref_to_sku),
                          config=RetrievalConfig(search_depth=30))
    queries = [Query([Image.new("RGB", (8, 8), (i, 0, 0)) for i in photos])
               for photos in ((1,), (3, 4), (6, 7, 2))]
    together = retriever.retrieve(queries, top_k=8)
    assert embedder.calls == [6]
    for query, found in zip(queries, together, strict=True):
        alone = retriever.retrieve([query], top_k=8)[0]
        assert alone.candidates == found.candidates
        short = retriever.retrieve([query], top_k=4)[0]
        assert short.candidates == found.candidates[:4]
