"""Inference wrapper: PIL images -> L2-normalised float32 embeddings ``[n, dim]``."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ml.backends.embedding import EmbeddingRuntime
from ml.model import (
    BACKBONES,
    DEFAULT_BACKBONE,
    EmbeddingNet,
    build_model,
    is_known_backbone,
    load_checkpoint,
    preprocess,
)

logger = logging.getLogger(__name__)

_requested_threads: int | None = None


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads: `n`, else the last explicit request, else every core.

    Importing ultralytics sets ``OMP_NUM_THREADS=1`` and its device selection sets torch to
    ``cpu_count - 1`` threads, which would silently slow CPU inference, so the count is set
    explicitly after each of those.
    """
    global _requested_threads
    if n:
        _requested_threads = n
    n = _requested_threads or os.cpu_count() or 1
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class Embedder:
    """An :class:`EmbeddingNet` in eval mode on one device, embedding batches of PIL images.

    The forward pass runs in PyTorch, or, on a CPU, in an exported runtime
    (:mod:`ml.backends.embedding`) that reproduces it; the PyTorch network is kept either way.

    Attributes:
        name: model version string, stable for a given weights file (e.g.
            ``"efficientnet_lite0-imagenet"`` or ``"<checkpoint stem>-<sha256[:12]>"``); the
            float32 runtimes give the same vectors, so they share it.
        dim: embedding size.
        backend: ``"torch"`` or the exported runtime's name.
    """

    def __init__(
        self,
        model: EmbeddingNet,
        *,
        name: str,
        device: str = "auto",
        runtime: EmbeddingRuntime | None = None,
    ) -> None:
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            configure_threads()
        if runtime is not None and self.device.type != "cpu":
            raise ValueError(f"the {runtime.backend} runtime runs on the CPU, not {self.device}")
        self.model = model.to(self.device).eval()
        self.runtime = runtime
        self.backend = runtime.backend if runtime is not None else "torch"
        self.name = name
        self.dim = model.dim
        self.image_size = model.image_size

    @property
    def config(self) -> dict[str, object]:
        return dict(self.model.config)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """``images`` -> normalised ``[n, 3, image_size, image_size]`` on the CPU."""
        return preprocess(
            images,
            self.image_size,
            normalisation=self.model.normalisation,
            resize=self.model.resize_mode,
        )

    def embed_tensor(self, x: torch.Tensor) -> np.ndarray:
        """Already preprocessed ``x [n, 3, H, W]`` -> ``[n, dim]`` float32."""
        if self.runtime is not None:
            return self.runtime(x.numpy())
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else nullcontext()
        )
        if self.device.type == "cpu":  # 1.3-1.6x faster on CPU (docs/benchmarks.md)
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast:
            out = self.model(x.to(self.device, non_blocking=True))
        vectors: np.ndarray = out.float().cpu().numpy().astype(np.float32, copy=False)
        return vectors

    def embed(self, images: Sequence[Image.Image], *, batch_size: int = 32) -> np.ndarray:
        """Embed RGB images.

        Args:
            images: any sizes; each is resized with the model's evaluation preprocessing.
            batch_size: images per forward pass.

        Returns:
            ``[n, dim]`` float32, each row L2-normalised.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            out[start : start + len(chunk)] = self.embed_tensor(self.preprocess(chunk))
        return out


def _load_batch(paths: Sequence[str | Path]) -> list[Image.Image]:
    from ml.images import ImageDecodeError, load_rgb

    images = []
    for path in paths:
        try:
            images.append(load_rgb(path))
        except ImageDecodeError as exc:
            raise ImageDecodeError(f"{path}: {exc}") from exc
    return images


def embed_files(
    embedder: Embedder,
    paths: Sequence[str | Path],
    *,
    batch_size: int = 32,
    progress: bool = False,
) -> np.ndarray:
    """Decode (``ml.images.load_rgb``) and embed image files, decoding the next batch in a
    background thread while the current one runs through the network.

    Returns:
        ``[len(paths), dim]`` float32, L2-normalised.
    """
    from concurrent.futures import ThreadPoolExecutor

    out = np.empty((len(paths), embedder.dim), dtype=np.float32)
    starts = list(range(0, len(paths), batch_size))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="img", leave=False)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_load_batch, paths[0:batch_size]) if starts else None
        for n, start in enumerate(starts):
            assert pending is not None
            images = pending.result()
            if n + 1 < len(starts):
                nxt = starts[n + 1]
                pending = pool.submit(_load_batch, paths[nxt : nxt + batch_size])
            out[start : start + len(images)] = embedder.embed(images, batch_size=batch_size)
            if bar is not None:
                bar.update(len(images))
    if bar is not None:
        bar.close()
    return out


def measure_latency(
    embedder: Embedder, image: Image.Image, *, runs: int = 20, warmup: int = 3
) -> dict[str, float]:
    """Batch-1 latency in ms: median and min over ``runs`` of preprocess + forward, and of the
    forward pass alone."""
    import statistics
    import time

    for _ in range(warmup):
        embedder.embed([image])
    x = embedder.preprocess([image])
    total, forward = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        embedder.embed([image])
        total.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        embedder.embed_tensor(x)
        forward.append((time.perf_counter() - t0) * 1000)
    return {
        "embed_median_ms": statistics.median(total),
        "embed_min_ms": min(total),
        "forward_median_ms": statistics.median(forward),
        "threads": float(torch.get_num_threads()),
    }


def default_export_dir() -> Path:
    """Where exports of pretrained backbones (and of read-only checkpoints) are cached."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "skulens" / "exports"


