"""Embedding-network runtimes: a preprocessed batch in, L2-normalised embeddings out.

Every runtime maps ``x [batch, 3, S, S]`` float32 (already resized and normalised by
:func:`ml.model.preprocess`) to ``[batch, dim]`` float32 with unit rows, exactly as
:meth:`ml.model.EmbeddingNet.forward` does; :mod:`ml.backends.export` proves it on a probe
batch each time a runtime is built.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ml.backends import prepare_openvino
from ml.backends.export import INPUT_NAME


@runtime_checkable
class EmbeddingRuntime(Protocol):
    """A compiled embedding network on the CPU."""

    backend: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x [batch, 3, S, S]`` float32 -> ``[batch, dim]`` float32, unit rows."""
        ...


class OpenVinoEmbedding:
    """OpenVINO's CPU plugin on the exported ONNX graph.

    Compiled for latency (one stream using ``threads`` cores) with a dynamic batch axis.
    """

    backend = "openvino"

    def __init__(self, onnx_path: Path, *, threads: int) -> None:
        prepare_openvino()
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(onnx_path))
        self._compiled = core.compile_model(model, "CPU", {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": int(threads),
            # f32 on every CPU: bf16/f16 hints on AMX/AVX512-FP16 parts would change the vectors.
            "INFERENCE_PRECISION_HINT": "f32",
        })
        self._request: Any = self._compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: one caller at a time

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            out = self._request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
            return np.array(out[0], dtype=np.float32, copy=True)  # the request reuses its buffer


class OnnxRuntimeEmbedding:
    """ONNX Runtime's CPU execution provider on the exported ONNX graph."""

    backend = "onnxruntime"

    def __init__(self, onnx_path: Path, *, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self._session.run(None, {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(out[0], dtype=np.float32)


RUNTIMES: dict[str, type[OpenVinoEmbedding] | type[OnnxRuntimeEmbedding]] = {
    "openvino": OpenVinoEmbedding,
    "onnxruntime": OnnxRuntimeEmbedding,
}


def open_embedding_runtime(backend: str, onnx_path: Path, *, threads: int) -> EmbeddingRuntime:
    """The exported runtime named ``backend`` (a key of :data:`RUNTIMES`) on ``onnx_path``."""
    try:
        runtime = RUNTIMES[backend]
    except KeyError:
        known = sorted(RUNTIMES)
        raise ValueError(f"no exported embedding runtime {backend!r}; known: {known}") from None
    return runtime(onnx_path, threads=threads)


__all__ = ["RUNTIMES", "EmbeddingRuntime", "OnnxRuntimeEmbedding", "OpenVinoEmbedding",
           "open_embedding_runtime"]
