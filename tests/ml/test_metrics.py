"""Evaluation metrics against pytorch-metric-learning's AccuracyCalculator and hand loops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from ml.datasets import ImageRecord, read_image_csv, write_image_csv
from ml.evaluate import (
    average_precision_at_r,
    evaluate,
    evaluate_embeddings,
    group_queries,
)


def pml(query, query_labels, gallery, gallery_labels) -> dict[str, float]:
    calc = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"), k="max_bin_count"
    )
    return calc.get_accuracy(
        torch.from_numpy(query),
        torch.from_numpy(query_labels),
        torch.from_numpy(gallery),
        torch.from_numpy(gallery_labels),
        ref_includes_query=False,
    )


def labelled_data(rng, make_unit_vectors, n_labels=15, n_gallery=120, n_queries=80, dim=16):
    centres = make_unit_vectors(rng, n_labels, dim)
    # Every label appears in the gallery, with uneven counts (R differs per label).
    gallery_labels = np.concatenate(
        [np.arange(n_labels), rng.integers(0, n_labels, n_gallery - n_labels)]
    )
    query_labels = rng.integers(0, n_labels, n_queries)

    def noisy(labels):
        x = centres[labels] + 0.9 * rng.standard_normal((len(labels), dim)).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return noisy(gallery_labels), gallery_labels, noisy(query_labels), query_labels


def test_average_precision_hand_cases():
    assert average_precision_at_r(np.array([True, False, True]), 2) == pytest.approx(0.5)
    assert average_precision_at_r(np.array([True, True]), 2) == 1.0
    assert average_precision_at_r(np.array([False, True, True]), 3) == pytest.approx(
        (1 / 2 + 2 / 3) / 3
    )
    assert average_precision_at_r(np.array([True]), 3) == pytest.approx(1 / 3)  # short ranking
    assert average_precision_at_r(np.array([True]), 0) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_pytorch_metric_learning(seed, make_unit_vectors):
    rng = np.random.default_rng(seed)
    g, gl, q, ql = labelled_data(rng, make_unit_vectors)
    report = evaluate_embeddings(g, gl, q, ql)
    want = pml(q, ql, g, gl)
    assert report.n_queries == len(q)
    assert report.recall_at_1 == pytest.approx(want["precision_at_1"], abs=1e-9)
    assert report.map_at_r == pytest.approx(want["mean_average_precision_at_r"], abs=1e-6)


def hand_recall(g, gl, q, ql, ks=(1, 4, 10)):
    """Top-K distinct labels by best gallery similarity."""
    hits = np.zeros(len(ks))
    for vec, label in zip(q, ql, strict=True):
        sims = g @ vec
        best: dict[int, float] = {}
        for s, lab in zip(sims.tolist(), gl.tolist(), strict=True):
            best[lab] = max(best.get(lab, -9.0), s)
        ranked = sorted(best, key=lambda lab: (-best[lab], lab))
        hits += [label in ranked[:k] for k in ks]
    return hits / len(q)


def test_recall_at_k_matches_hand_loop(rng, make_unit_vectors):
    g, gl, q, ql = labelled_data(rng, make_unit_vectors)
    report = evaluate_embeddings(g, gl, q, ql)
    want = hand_recall(g, gl, q, ql)
    got = [report.recall_at_1, report.recall_at_4, report.recall_at_10]
    np.testing.assert_allclose(got, want)
    assert got[0] <= got[1] <= got[2]


def test_filtered_metrics_equal_per_category_subsets(rng, make_unit_vectors):
    g, gl, q, ql = labelled_data(rng, make_unit_vectors)
    category = lambda label: int(label) % 3  # noqa: E731 - labels nest in categories
    g_cat = np.array([category(x) for x in gl])
    q_cat = np.array([category(x) for x in ql])
    allowed = [np.flatnonzero(g_cat == c) for c in q_cat]
    report = evaluate_embeddings(g, gl, q, ql, allowed=allowed)
    p1 = mapr = 0.0
    recall = np.zeros(3)
    for c in range(3):
        qm, gm = q_cat == c, g_cat == c
        want = pml(q[qm], ql[qm], g[gm], gl[gm])
        p1 += want["precision_at_1"] * qm.sum()
        mapr += want["mean_average_precision_at_r"] * qm.sum()
        recall += hand_recall(g[gm], gl[gm], q[qm], ql[qm]) * qm.sum()
    assert report.recall_at_1 == pytest.approx(p1 / len(q))
    assert report.map_at_r == pytest.approx(mapr / len(q), abs=1e-6)
    np.testing.assert_allclose(
        [report.recall_at_1, report.recall_at_4, report.recall_at_10], recall / len(q)
    )


def test_multi_photo_query_uses_best_photo(rng, make_unit_vectors):
    g, gl, q, ql = labelled_data(rng, make_unit_vectors, n_queries=40)
    order = np.argsort(ql, kind="stable")
    q, ql = q[order], ql[order]
    groups = [[i, i + 1] for i in range(0, 40, 2) if ql[i] == ql[i + 1]]
    report = evaluate_embeddings(g, gl, q, ql, groups, strategy="best")
    hits = 0
    for rows in groups:
        sims = (q[rows] @ g.T).max(axis=0)  # best over photos, per gallery item
        best: dict[int, float] = {}
        for s, lab in zip(sims.tolist(), gl.tolist(), strict=True):
            best[lab] = max(best.get(lab, -9.0), s)
        hits += min(best, key=lambda lab: (-best[lab], lab)) == ql[rows[0]]
    assert report.n_queries == len(groups)
    assert report.recall_at_1 == pytest.approx(hits / len(groups))


def rec(label: str, group: str | None = None) -> ImageRecord:
    return ImageRecord(Path(f"/x/{label}.jpg"), label, group, {})


def test_group_queries():
    rows = [rec("a", "g1"), rec("b"), rec("a", "g1"), rec("b"), rec("b"), rec("c")]
    assert group_queries(rows) == [[0, 2], [1], [3], [4], [5]]
    assert group_queries(rows, group_size=2) == [[0, 2], [1, 3], [4], [5]]
    with pytest.raises(ValueError, match="mixes labels"):
        group_queries([rec("a", "g"), rec("b", "g")])


def test_csv_roundtrip_relative_paths(tmp_path: Path):
    (tmp_path / "imgs").mkdir()
    write_image_csv(
        tmp_path / "q.csv",
        [
            {"path": "imgs/a.jpg", "label": "A", "category": "bags", "group": "1"},
            {"path": "/abs/b.jpg", "label": "B", "category": "", "brand": "X"},
        ],
        ("path", "label", "category", "brand", "group"),
    )
    a, b = read_image_csv(tmp_path / "q.csv")
    assert a.path == tmp_path / "imgs" / "a.jpg" and a.group == "1" and a.category == "bags"
    assert b.path == Path("/abs/b.jpg") and b.group is None and b.category is None
    assert b.get("brand") == "X" and b.get("label") == "B"
    (tmp_path / "bad.csv").write_text("file,label\nx.jpg,A\n")
    with pytest.raises(ValueError, match="missing column"):
        read_image_csv(tmp_path / "bad.csv")


class ColourEmbedder:
    """Embeds an image as its mean colour (unit length): a stand-in for the network."""

    name = "colour"
    dim = 3

    def embed(self, images, *, batch_size: int = 32) -> np.ndarray:
        x = np.stack([np.asarray(im, np.float32).mean(axis=(0, 1)) + 1.0 for im in images])
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_evaluate_images_and_filter(tmp_path: Path):
    from PIL import Image

    colours = {"red": (250, 10, 10), "green": (10, 250, 10), "pink": (250, 120, 120)}
    rows_g, rows_q = [], []
    for name, rgb in colours.items():
        Image.new("RGB", (16, 16), rgb).save(tmp_path / f"g_{name}.png")
        Image.new("RGB", (16, 16), tuple(max(0, c - 20) for c in rgb)).save(
            tmp_path / f"q_{name}.jpg"
        )
        cat = "warm" if name != "green" else "cool"
        rows_g.append({"path": f"g_{name}.png", "label": name, "category": cat})
        rows_q.append({"path": f"q_{name}.jpg", "label": name, "category": cat})
    write_image_csv(tmp_path / "g.csv", rows_g, ("path", "label", "category"))
    write_image_csv(tmp_path / "q.csv", rows_q, ("path", "label", "category"))
    result = evaluate(
        read_image_csv(tmp_path / "g.csv"),
        read_image_csv(tmp_path / "q.csv"),
        ColourEmbedder(),
        filter_column="category",
    )
    assert result.unfiltered.n_queries == 3
    assert result.unfiltered.recall_at_1 == 1.0 and result.filtered is not None
    assert result.filtered.recall_at_10 == 1.0
    out = result.to_json()
    assert set(out["unfiltered"]) == {
        "recall_at_1",
        "recall_at_4",
        "recall_at_10",
        "map_at_r",
        "n_queries",
    }
    assert out["model"] == "colour" and "seconds" in out and "filtered" in out
    json.dumps(out)
