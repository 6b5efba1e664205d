"""Trainer on a tiny synthetic catalogue: learns, repeats with a seed, writes a loadable model."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ml.train import TrainConfig, Trainer, freeze_early_blocks, lr_lambda
from ml.train.data import read_training_csv, split_holdout

COLOURS = [(220, 40, 40), (40, 180, 60), (40, 60, 220), (230, 200, 30)]
SHAPES = ["box", "disc", "box", "disc"]


def _draw(label: int, variant: int, catalogue: bool) -> Image.Image:
    rng = np.random.default_rng(label * 100 + variant)
    bg = (255, 255, 255) if catalogue else tuple(int(c) for c in rng.integers(60, 200, 3))
    img = Image.new("RGB", (48, 48), bg)
    d = ImageDraw.Draw(img)
    off = 0 if catalogue else int(rng.integers(-6, 7))
    box = (12 + off, 10 + off, 36 + off, 38 + off)
    if SHAPES[label] == "box":
        d.rectangle(box, fill=COLOURS[label])
    else:
        d.ellipse(box, fill=COLOURS[label])
    return img


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    rows = []
    for label in range(4):
        for v in range(7):
            catalogue = v == 0
            path = root / f"l{label}_{v}.png"
            _draw(label, v, catalogue).save(path)
            rows.append(
                {
                    "path": path.name,
                    "label": f"sku{label}",
                    "category": SHAPES[label],
                    "brand": "acme" if label < 2 else "",
                    "role": "catalogue" if catalogue else "photo",
                    "negatives": "sku1" if (label == 0 and v == 3) else "",
                }
            )
    out = root / "train.csv"
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def _config(data: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        data=str(data),
        out=str(out),
        holdout=0.2,
        embedding_dim=16,
        image_size=32,
        epochs=3,
        classes_per_batch=4,
        samples_per_class=3,
        batches_per_epoch=4,
        lr_backbone=1e-3,
        lr_head=1e-2,
        warmup_epochs=0.5,
        augment={"crop": 1.0, "lighting": 0.3},
        threads=2,
        progress=False,
        patience=10,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_lr_schedule_warmup_then_cosine() -> None:
    f = lr_lambda(total_steps=110, warmup_steps=10, min_ratio=0.1)
    assert [f(s) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)


def test_holdout_is_per_label_and_keeps_catalogue(tiny_csv: Path) -> None:
    items = read_training_csv(tiny_csv)
    train, held = split_holdout(items, 0.3, seed=0)
    assert all(it.role == "photo" for it in held)
    assert {it.label for it in held} == {f"sku{i}" for i in range(4)}
    assert sum(it.role == "catalogue" for it in train) == 4
    assert len(held) == 4 * round(0.3 * 6)
    assert not {it.path for it in train} & {it.path for it in held}


@pytest.mark.slow
def test_training_reduces_loss_repeats_and_saves(tiny_csv: Path, tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        cfg = _config(tiny_csv, tmp_path / name, epochs=2, batches_per_epoch=3)
        cfg.multitask, cfg.level_weight = True, 0.5
        trainer = Trainer(cfg)
        runs.append(trainer.fit())
    a, b = runs
    epochs_a = [r for r in a if r["epoch"] > 0]
    assert [r["loss"] for r in epochs_a] == [r["loss"] for r in b if r["epoch"] > 0]
    print([r["loss"] for r in epochs_a])
    assert epochs_a[-1]["loss"] < epochs_a[0]["loss"]
    assert {"metric", "level", "attr", "val_r1", "img_per_s"} <= set(epochs_a[0])

    from ml.embed import load_embedder
    from ml.model import load_checkpoint

    model, config = load_checkpoint(tmp_path / "a" / "model.pt")
    assert model.dim == 16 and config["image_size"] == 32
    assert config["train"]["loss"] == "multi_similarity"
    assert config["train"]["attributes"] == ["category", "brand"]
    emb = load_embedder(str(tmp_path / "a" / "model.pt"), device="cpu")
    vecs = emb.embed([_draw(0, 1, False), _draw(2, 1, False)])
    assert vecs.shape == (2, 16)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    history = json.loads((tmp_path / "a" / "history.json").read_text())
    assert "best_epoch" in history[-1]


def test_frozen_bn_statistics_do_not_move(tiny_csv: Path, tmp_path: Path) -> None:
    trainer = Trainer(_config(tiny_csv, tmp_path, epochs=1, batches_per_epoch=2, holdout=0.0))
    bn = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    trainer.fit()
    assert torch.equal(before, bn.running_mean)


def test_freeze_early_blocks_stops_gradients(tiny_csv: Path, tmp_path: Path) -> None:
    trainer = Trainer(_config(tiny_csv, tmp_path, epochs=1, freeze_blocks=0))
    n = freeze_early_blocks(trainer.model, 3)
    net = trainer.model.backbone.net
    assert n > 0
    assert not any(p.requires_grad for p in net._blocks[2].parameters())
    assert all(p.requires_grad for p in net._blocks[3].parameters())


def test_cli_forwards_to_trainer(tiny_csv: Path, tmp_path: Path) -> None:
    from ml.cli import main

    out = tmp_path / "cli"
    rc = main(
        [
            "train",
            "--data",
            str(tiny_csv),
            "--out",
            str(out),
            "--loss",
            "triplet_batchhard",
            "--epochs",
            "1",
            "--batches-per-epoch",
            "1",
            "--image-size",
            "32",
            "--dim",
            "8",
            "--classes-per-batch",
            "2",
            "--samples-per-class",
            "2",
            "--holdout",
            "0",
            "--augment",
            "background=0.5",
            "--no-progress",
            "--threads",
            "2",
        ]
    )
    assert rc == 0
    assert (out / "model.pt").is_file()


def test_lite_split_matches_full_model(tiny_csv: Path, tmp_path: Path) -> None:
    from ml.train.cache import LiteSplit

    trainer = Trainer(_config(tiny_csv, tmp_path, epochs=1))
    model = trainer.model.eval()
    split = LiteSplit(model, 11)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(split.suffix(split.prefix(x)), model(x), atol=1e-5)


@pytest.mark.slow
def test_cached_trunk_training_reuses_its_cache(tiny_csv: Path, tmp_path: Path) -> None:
    histories, banks = [], []
    for name in ("a", "b"):
        cfg = _config(tiny_csv, tmp_path / name, epochs=2, batches_per_epoch=3)
        cfg.cached_views, cfg.catalogue_views, cfg.freeze_blocks = 2, 3, 11
        cfg.trunk_cache = str(tmp_path / "trunk.pt")
        trainer = Trainer(cfg)
        histories.append(trainer.fit())
        banks.append(trainer.bank)
    assert banks[0] is not None and banks[1] is not None
    assert banks[0].features.shape[0] == 4 * 3 + sum(  # catalogue x 3 + train photos x 2
        2 for it in Trainer(_config(tiny_csv, tmp_path / "c")).train_items if it.role == "photo"
    )
    assert banks[1].seconds == 0.0  # loaded, not recomputed
    assert torch.equal(banks[0].features, banks[1].features)
    losses = [[r["loss"] for r in h if r["epoch"] > 0] for h in histories]
    assert losses[0] == losses[1]
    assert all(math.isfinite(v) for v in losses[0])
    # the saved network is the ordinary full model
    from ml.model import load_checkpoint

    model, _ = load_checkpoint(tmp_path / "a" / "model.pt")
    assert model.dim == 16


def test_cause_weights_reach_the_config() -> None:
    import argparse

    from ml.train.config import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--data",
            "x.csv",
            "--out",
            "o",
            "--cause-weights",
            '{"occlusion": 4, "wrong crop": 2, "catalogue gap": 7}',
            "--augment",
            "lighting=0.9",
        ]
    )
    cfg = config_from_args(args)
    assert cfg.augment["occlusion"] == pytest.approx(0.8)
    assert cfg.augment["lighting"] == 0.9  # explicit --augment wins
    assert cfg.crop_min_scale < 0.45


@pytest.mark.slow
def test_init_from_starts_at_the_checkpoint_and_refuses_a_mismatch(
    tiny_csv: Path, tmp_path: Path
) -> None:
    first = Trainer(_config(tiny_csv, tmp_path / "first", epochs=1, batches_per_epoch=2))
    first.fit()
    checkpoint = tmp_path / "first" / "model.pt"
    from ml.model import load_checkpoint

    saved, _ = load_checkpoint(checkpoint)
    again = Trainer(_config(tiny_csv, tmp_path / "again", init_from=str(checkpoint)))
    for name, value in saved.state_dict().items():
        assert torch.equal(again.model.state_dict()[name].cpu(), value), name
    fresh = Trainer(_config(tiny_csv, tmp_path / "fresh"))
    head = next(k for k in saved.state_dict() if k.startswith("head"))
    assert not torch.equal(fresh.model.state_dict()[head].cpu(), saved.state_dict()[head])
    with pytest.raises(ValueError, match="do not match"):
        Trainer(_config(tiny_csv, tmp_path / "other", embedding_dim=8, init_from=str(checkpoint)))


@pytest.mark.slow
def test_select_last_keeps_the_final_epoch_without_early_stopping(
    tiny_csv: Path, tmp_path: Path
) -> None:
    trainer = Trainer(_config(tiny_csv, tmp_path, epochs=3, patience=1, select="last"))
    history = trainer.fit()
    summary = json.loads((tmp_path / "history.json").read_text())[-1]
    assert [row["epoch"] for row in history if row["epoch"] > 0] == [1, 2, 3]
    assert summary["kept_epoch"] == 3
    assert 1 <= summary["best_epoch"] <= 3

    from ml.model import load_checkpoint

    _, config = load_checkpoint(tmp_path / "model.pt")
    assert config["train"]["select"] == "last"
    assert torch.load(tmp_path / "model.pt", weights_only=False)["metrics"]["epoch"] == 3


@pytest.mark.slow
def test_warm_start_uses_a_fitting_checkpoint_and_skips_one_that_does_not(
    tiny_csv: Path, tmp_path: Path
) -> None:
    first = Trainer(_config(tiny_csv, tmp_path / "first", epochs=1, batches_per_epoch=2))
    first.fit()
    checkpoint = tmp_path / "first" / "model.pt"
    from ml.model import load_checkpoint

    saved, _ = load_checkpoint(checkpoint)
    warm = Trainer(_config(tiny_csv, tmp_path / "warm", warm_start=str(checkpoint)))
    assert warm.warm_started_from == str(checkpoint)
    for name, value in saved.state_dict().items():
        assert torch.equal(warm.model.state_dict()[name].cpu(), value), name
    # Another embedding size or input size: no error, the pretrained backbone instead.
    for other in ({"embedding_dim": 8}, {"image_size": 72}):
        cold = Trainer(_config(tiny_csv, tmp_path / "cold", warm_start=str(checkpoint), **other))
        assert cold.warm_started_from is None
    missing = Trainer(_config(tiny_csv, tmp_path / "m", warm_start=str(tmp_path / "none.pt")))
    assert missing.warm_started_from is None
    warm.fit()
    _, config = load_checkpoint(tmp_path / "warm" / "model.pt")
    assert config["train"]["warm_started_from"] == str(checkpoint)


def test_vae_head_trains_end_to_end_and_refuses_cached_mode(tiny_csv: Path, tmp_path: Path) -> None:
    trainer = Trainer(_config(tiny_csv, tmp_path, epochs=1, batches_per_epoch=2, vae=True))
    history = trainer.fit()
    row = next(r for r in history if r["epoch"] == 1)
    assert {"vae", "recon", "kl"} <= set(row) and row["recon"] > 0
    with pytest.raises(ValueError, match="end-to-end"):
        Trainer(_config(tiny_csv, tmp_path / "c", vae=True, cached_views=1, freeze_blocks=11))


@pytest.mark.slow
def test_a_time_budget_shortens_the_schedule_so_the_cosine_still_ends(
    tiny_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each optimiser step costs one second of a fake clock: ten planned epochs of four steps
    against a 12 s budget become three, and the learning rate still reaches its floor."""
    clock = [0.0]
    monkeypatch.setattr("ml.train.trainer.time.perf_counter", lambda: clock[0])

    def tick(event: dict) -> bool:
        if event["event"] == "step":
            clock[0] += 1.0
        return True

    cfg = _config(tiny_csv, tmp_path, epochs=10, batches_per_epoch=4, max_minutes=0.2,
                  select="last", min_lr_ratio=0.05)
    trainer = Trainer(cfg)
    history = trainer.fit(on_step=tick)
    assert [row["epoch"] for row in history if row["epoch"] > 0] == [1, 2, 3]
    factor = trainer.scheduler.get_last_lr()[0] / trainer.scheduler.base_lrs[0]
    assert factor == pytest.approx(0.05)
    # Without a budget the same run keeps its ten epochs.
    clock[0] = 0.0
    full = Trainer(_config(tiny_csv, tmp_path / "full", epochs=10, batches_per_epoch=1,
                           select="last"))
    assert len([row for row in full.fit(on_step=tick) if row["epoch"] > 0]) == 10


