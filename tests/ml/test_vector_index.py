"""VectorIndex against brute-force numpy (the exact oracle)."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from ml.index import (
    IndexCorruptError,
    VectorIndex,
    current_version,
    list_versions,
    load_version,
    save_version,
    set_current,
)
from ml.index import core as index_mod
from ml.index import filtered as filtered_mod


def brute_force(
    vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int, allowed=None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product with a Python filter; -1/-inf padding."""
    mask = np.ones(len(ids), bool) if allowed is None else np.isin(ids, allowed)
    sub_v, sub_ids = vectors[mask], ids[mask]
    sims = queries @ sub_v.T
    scores = np.full((len(queries), k), -np.inf, np.float32)
    labels = np.full((len(queries), k), -1, np.int64)
    for q in range(len(queries)):
        order = np.argsort(-sims[q], kind="stable")[:k]
        scores[q, : len(order)] = sims[q, order]
        labels[q, : len(order)] = sub_ids[order]
    return scores, labels


def assert_same_results(got, want, atol=1e-5):
    g_scores, g_ids = got
    w_scores, w_ids = want
    assert g_ids.dtype == np.int64 and g_scores.dtype == np.float32
    np.testing.assert_allclose(g_scores, w_scores, atol=atol)
    # Ids must agree except where two scores tie within float error.
    differ = g_ids != w_ids
    if differ.any():
        assert np.allclose(g_scores[differ], w_scores[differ], atol=atol)


@pytest.fixture
def data(rng, make_unit_vectors):
    vectors = make_unit_vectors(rng, 500, 24)
    ids = rng.choice(10**12, size=500, replace=False).astype(np.int64)
    queries = make_unit_vectors(rng, 7, 24)
    return vectors, ids, queries


def test_flat_search_matches_brute_force(data):
    vectors, ids, queries = data
    index = VectorIndex.create(24)
    index.add(ids, vectors)
    assert index.kind == "flat" and index.ntotal == 500 and index.dim == 24
    assert_same_results(index.search(queries, 10), brute_force(vectors, ids, queries, 10))
    assert sorted(index.ids().tolist()) == sorted(ids.tolist())


