"""A flat index gathers stored vectors from its buffer: the same as Faiss's reconstruct,
after any adds and removes, and per-query filters search the same as brute force."""

from __future__ import annotations

import numpy as np

from ml.index import VectorIndex


def _unit(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_gather_matches_faiss_reconstruct_through_mutations() -> None:
    rng = np.random.default_rng(3)
    index = VectorIndex.build(np.arange(0, 300, 3), _unit(rng, 100))
    assert index.kind == "flat"
    for step in range(3):
        ids = index.ids()
        wanted = rng.choice(ids, size=40, replace=False)
        want = index.faiss_index.reconstruct_batch(np.ascontiguousarray(wanted))
        assert np.array_equal(index._gather(wanted), want)
        index.remove(ids[step::7])
        index.add(np.arange(1000 + 50 * step, 1000 + 50 * step + 20), _unit(rng, 20))
    stored = index.ids()
    assert np.array_equal(index._gather(stored),
                          index.faiss_index.reconstruct_batch(np.ascontiguousarray(stored)))


def test_per_query_filters_on_a_flat_index_are_exact() -> None:
    rng = np.random.default_rng(4)
    vectors = _unit(rng, 200)
    index = VectorIndex.build(np.arange(200), vectors)
    queries = _unit(rng, 5)
    allowed = [np.setdiff1d(np.arange(200), np.arange(q * 10, q * 10 + 30)) for q in range(5)]
    for q, ok in enumerate(allowed):
        scores, labels = index.search(queries[q : q + 1], 4, allowed_ids=ok)
        truth = ok[np.argsort(-(vectors[ok] @ queries[q]))[:4]]
        assert labels[0].tolist() == truth.tolist()
        assert np.allclose(scores[0], vectors[truth] @ queries[q], atol=1e-5)
