"""Inference runtimes behind :class:`ml.embed.Embedder` and :class:`ml.yolo.YoloDetector`.

PyTorch stays the reference and the training/CUDA path; on a CPU the same networks run
faster through ONNX Runtime or OpenVINO (docs/benchmarks.md, "Inference runtimes"). Each
runtime is chosen by name; ``"auto"`` picks the first installed of the CPU preferences below,
and PyTorch (or ultralytics) on CUDA.

* Embedding: ``torch`` (reference), ``openvino``, ``onnxruntime``. The two exported runtimes
  read an ONNX file that :mod:`ml.backends.export` rebuilds from each checkpoint (or pretrained
  backbone) and caches beside it, keyed by the source's hash.
* Detection: ``ultralytics`` (reference: ``YOLO.predict``, which runs ``.tflite`` weights through
  LiteRT), ``litert`` (the same interpreter without ultralytics' predictor), ``openvino`` (reads
  ``.tflite`` and ``.onnx`` directly), ``onnxruntime`` (``.onnx`` weights only).

Runtimes are imported late, so ``ml`` imports without them; :func:`runtime_missing` says why
one cannot be used.
"""

from __future__ import annotations

import importlib.util
import os

EMBED_BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
DETECTOR_BACKENDS = ("auto", "ultralytics", "litert", "openvino", "onnxruntime")
# The CPU defaults first (docs/benchmarks.md, "Inference runtimes"). Embedding: ONNX Runtime,
# which kept its speed when the cores were contended (OpenVINO was ~25% faster on a quieter
# machine but collapsed under load, like torch). Detection: LiteRT without ultralytics'
# predictor, the reference's own numbers (for .onnx: ONNX Runtime, the reference's runtime);
# OpenVINO runs the dynamic-range int8 TFLite with float activations and picks another box
# on 13% of the val photos.
EMBED_CPU_PREFERENCE = ("onnxruntime", "openvino", "torch")
DETECTOR_CPU_PREFERENCE = ("litert", "onnxruntime", "openvino", "ultralytics")

_MODULES = {
    "torch": "torch",
    "openvino": "openvino",
    "onnxruntime": "onnxruntime",
    "litert": "ai_edge_litert",
    "ultralytics": "ultralytics",
}


def runtime_missing(backend: str) -> str | None:
    """None when ``backend``'s runtime is importable, else a sentence saying what is missing."""
    module = _MODULES.get(backend)
    if module is None:
        raise ValueError(f"unknown runtime {backend!r}; known: {sorted(_MODULES)}")
    if importlib.util.find_spec(module) is None:
        pip_name = {"ai_edge_litert": "ai-edge-litert"}.get(module, module)
        return f"runtime {backend!r} is not installed (pip install {pip_name})"
    return None


def prepare_openvino() -> None:
    """Call before the first ``import openvino``.

    oneTBB dlopens its hwloc binding with RTLD_DEEPBIND, so that library frees with glibc what
    the preloaded jemalloc (scripts/env.sh) allocated, and the process aborts
    (openvinotoolkit/openvino#29025). TBB_ENABLE_SANITIZERS=1 makes oneTBB load it without
    deep binding.
    """
    os.environ.setdefault("TBB_ENABLE_SANITIZERS", "1")


def resolve_embed_backend(backend: str, device_type: str) -> str:
    """The embedding runtime for ``backend`` (a name of :data:`EMBED_BACKENDS`) on a device.

    ``auto``: PyTorch on CUDA; on CPU the first installed of :data:`EMBED_CPU_PREFERENCE`.
    An explicit exported runtime on CUDA is refused (it would silently run on the CPU).
    """
    if backend not in EMBED_BACKENDS:
        raise ValueError(f"embedding backend must be one of {EMBED_BACKENDS}, got {backend!r}")
    if backend == "auto":
        if device_type != "cpu":
            return "torch"
        return next(b for b in EMBED_CPU_PREFERENCE if runtime_missing(b) is None)
    if backend != "torch" and device_type != "cpu":
        raise ValueError(
            f"embedding backend {backend!r} runs on the CPU only, device is {device_type}"
        )
    missing = runtime_missing(backend)
    if missing:
        raise RuntimeError(missing)
    return backend


__all__ = [
    "DETECTOR_BACKENDS",
    "DETECTOR_CPU_PREFERENCE",
    "EMBED_BACKENDS",
    "EMBED_CPU_PREFERENCE",
    "prepare_openvino",
    "resolve_embed_backend",
    "runtime_missing",
]