def _export_location(
    model: str, net: EmbeddingNet, checkpoint: Path | None, source_sha256: str, export_dir: Path
) -> Path:
    """Beside the checkpoint when its folder is writable, else in ``export_dir``."""
    from ml.backends.export import export_key

    key = export_key(source_sha256, net)
    if checkpoint is not None:
        beside = checkpoint.with_name(f"{checkpoint.name}.{key}.onnx")
        if os.access(checkpoint.parent, os.W_OK):
            return beside
        return export_dir / beside.name
    return export_dir / f"{model.replace(':', '-')}-{net.image_size}.{key}.onnx"


def _pretrained_source_sha256(model: str, net: EmbeddingNet) -> str:
    """Hash of what a pretrained backbone's weights came from (its installed weights file)."""
    if model in BACKBONES:
        return file_sha256(BACKBONES[model].weights_path())
    weights = net.config.get("weights_path")
    if weights and Path(str(weights)).is_file():
        return file_sha256(str(weights))
    # timm hub weights: hash the tensors themselves.
    digest = hashlib.sha256()
    for key, tensor in sorted(net.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def exported_runtime(
    net: EmbeddingNet,
    backend: str,
    *,
    location: Path,
    key: str,
    threads: int,
) -> EmbeddingRuntime:
    """The runtime ``backend`` on the cached export at ``location`` (built when missing, stale
    or corrupt), checked against PyTorch on a probe batch; a cached export that fails the
    check is rebuilt once, a fresh one that fails raises :class:`ExportMismatchError`."""
    from ml.backends.embedding import open_embedding_runtime
    from ml.backends.export import ExportMismatchError, check_against_reference, ensure_export

    for rebuild in (False, True):
        path = ensure_export(net, location, key=key, rebuild=rebuild)
        try:
            runtime = open_embedding_runtime(backend, path, threads=threads)
            check_against_reference(net, runtime)
            return runtime
        except ExportMismatchError:
            if rebuild:
                raise
            logger.warning("embedding export %s does not reproduce PyTorch: rebuilding it", path)
        except Exception as exc:  # noqa: BLE001 - a file the runtime cannot parse is corrupt
            if rebuild:
                raise
            logger.warning("embedding export %s unreadable (%s): rebuilding it", path, exc)
    raise AssertionError("unreachable")


def load_embedder(
    model: str | None = None,
    *,
    device: str = "auto",
    backend: str = "auto",
    export_dir: str | Path | None = None,
    threads: int = 0,
) -> Embedder:
    """Build an :class:`Embedder`.

    Args:
        model: ``None`` (the default backbone), a pretrained backbone name
            (``"efficientnet_lite0"``, ``"efficientnet_lite1"``, ``"timm:<name>"``...),
            or the path of a checkpoint written by :func:`ml.model.save_checkpoint`.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        backend: ``"auto"`` (CPU: the fastest installed runtime; CUDA: PyTorch), ``"torch"``,
            ``"openvino"`` or ``"onnxruntime"`` (:data:`ml.backends.EMBED_BACKENDS`).
        export_dir: cache for exports of pretrained backbones and of checkpoints in read-only
            folders (default :func:`default_export_dir`).
        threads: CPU threads of an exported runtime (0: torch's, :func:`configure_threads`).
    """
    from ml.backends import resolve_embed_backend

    model = model or DEFAULT_BACKBONE
    path = Path(model)
    checkpoint: Path | None = None
    if path.is_file():
        net, _config = load_checkpoint(path)
        source_sha256 = file_sha256(path)
        name = f"{path.stem}-{source_sha256[:12]}"
        checkpoint = path
    elif is_known_backbone(model):
        net = build_model(model, pretrained=True)
        name = f"{model.replace(':', '-')}-imagenet"
        source_sha256 = ""
    else:
        known = ", ".join(sorted(BACKBONES))
        raise FileNotFoundError(f"{model!r} is neither a checkpoint file nor a backbone ({known})")
    resolved = resolve_embed_backend(backend, resolve_device(device).type)
    if resolved == "torch":
        return Embedder(net, name=name, device=device)
    from ml.backends.export import export_key

    net = net.cpu().eval()
    if checkpoint is None:
        source_sha256 = _pretrained_source_sha256(model, net)
    location = _export_location(
        model, net, checkpoint, source_sha256, Path(export_dir or default_export_dir())
    )
    runtime = exported_runtime(
        net, resolved, location=location, key=export_key(source_sha256, net),
        threads=threads or configure_threads(),
    )
    return Embedder(net, name=name, device="cpu", runtime=runtime)


__all__ = [
    "Embedder",
    "configure_threads",
    "default_export_dir",
    "embed_files",
    "exported_runtime",
    "file_sha256",
    "load_embedder",
    "measure_latency",
    "resolve_device",
]