def test_the_command_line_defaults_are_the_measured_recipe() -> None:
    import argparse

    from ml.train.config import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--data", "d.csv", "--out", "o"]))
    assert (cfg.image_size, cfg.cached_views, cfg.freeze_blocks) == (None, 0, 4)
    assert (cfg.holdout, cfg.select, cfg.epochs) == (0.0, "last", 24)
    base = ["--data", "d", "--out", "o"]
    cached = config_from_args(parser.parse_args([*base, "--cached-views", "4"]))
    assert cached.freeze_blocks == 11
    chosen = config_from_args(parser.parse_args([*base, "--freeze-blocks", "0"]))
    assert chosen.freeze_blocks == 0


@pytest.mark.slow
def test_a_budget_gives_epochs_back_when_the_pace_picks_up(
    tiny_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first epoch's steps cost 3 s (a busy machine), later ones 1 s: the schedule first
    shrinks to 2 epochs of a 30 s budget, then grows to the 5 that fit, ending at the floor."""
    clock = [0.0]
    monkeypatch.setattr("ml.train.trainer.time.perf_counter", lambda: clock[0])

    def tick(event: dict) -> bool:
        if event["event"] == "step":
            clock[0] += 3.0 if event["epoch"] == 1 else 1.0
        return True

    cfg = _config(tiny_csv, tmp_path, epochs=10, batches_per_epoch=4, max_minutes=0.5,
                  select="last", min_lr_ratio=0.05)
    trainer = Trainer(cfg)
    history = trainer.fit(on_step=tick)
    assert [row["epoch"] for row in history if row["epoch"] > 0] == [1, 2, 3, 4, 5]
    factor = trainer.scheduler.get_last_lr()[0] / trainer.scheduler.base_lrs[0]
    assert factor == pytest.approx(0.05)


def test_the_multitask_heads_add_their_terms_and_are_kept_for_reranking(tmp_path: Path) -> None:
    """ml.train.heads: level triplets and attribute heads add their weighted terms; the
    attribute heads train at the head's learning rate and are what the checkpoint keeps for
    re-ranking (read back by ml.rerank.attributes). Without them nothing is added."""
    from ml.model import build_model, save_checkpoint
    from ml.rerank.attributes import AttributePredictor
    from ml.train.heads import AuxiliaryHeads

    cpu = torch.device("cpu")
    plain = AuxiliaryHeads(TrainConfig(data="d", out="o"), 8, ["colour"], {"colour": ["r"]}, cpu)
    assert plain.param_groups(0.01) == [] and plain.checkpoint_extra() == {}
    cfg = TrainConfig(data="d", out="o", multitask=True, level_weight=0.5, attr_weight=0.25)
    aux = AuxiliaryHeads(cfg, 8, ["colour"], {"colour": ["red", "blue"]}, cpu)
    assert [(g["name"], g["lr"]) for g in aux.param_groups(0.01)] == [("attr", 0.01)]
    noise = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    emb = torch.nn.functional.normalize(noise)
    labels, attrs = torch.tensor([0, 0, 1, 1]), torch.tensor([[0], [0], [1], [1]])
    terms: dict[str, float] = {}
    loss = aux.add_terms(torch.tensor(1.0), emb, labels, attrs, torch.zeros(4, 3, 8, 8), terms)
    assert set(terms) == {"level", "attr"} and terms["attr"] > 0
    assert float(loss.detach()) == pytest.approx(1.0 + 0.5 * terms["level"] + 0.25 * terms["attr"])
    assert float(plain.add_terms(torch.tensor(1.0), emb, labels, attrs, emb, {})) == 1.0

    path = tmp_path / "m.pt"
    model = build_model("efficientnet_lite0", embedding_dim=8, pretrained=False)
    save_checkpoint(path, model, {}, {}, extra=aux.checkpoint_extra())
    predictor = AttributePredictor.from_checkpoint(path)
    assert predictor is not None and predictor.values["colour"] == ("red", "blue")
