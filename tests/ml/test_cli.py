"""python -m ml: grocery-csv on the real dataset, evaluate end to end on tiny images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from PIL import Image

from ml.cli import build_parser, main


def test_grocery_csv(grocery_root: Path, tmp_path: Path, capsys):
    assert main(["grocery-csv", "--root", str(grocery_root), "--out", str(tmp_path)]) == 0
    assert "gallery_iconic.csv: 81 rows" in capsys.readouterr().out
    rows = {
        name: list(csv.DictReader((tmp_path / f"{name}.csv").open()))
        for name in ("gallery_iconic", "train_photos", "val_photos")
    }
    assert [len(rows[n]) for n in rows] == [81, 2640, 296]
    gallery = rows["gallery_iconic"]
    assert len({r["label"] for r in gallery}) == 81
    assert len({r["category"] for r in gallery}) == 43
    label_to_cat = {r["label"]: r["category"] for r in gallery}
    for name in ("train_photos", "val_photos"):
        assert all(label_to_cat[r["label"]] == r["category"] for r in rows[name])
    for r in gallery[:5] + rows["val_photos"][:5]:
        assert Path(r["path"]).is_file()
    first = gallery[0]
    assert (first["label"], first["category"]) == ("Golden-Delicious", "Apple")


def test_evaluate_cli(tmp_path: Path, capsys):
    colours = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}
    with open(tmp_path / "g.csv", "w") as g, open(tmp_path / "q.csv", "w") as q:
        g.write("path,label,category\n")
        q.write("path,label,category,group\n")
        for name, rgb in colours.items():
            Image.new("RGB", (64, 64), rgb).save(tmp_path / f"{name}.png")
            Image.new("RGB", (80, 60), rgb).save(tmp_path / f"{name}_q1.jpg")
            Image.new("RGB", (60, 80), rgb).save(tmp_path / f"{name}_q2.jpg")
            g.write(f"{name}.png,{name},c_{name}\n")
            q.write(f"{name}_q1.jpg,{name},c_{name},{name}\n{name}_q2.jpg,{name},c_{name},{name}\n")
    out_json = tmp_path / "out" / "m.json"
    code = main(
        [
            "evaluate",
            "--gallery", str(tmp_path / "g.csv"),
            "--queries", str(tmp_path / "q.csv"),
            "--filter-column", "category",
            "--json", str(out_json),
            "--device", "cpu",
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "R@1" in printed and "filtered (category)" in printed
    result = json.loads(out_json.read_text())
    assert result["model"] == "efficientnet_lite0-imagenet"
    assert result["unfiltered"]["n_queries"] == 3  # two photos per group
    # With the filter there is one candidate per query: it must be right.
    assert result["filtered"]["recall_at_1"] == 1.0
    assert set(result["filtered"]) == {
        "recall_at_1", "recall_at_4", "recall_at_10", "map_at_r", "n_queries"
    }  # fmt: skip


def test_parser_lists_commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"evaluate", "grocery-csv"} <= set(sub.choices)


def test_latency_cli(tmp_path: Path, capsys):
    Image.new("RGB", (120, 90), (10, 200, 30)).save(tmp_path / "x.jpg")
    assert (
        main(["latency", "--image", str(tmp_path / "x.jpg"), "--runs", "2", "--device", "cpu"]) == 0
    )
    assert "median" in capsys.readouterr().out
