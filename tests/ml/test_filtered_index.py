"""Filtered search at scale and the GPU strategy, against brute-force numpy (the exact oracle).

Faiss GPU ignores ``IDSelector``; ``ml.index.gpu`` filters without one. These tests run that
same code on CPU (device ``cpu-no-selector``), where the index is searched with no selector
at all, exactly as the GPU index would be, and check every result against a Python filter.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from ml.index import VectorIndex
from ml.index import filtered as index_mod
from ml.index import gpu as gpu_search
from ml.index.gpu import FilterStats, SelectorBlindCpuDevice, filtered_search, numpy_knn

from .test_vector_index import CODEC_ATOL, assert_same_results, brute_force, clustered


def mixture(rng, n, dim, centres=40, *, groups=8):
    """Clustered vectors with a 'category' per centre (groups of centres), like catalogues."""
    means = rng.standard_normal((centres, dim)).astype(np.float32)
    centre = rng.integers(0, centres, n)
    x = means[centre] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, centre % groups, means


def check_filtered(got, vectors, ids, queries, k, allowed, atol=1e-5):
    """100% of results in the filter, and the exact filtered top-k (up to ties)."""
    scores, labels = got
    valid = labels >= 0
    assert np.isin(labels[valid], allowed).all(), "a result outside the filter"
    assert np.isneginf(scores[~valid]).all()
    assert_same_results(got, brute_force(vectors, ids, queries, k, allowed), atol=atol)


@pytest.fixture(scope="module")
def flat_data():
    rng = np.random.default_rng(7)
    vectors, category, _ = mixture(rng, 6000, 24)
    ids = rng.choice(10**12, size=len(vectors), replace=False).astype(np.int64)
    queries = clustered(rng, 20, 24)
    return vectors, ids, category, queries


@pytest.mark.parametrize("subset_max", [0, 20_000])
def test_gpu_strategy_on_cpu_is_exact_on_flat(flat_data, rng, monkeypatch, subset_max):
    """Flat index: the over-fetch (subset_max 0) and subset methods both give the exact
    filtered top-k."""
    monkeypatch.setattr(gpu_search, "SUBSET_MAX", subset_max)
    vectors, ids, category, queries = flat_data
    index = VectorIndex.build(ids, vectors, kind="flat")
    index.use_device("cpu-no-selector")
    assert index.device == "cpu-no-selector"
    filters = [
        ids[category == 3],  # a category, ~1/8
        rng.choice(ids, 3000, replace=False),  # broad, unrelated to geometry
        rng.choice(ids, 40, replace=False),  # selective: subset whatever subset_max says
        ids[:7],  # fewer than k: padded
    ]
    for allowed in filters:
        for k in (1, 10, 25):
            got = index.search(queries, k, allowed_ids=allowed)
            check_filtered(got, vectors, ids, queries, k, allowed)
            st = index.last_filter_stats
            assert st is not None and st.subset_rows + st.overfetch_rows == len(queries)
    # Unfiltered search goes through the device too, unchanged.
    assert_same_results(index.search(queries, 10), brute_force(vectors, ids, queries, 10))


def test_gpu_strategy_paths_are_taken(flat_data, monkeypatch):
    """Force each branch: over-fetch, widening, fallback to subset; all stay exact."""
    vectors, ids, category, queries = flat_data
    index = VectorIndex.build(ids, vectors, kind="flat")
    index.use_device("cpu-no-selector")
    monkeypatch.setattr(gpu_search, "SUBSET_MAX", 0)

    broad = ids[category != 0]
    got = index.search(queries, 10, allowed_ids=broad)
    check_filtered(got, vectors, ids, queries, 10, broad)
    st = index.last_filter_stats
    assert st is not None and st.overfetch_rows == len(queries) and st.subset_rows == 0

    # A filter far from every query: the first over-fetch keeps < k, so it widens, and rows
    # still short at the device's largest k fall back to the subset method.
    far = ids[np.argsort(vectors @ queries.mean(axis=0))[:400]]
    device = SelectorBlindCpuDevice(index._search_unfiltered)
    device.max_k = 64  # make the cap reachable with 6000 vectors
    scores, labels, st = filtered_search(
        device, queries, 10, np.sort(far), ntotal=index.ntotal, gather=index.reconstruct,
        subset_max=0, oversample=0.2,
    )
    check_filtered((scores, labels), vectors, ids, queries, 10, far)
    assert st.device_searches >= 2 and st.subset_rows > 0 and st.max_k_used == 64


def test_device_never_sees_a_filter(flat_data):
    """The strategy only ever asks the device for unfiltered results, which do contain
    disallowed ids; none of them may come out."""
    vectors, ids, category, queries = flat_data
    index = VectorIndex.build(ids, vectors, kind="flat")
    seen: list[np.ndarray] = []

    class Spy(SelectorBlindCpuDevice):
        def search(self, q, k):
            out = super().search(q, k)
            seen.append(out[1])
            return out

    allowed = np.sort(ids[category == 5])
    scores, labels, st = filtered_search(
        Spy(index._search_unfiltered), queries, 10, allowed, ntotal=index.ntotal,
        gather=index.reconstruct, subset_max=0,
    )
    assert seen and any((~np.isin(s, allowed)).any() for s in seen)  # the device leaked
    assert np.isin(labels, allowed).all()  # the strategy did not
    check_filtered((scores, labels), vectors, ids, queries, 10, allowed)


@pytest.mark.parametrize("codec", ["fp32", "fp16"])
def test_gpu_strategy_on_ivf(rng, codec):
    """IVF: 100% compliance always; exact when every list is probed; and never worse than
    the CPU selector path at the same nprobe."""
    vectors, category, means = mixture(rng, 12_000, 16)
    ids = (np.arange(len(vectors)) * 5 + 11).astype(np.int64)
    queries = clustered(rng, 30, 16, means=means)
    index = VectorIndex.build(ids, vectors, kind="ivf", nlist=32, codec=codec, nprobe=4)
    atol = CODEC_ATOL[codec]
    for allowed in (ids[category == 2], rng.choice(ids, 2500, replace=False), ids[:30]):
        cpu = index.search(queries, 10, allowed_ids=allowed)
        index.use_device("cpu-no-selector")
        got = index.search(queries, 10, allowed_ids=allowed)
        index.nprobe = 32
        exhaustive = index.search(queries, 10, allowed_ids=allowed)
        index.nprobe = 4
        index.use_device("cpu")
        assert np.isin(got[1][got[1] >= 0], allowed).all()
        assert (got[1] >= 0).all()  # >= k allowed exist, so k results come back
        check_filtered(exhaustive, vectors, ids, queries, 10, allowed, atol=atol)
        want = brute_force(vectors, ids, queries, 10, allowed)[1]

        def recall(found, want=want):
            return np.mean([len(set(f) & set(w)) for f, w in zip(found, want, strict=True)])

        assert recall(got[1]) >= recall(cpu[1])


def test_device_replica_follows_mutations(flat_data):
    vectors, ids, _, queries = flat_data
    index = VectorIndex.build(ids[:5000], vectors[:5000], kind="flat")
    index.use_device("cpu-no-selector")
    index.add(ids[5000:], vectors[5000:])
    index.remove(ids[:100])
    allowed = ids[50:3000]
    check_filtered(
        index.search(queries, 10, allowed_ids=allowed),
        vectors[100:], ids[100:], queries, 10, allowed,
    )


def test_numpy_knn_and_subset_chunks(rng, make_unit_vectors):
    vectors = make_unit_vectors(rng, 1000, 8)
    ids = np.arange(1000, dtype=np.int64) * 2
    queries = make_unit_vectors(rng, 5, 8)
    s, rows = numpy_knn(queries, vectors, 7)
    assert_same_results((s, ids[rows]), brute_force(vectors, ids, queries, 7))
    allowed = ids[::3]
    got = gpu_search.subset_search(
        numpy_knn, queries, 12, allowed, lambda a: vectors[a // 2], chunk=50
    )
    assert_same_results(got, brute_force(vectors, ids, queries, 12, allowed))
    assert FilterStats().subset_rows == 0


@pytest.mark.parametrize("thin_subset_max", [0, 50_000])
def test_ivf_filter_helps_queries_short_of_candidates(rng, monkeypatch, thin_subset_max):
    """A filter unrelated to the query's neighbourhood: the probed lists hold few allowed
    vectors, so the query is scored exactly over the allowed vectors (or, for big filters,
    probes further lists); results stay in the filter and recall stays high."""
    monkeypatch.setattr(index_mod, "EXACT_FILTER_MAX", 0)
    monkeypatch.setattr(index_mod, "THIN_SUBSET_MAX", thin_subset_max)
    vectors, _, means = mixture(rng, 20_000, 16)
    ids = np.arange(len(vectors), dtype=np.int64)
    queries = clustered(rng, 40, 16, means=means)
    index = VectorIndex.build(ids, vectors, kind="ivf", nlist=64, codec="fp32", nprobe=2)
    allowed = rng.choice(ids, 400, replace=False)  # 1/50, scattered: ~6 per list
    _, got = index.search(queries, 10, allowed_ids=allowed)
    assert np.isin(got[got >= 0], allowed).all() and (got >= 0).all()
    _, want = brute_force(vectors, ids, queries, 10, allowed)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= (1.0 if thin_subset_max else 0.95), recall
    monkeypatch.setattr(index_mod, "MIN_FILTER_CANDIDATES", 0)
    monkeypatch.setattr(index_mod, "FILTER_CANDIDATES_PER_K", 0)
    index._filters.clear()  # prepared filters are cached; these constants change their use
    _, narrow = index.search(queries, 10, allowed_ids=allowed)
    narrow_recall = np.mean(
        [len(set(g[g >= 0]) & set(w)) / 10 for g, w in zip(narrow, want, strict=True)]
    )
    assert narrow_recall < recall  # without widening the same filter loses results


def test_prepared_filters_are_cached_and_dropped_on_change(rng, make_unit_vectors):
    vectors = make_unit_vectors(rng, 2000, 8)
    ids = np.arange(2000, dtype=np.int64)
    index = VectorIndex.build(ids[:1500], vectors[:1500], kind="ivf", nlist=8)
    allowed = ids[::2]
    first = index._prepare_filter(allowed)
    assert index._prepare_filter(allowed.copy()) is first  # same ids, new array: a hit
    assert index._prepare_filter(allowed[::-1].copy()) is not first  # another key
    np.testing.assert_array_equal(first.allowed, ids[:1500:2])
    index.add(ids[1500:], vectors[1500:])  # the set of present ids changed
    again = index._prepare_filter(allowed)
    assert again is not first and len(again.allowed) == 1000
    _, got = index.search(vectors[:3], 5, allowed_ids=allowed)
    assert np.isin(got, allowed).all()
    # The brute-force path keeps the gathered vectors, within the byte budget.
    np.testing.assert_array_equal(again.vectors, index.reconstruct(again.allowed))


def test_gathered_vectors_stay_within_budget(rng, make_unit_vectors, monkeypatch):
    vectors = make_unit_vectors(rng, 3000, 16)
    ids = np.arange(3000, dtype=np.int64)
    index = VectorIndex.build(ids, vectors, kind="flat")
    monkeypatch.setattr(index_mod, "FILTER_VECTOR_CACHE_BYTES", 4 * 300 * 16 * 4)
    filters = [ids[i::10][:300] for i in range(5)]  # 300 vectors each: four fit
    for allowed in filters:
        check_filtered(index.search(vectors[:4], 5, allowed_ids=allowed), vectors, ids,
                       vectors[:4], 5, allowed)
    held = [f.vectors is not None for _, f in index._filters.values()]
    assert held == [False, True, True, True, True]  # the oldest gave its vectors up
    big = ids[:400]  # over a quarter of the budget: never kept
    check_filtered(index.search(vectors[:4], 5, allowed_ids=big), vectors, ids, vectors[:4], 5, big)
    assert index._prepare_filter(big).vectors is None


def test_bitmap_and_batch_selectors_agree(rng, monkeypatch):
    monkeypatch.setattr(index_mod, "EXACT_FILTER_MAX", 0)
    vectors, category, means = mixture(rng, 8000, 16)
    queries = clustered(rng, 10, 16, means=means)
    small_ids = np.arange(len(vectors), dtype=np.int64) * 3  # bitmap-sized
    huge_ids = small_ids + 2**50  # too large for a bitmap: IDSelectorBatch
    results = []
    for ids in (small_ids, huge_ids):
        index = VectorIndex.build(ids, vectors, kind="ivf", nlist=32, nprobe=32)
        sel, _ = index_mod._selector(np.sort(ids[:10]))
        assert isinstance(sel, faiss.IDSelectorBitmap) == (ids is small_ids)
        allowed = ids[category == 1]
        got = index.search(queries, 10, allowed_ids=allowed)
        check_filtered(got, vectors, ids, queries, 10, allowed, atol=CODEC_ATOL["fp16"])
        results.append(np.searchsorted(ids, got[1]))
    np.testing.assert_array_equal(results[0], results[1])


def test_tuned_nprobe_reaches_target(rng):
    vectors, _, means = mixture(rng, 20_000, 32, centres=60)
    ids = np.arange(len(vectors), dtype=np.int64)
    index = VectorIndex.build(ids, vectors, kind="ivf", codec="fp32")
    assert 1 <= index.nprobe < index.nlist
    queries = clustered(rng, 200, 32, means=means)
    _, got = index.search(queries, 10)
    _, want = brute_force(vectors, ids, queries, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.97, (recall, index.nprobe)
    # The one below the tuned value misses the tuning target on the tuning sample.
    assert index.tune_nprobe_on(vectors, ids) == index.nprobe


def test_add_remove_keep_id_table_in_step(rng, make_unit_vectors):
    vectors = make_unit_vectors(rng, 3000, 8)
    ids = rng.choice(10**9, 3000, replace=False).astype(np.int64)
    index = VectorIndex.build(ids[:2000], vectors[:2000], kind="ivf", nlist=16)
    index.add(ids[2000:], vectors[2000:])
    index.remove(ids[::3])
    kept = np.setdiff1d(ids, ids[::3])
    np.testing.assert_array_equal(index.ids(), np.sort(kept))
    assert index.contains(kept).all() and not index.contains(ids[::3]).any()
    # The table's list numbers match Faiss's (a fresh read gives the same table).
    table = index._ids_table()
    index._table = None
    fresh = index._ids_table()
    np.testing.assert_array_equal(table.ids, fresh.ids)
    np.testing.assert_array_equal(table.lists, fresh.lists)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_gpu_device_filters_exactly(rng, kind):  # pragma: no cover - no GPU on this machine
    vectors, category, means = mixture(rng, 20_000, 32)
    ids = rng.choice(10**9, len(vectors), replace=False).astype(np.int64)
    queries = clustered(rng, 30, 32, means=means)
    index = VectorIndex.build(ids, vectors, kind=kind, codec="fp32")
    index.nprobe = index.nlist or 1
    index.use_device("gpu")
    for allowed in (ids[category == 3], rng.choice(ids, 50, replace=False)):
        check_filtered(index.search(queries, 10, allowed_ids=allowed), vectors, ids, queries,
                       10, allowed, atol=1e-4)


def test_ivf_filtered_paths_survive_torch_utils_patch(rng, monkeypatch):
    """faiss.contrib.torch_utils (pytorch-metric-learning imports it) patches search() and
    search_preassigned(); both IVF filter paths must keep working after it."""
    import faiss.contrib.torch_utils  # noqa: F401

    monkeypatch.setattr(index_mod, "EXACT_FILTER_MAX", 0)
    vectors, category, means = mixture(rng, 6000, 16)
    ids = np.arange(len(vectors), dtype=np.int64) + 100
    queries = clustered(rng, 8, 16, means=means)
    index = VectorIndex.build(ids, vectors, kind="ivf", nlist=16, nprobe=2, codec="fp32")
    broad = ids[category != 1]  # dense enough for Faiss's own search with the selector
    _, got = index.search(queries, 10, allowed_ids=broad)
    assert np.isin(got, broad).all()
    sparse = rng.choice(ids, 200, replace=False)  # coarse assignment + preassigned search
    check_filtered(
        index.search(queries, 10, allowed_ids=sparse), vectors, ids, queries, 10, sparse
    )


def test_k_beyond_the_device_limit_stays_on_cpu(flat_data):
    """Faiss GPU cannot select more than GPU_MAX_K results: larger k uses the CPU index."""
    vectors, ids, category, queries = flat_data
    index = VectorIndex.build(ids, vectors, kind="flat")
    index.use_device("cpu-no-selector")
    index._device.max_k = 8
    allowed = ids[category == 2]
    check_filtered(index.search(queries, 20, allowed_ids=allowed), vectors, ids, queries, 20,
                   allowed)
    assert index.last_filter_stats is None  # the device strategy was not used
    check_filtered(index.search(queries, 5, allowed_ids=allowed), vectors, ids, queries, 5,
                   allowed)
    assert index.last_filter_stats is not None