def test_search_pads_when_fewer_than_k(data):
    vectors, ids, queries = data
    index = VectorIndex.build(ids[:3], vectors[:3])
    scores, labels = index.search(queries, 5)
    assert labels.shape == (7, 5)
    assert (labels[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    assert_same_results((scores, labels), brute_force(vectors[:3], ids[:3], queries, 5))
    empty = VectorIndex.create(24)
    s, i = empty.search(queries, 4)
    assert (i == -1).all() and np.isneginf(s).all()
    s, i = index.search(queries, 0)
    assert s.shape == (7, 0) and i.shape == (7, 0)


def test_filtered_search_matches_python_filter(data, rng):
    vectors, ids, queries = data
    index = VectorIndex.build(ids, vectors)
    for size in (1, 5, 40, 300):
        allowed = rng.choice(ids, size=size, replace=False)
        # Unknown ids in the allowed set must simply be ignored.
        allowed = np.concatenate([allowed, [-5, 10**13]])
        got = index.search(queries, 10, allowed_ids=allowed)
        assert_same_results(got, brute_force(vectors, ids, queries, 10, allowed))
        assert np.isin(got[1][got[1] >= 0], allowed).all()
    s, i = index.search(queries, 10, allowed_ids=np.array([], np.int64))
    assert (i == -1).all() and np.isneginf(s).all()


def test_add_remove_upsert(data):
    vectors, ids, queries = data
    index = VectorIndex.build(ids[:400], vectors[:400])
    index.add(ids[400:], vectors[400:])
    assert index.remove(ids[:100]) == 100
    assert index.remove(ids[:100]) == 0  # already gone
    assert index.remove(np.array([], np.int64)) == 0
    keep = slice(100, None)
    assert index.ntotal == 400
    assert sorted(index.ids().tolist()) == sorted(ids[keep].tolist())
    assert_same_results(index.search(queries, 8), brute_force(vectors[keep], ids[keep], queries, 8))
    with pytest.raises(ValueError, match="already in the index"):
        index.add(ids[200:201], vectors[200:201])
    with pytest.raises(ValueError, match="duplicate"):
        index.add(np.array([1, 1]), vectors[:2])
    with pytest.raises(ValueError, match="shape"):
        index.add(np.array([1]), np.zeros((1, 3), np.float32))
    # upsert: move id 200 onto a query vector; it must become that query's top hit
    index.upsert(ids[200:201], queries[:1])
    assert index.ntotal == 400
    s, i = index.search(queries[:1], 1)
    assert i[0, 0] == ids[200] and s[0, 0] == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(index.reconstruct(ids[300:302]), vectors[300:302], atol=1e-6)
    with pytest.raises(KeyError):
        index.reconstruct(ids[:1])


def clustered(rng, n, dim, centres=50, *, means=None):
    """Clustered unit vectors: IVF recall on pure noise is meaningless. ``means [c, dim]``
    draws from an existing mixture (queries that look like the data), else new centres."""
    c = means if means is not None else rng.standard_normal((centres, dim)).astype(np.float32)
    x = c[rng.integers(0, len(c), n)] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# fp16 storage rounds each component by <= 2**-11 relative: cosines move by < 1e-3.
CODEC_ATOL = {"fp32": 1e-5, "fp16": 1e-3}
CODEC_CLASS = {"fp32": faiss.IndexIVFFlat, "fp16": faiss.IndexIVFScalarQuantizer}


@pytest.mark.parametrize("codec", ["fp32", "fp16"])
def test_ivf_recall_filter_remove(rng, codec):
    dim = 32
    means = rng.standard_normal((50, dim)).astype(np.float32)
    vectors = clustered(rng, 20_000, dim, means=means)
    ids = rng.choice(10**9, size=len(vectors), replace=False).astype(np.int64)
    # nprobe is tuned on the data's own distribution, so recall is promised for queries
    # drawn from it (photos of catalogue items), not for ones far from every stored vector.
    queries = clustered(rng, 50, dim, means=means)
    index = VectorIndex.build(ids, vectors, kind="ivf", codec=codec)
    atol = CODEC_ATOL[codec]
    assert index.kind == "ivf" and index.codec == codec
    assert isinstance(index.faiss_index, CODEC_CLASS[codec])

    _, got = index.search(queries, 10)
    _, want = brute_force(vectors, ids, queries, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.95, recall

    # Small filters are exact (brute force over reconstructed vectors).
    allowed = rng.choice(ids, size=300, replace=False)
    assert_same_results(
        index.search(queries, 10, allowed_ids=allowed),
        brute_force(vectors, ids, queries, 10, allowed),
        atol=atol,
    )

    # Remove works with arbitrary ids thanks to the hashtable direct map.
    assert index.remove(ids[:1000]) == 1000
    assert index.ntotal == 19_000
    assert not index.contains(ids[:1000]).any()
    _, got = index.search(queries, 10)
    assert not np.isin(got, ids[:1000]).any()
    index.add(ids[:10], vectors[:10])
    np.testing.assert_allclose(index.reconstruct(ids[:10]), vectors[:10], atol=atol)


@pytest.mark.parametrize("codec", ["fp32", "fp16"])
def test_ivf_large_filter_uses_selector(rng, monkeypatch, codec):
    monkeypatch.setattr(filtered_mod, "EXACT_FILTER_MAX", 10)
    vectors = clustered(rng, 4000, 16)
    ids = np.arange(4000, dtype=np.int64) * 3
    index = VectorIndex.build(ids, vectors, kind="ivf", nlist=16, codec=codec)
    index.nprobe = 16  # all lists: the selector path is then exact too
    allowed = ids[::7]
    queries = clustered(rng, 5, 16)
    got = index.search(queries, 10, allowed_ids=allowed)
    assert np.isin(got[1], allowed).all()
    assert_same_results(
        got, brute_force(vectors, ids, queries, 10, allowed), atol=CODEC_ATOL[codec]
    )


def test_build_chooses_type_by_size(rng, make_unit_vectors, monkeypatch):
    monkeypatch.setattr(index_mod, "IVF_THRESHOLD", 2000)
    small = VectorIndex.build(np.arange(1999), make_unit_vectors(rng, 1999, 8))
    big = VectorIndex.build(np.arange(2000), make_unit_vectors(rng, 2000, 8))
    assert (small.kind, big.kind) == ("flat", "ivf")
    assert big.codec == "fp16" and 1 <= big.nprobe <= big.nlist
    assert not small.needs_rebuild and not big.needs_rebuild
    # Incremental growth keeps the structure; needs_rebuild tells the caller to rebuild.
    small.add(np.arange(1999, 2100), make_unit_vectors(rng, 101, 8))
    assert small.kind == "flat" and small.needs_rebuild
    big.remove(np.arange(1200))
    assert big.needs_rebuild  # below IVF_THRESHOLD / 2: flat is better again


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_save_load_roundtrip(tmp_path: Path, rng, kind):
    vectors = clustered(rng, 3000, 16)
    ids = rng.choice(10**9, size=3000, replace=False).astype(np.int64)
    index = VectorIndex.build(ids, vectors, kind=kind)
    queries = clustered(rng, 5, 16)
    before = index.search(queries, 10)
    index.save(tmp_path / "idx", meta={"model": "m1", "note": "x"})
    loaded, meta = VectorIndex.load(tmp_path / "idx")
    assert meta["model"] == "m1" and meta["count"] == 3000 and meta["kind"] == kind
    assert loaded.kind == kind and loaded.ntotal == 3000
    assert_same_results(loaded.search(queries, 10), before)
    assert sorted(loaded.ids().tolist()) == sorted(ids.tolist())
    assert loaded.remove(ids[:5]) == 5  # direct map survives the round trip


def test_load_verifies_count(tmp_path: Path, data):
    vectors, ids, _ = data
    VectorIndex.build(ids, vectors).save(tmp_path / "idx", meta={})
    meta_path = tmp_path / "idx" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "count": 499}))
    with pytest.raises(IndexCorruptError, match="499"):
        VectorIndex.load(tmp_path / "idx")
    (tmp_path / "idx" / "index.faiss").unlink()
    with pytest.raises(IndexCorruptError):
        VectorIndex.load(tmp_path / "idx")


