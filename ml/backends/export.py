"""The embedding network exported to ONNX, rebuilt from its source and cached beside it.

An export is keyed by what produced it: the checkpoint's (or pretrained weights file's)
SHA-256, the input size, the export recipe and the torch version. Beside ``model.onnx`` lies
``model.onnx.json`` with that key and the ONNX file's own SHA-256; an export whose key differs
(stale) or whose bytes do not hash to the recorded value (corrupt, half written) is rebuilt,
never loaded. Loading then checks the runtime against PyTorch on a probe batch
(:func:`check_against_reference`), so even a file that hashes right is not trusted blindly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml.model import EmbeddingNet

logger = logging.getLogger(__name__)

# Bump when the export itself changes (opset, names, axes): every cached export is rebuilt.
EXPORT_RECIPE = 1
OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
# Exported float32 runtimes agree with PyTorch to ~1e-7; anything below this is a broken export.
PROBE_MIN_COSINE = 0.9999


class ExportMismatchError(RuntimeError):
    """An exported network does not reproduce the PyTorch reference."""


def export_key(source_sha256: str, net: EmbeddingNet) -> str:
    """Hex key naming one export of ``net`` built from the file with ``source_sha256``."""
    recipe = {
        "source": source_sha256,
        "config": {k: net.config.get(k) for k in sorted(net.config) if k != "metrics"},
        "recipe": EXPORT_RECIPE,
        "opset": OPSET,
        "torch": torch.__version__,
    }
    blob = json.dumps(recipe, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.with_name(path.name + ".json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def cached_export_is_valid(path: Path, key: str) -> bool:
    """True when ``path`` exists, its sidecar names ``key`` and its bytes hash as recorded."""
    meta = _read_sidecar(path)
    if meta is None or meta.get("key") != key or not path.is_file():
        return False
    return bool(meta.get("sha256") == _sha256(path))


def probe_batch(net: EmbeddingNet, n: int = 2, seed: int = 0) -> np.ndarray:
    """A fixed ``[n, 3, S, S]`` float32 input in the network's normalised range."""
    rng = np.random.default_rng(seed)
    size = net.image_size
    return rng.uniform(-1.0, 1.0, size=(n, 3, size, size)).astype(np.float32)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_onnx(net: EmbeddingNet, path: Path, *, key: str) -> Path:
    """Export ``net`` (eval mode, CPU, float32) to ``path`` with a dynamic batch axis.

    The graph maps ``images [batch, 3, S, S]`` (normalised) to ``embeddings [batch, dim]``
    (L2-normalised), exactly :meth:`EmbeddingNet.forward`. Written atomically with its sidecar.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = net.training
    net = net.eval()
    example = torch.from_numpy(probe_batch(net, n=1))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".onnx", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # The exporter warns about every strided Slice it cannot constant-fold (the
            # backbone's "same" padding); the probe check below is what tells a good export.
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(
                net.cpu(),
                (example,),
                str(tmp),
                dynamo=False,  # the TorchScript exporter: no onnxscript dependency, one file
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=OPSET,
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        net.train(was_training)
    meta = {"key": key, "sha256": _sha256(path), "dim": net.dim, "image_size": net.image_size}
    _write_atomically(path.with_name(path.name + ".json"), json.dumps(meta, indent=1).encode())
    logger.info("exported embedding network to %s", path)
    return path


def ensure_export(net: EmbeddingNet, path: Path, *, key: str, rebuild: bool = False) -> Path:
    """``path`` holding a valid export of ``net`` under ``key``: the cached one, or a new one."""
    if not rebuild and cached_export_is_valid(path, key):
        return path
    if path.exists():
        logger.warning("embedding export %s is stale or corrupt: rebuilding it", path)
    return export_onnx(net, path, key=key)


def check_against_reference(
    net: EmbeddingNet, run: Any, *, min_cosine: float = PROBE_MIN_COSINE
) -> float:
    """Run the probe batch through PyTorch and through ``run`` ([n,3,S,S] -> [n,dim]).

    Returns:
        The lowest cosine between the two outputs.

    Raises:
        ExportMismatchError: a shape differs or a cosine is below ``min_cosine``.
    """
    x = probe_batch(net)
    with torch.inference_mode():
        expected = net.cpu().eval()(torch.from_numpy(x)).numpy()
    got = np.asarray(run(x), dtype=np.float32)
    if got.shape != expected.shape:
        raise ExportMismatchError(f"exported output {got.shape}, PyTorch {expected.shape}")
    cosine = float(np.min(np.sum(got * expected, axis=1)))
    if not cosine >= min_cosine:  # also catches NaN
        raise ExportMismatchError(f"exported network differs from PyTorch: cosine {cosine:.6f}")
    return cosine


__all__ = [
    "EXPORT_RECIPE",
    "ExportMismatchError",
    "cached_export_is_valid",
    "check_against_reference",
    "ensure_export",
    "export_key",
    "export_onnx",
    "probe_batch",
]