def test_failed_save_leaves_old_version_intact(tmp_path: Path, data, monkeypatch):
    vectors, ids, queries = data
    old = VectorIndex.build(ids[:100], vectors[:100])
    old.save(tmp_path / "idx", meta={"v": 1})
    new = VectorIndex.build(ids, vectors)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", boom)
    with pytest.raises(OSError, match="disk full"):
        new.save(tmp_path / "idx", meta={"v": 2})
    with pytest.raises(OSError, match="disk full"):
        save_version(tmp_path / "versions", new, {"v": 2}, name="v2")
    monkeypatch.undo()

    loaded, meta = VectorIndex.load(tmp_path / "idx")
    assert meta["v"] == 1 and loaded.ntotal == 100
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    assert list_versions(tmp_path / "versions") == []
    assert not any((tmp_path / "versions").iterdir())  # no half-written temp dirs

    # A successful save replaces it.
    new.save(tmp_path / "idx", meta={"v": 2})
    loaded, meta = VectorIndex.load(tmp_path / "idx")
    assert meta["v"] == 2 and loaded.ntotal == 500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "versions"]


def test_versions_never_overwrite(tmp_path: Path, data):
    vectors, ids, queries = data
    root = tmp_path / "index"
    a = VectorIndex.build(ids[:50], vectors[:50])
    b = VectorIndex.build(ids, vectors)
    name_a = save_version(root, a, {"model": "m"}, name="v001")
    with pytest.raises(FileExistsError):
        save_version(root, b, {"model": "m"}, name="v001")
    name_b = save_version(root, b, {"model": "m"})
    assert list_versions(root) == sorted([name_a, name_b])
    assert current_version(root) is None
    set_current(root, name_a)
    idx, meta = load_version(root)
    assert idx.ntotal == 50 and meta["version"] == "v001"
    set_current(root, name_b)
    idx, _ = load_version(root)
    assert idx.ntotal == 500
    idx, _ = load_version(root, name_a)
    assert idx.ntotal == 50
    with pytest.raises(FileNotFoundError):
        set_current(root, "nope")


def test_filtered_search_survives_torch_utils_patch(data):
    """pytorch-metric-learning imports faiss.contrib.torch_utils, which patches Index.search."""
    import faiss.contrib.torch_utils  # noqa: F401

    vectors, ids, queries = data
    index = VectorIndex.build(ids, vectors)
    allowed = ids[:30]
    assert_same_results(
        index.search(queries, 5, allowed_ids=allowed),
        brute_force(vectors, ids, queries, 5, allowed),
    )
