"""YOLO detection networks run without ultralytics' predictor.

ultralytics' ``YOLO.predict`` is the reference: it letterboxes the image, runs the network,
applies NMS and scales the boxes back. :class:`LeanYolo` does those same steps with
ultralytics' own functions (``LetterBox``, ``non_max_suppression``, ``scale_boxes``, same
defaults) around a network run by LiteRT, OpenVINO or ONNX Runtime, and skips the rest of the
predictor (its per-call set-up, Results objects, the torch round trips).

A :class:`YoloNetwork` maps letterboxed images ``[batch, S, S, 3]`` float32 RGB in [0, 1] to raw
predictions ``[batch, 4 + classes, anchors]``: centre-x, centre-y, width, height in input pixels,
then one score per class.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ml.backends import prepare_openvino

# ultralytics' predict defaults (cfg/default.yaml), so the lean path keeps its boxes.
NMS_IOU = 0.7
MAX_DETECTIONS = 300
LETTERBOX_STRIDE = 32


@runtime_checkable
class YoloNetwork(Protocol):
    """A YOLO detection network on the CPU."""

    backend: str
    # Square input side the network was exported for; None when its shape is dynamic.
    input_size: int | None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``batch [n, S, S, 3]`` float32 RGB in [0, 1] -> ``[n, 4 + classes, anchors]``
        (xywh in input pixels, then class scores)."""
        ...


def read_yolo_metadata(weights: Path) -> dict[str, Any]:
    """ultralytics' export metadata (names, imgsz, task...) read without loading the model."""
    from ultralytics.nn.backends.base import BaseBackend

    metadata: dict[str, Any] = dict(BaseBackend.read_metadata(weights) or {})
    names = metadata.get("names")
    if isinstance(names, str):
        import ast

        metadata["names"] = ast.literal_eval(names)
    if not metadata.get("names"):
        raise ValueError(
            f"{weights}: no class names in the export's metadata (not an ultralytics export?)"
        )
    metadata["names"] = {int(k): str(v) for k, v in metadata["names"].items()}
    return metadata


def _static_square_side(shape: Sequence[Any], nhwc: bool) -> int | None:
    height, width = (shape[1], shape[2]) if nhwc else (shape[2], shape[3])
    try:
        h, w = int(height), int(width)
    except (TypeError, ValueError):
        return None
    return h if h == w and h > 0 else None


def _denormalise(pred: np.ndarray, side: int, normalised: bool) -> np.ndarray:
    # ultralytics' TFLite exports give xywh in [0, 1] (so int8 keeps score resolution); its
    # LiteRT backend multiplies them back by the input size, and so does this.
    if normalised:
        pred = pred.copy()
        pred[:, :4] *= side
    return pred


class LiteRTYolo:
    """A ``.tflite`` export through ai-edge-litert's interpreter (XNNPACK), one image per call."""

    backend = "litert"

    def __init__(self, weights: Path, *, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(str(weights), num_threads=int(threads))
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        if self._input["dtype"] != np.float32:
            raise ValueError(
                f"{weights}: full-integer input ({self._input['dtype']}) is not supported"
            )
        shape = list(self._input["shape"])
        self.nhwc = shape[-1] == 3
        self.input_size = _static_square_side(shape, self.nhwc)
        self._lock = threading.Lock()  # one interpreter: one caller at a time

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        outputs = []
        with self._lock:
            for image in batch:
                x = image[None] if self.nhwc else image.transpose(2, 0, 1)[None]
                self._interpreter.set_tensor(self._input["index"], np.ascontiguousarray(x))
                self._interpreter.invoke()
                outputs.append(np.array(self._interpreter.get_tensor(self._output["index"])))
        side = batch.shape[1]
        denormalised: list[np.ndarray] = [_denormalise(o, side, True) for o in outputs]
        return np.concatenate(denormalised)


class OpenVinoYolo:
    """A ``.tflite`` or ``.onnx`` export read directly by OpenVINO, compiled for latency."""

    backend = "openvino"

    def __init__(self, weights: Path, *, threads: int) -> None:
        prepare_openvino()
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(weights))
        shape = model.input().get_partial_shape()
        last = shape[shape.rank.get_length() - 1]
        self.nhwc = last.is_static and last.get_length() == 3
        dims = [d.get_length() if d.is_static else None for d in shape]
        self.input_size = _static_square_side(dims, self.nhwc)
        self._normalised = weights.suffix.lower() == ".tflite"
        self._compiled = core.compile_model(model, "CPU", {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": int(threads),
            "INFERENCE_PRECISION_HINT": "f32",
        })
        self._request: Any = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        self._batch1 = dims[0] == 1

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = batch if self.nhwc else batch.transpose(0, 3, 1, 2)
        chunks = [x[i : i + 1] for i in range(len(x))] if self._batch1 else [x]
        outputs = []
        with self._lock:
            for chunk in chunks:
                result = self._request.infer({0: np.ascontiguousarray(chunk, dtype=np.float32)})
                outputs.append(np.array(result[0], dtype=np.float32, copy=True))
        return _denormalise(np.concatenate(outputs), batch.shape[1], self._normalised)


class OnnxRuntimeYolo:
    """An ``.onnx`` export (``yolo export format=onnx``) through ONNX Runtime."""

    backend = "onnxruntime"

    def __init__(self, weights: Path, *, threads: int) -> None:
        if weights.suffix.lower() != ".onnx":
            raise ValueError(f"ONNX Runtime reads .onnx weights only, not {weights.name}")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(weights), options, providers=["CPUExecutionProvider"]
        )
        first = self._session.get_inputs()[0]
        self._input_name = first.name
        self.nhwc = first.shape[-1] == 3
        self.input_size = _static_square_side(first.shape, self.nhwc)
        self._batch1 = first.shape[0] == 1

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = batch if self.nhwc else batch.transpose(0, 3, 1, 2)
        chunks = [x[i : i + 1] for i in range(len(x))] if self._batch1 else [x]
        outputs = [
            self._session.run(None, {self._input_name: np.ascontiguousarray(c, np.float32)})[0]
            for c in chunks
        ]
        return np.concatenate(outputs).astype(np.float32, copy=False)


NETWORKS: dict[str, type[LiteRTYolo] | type[OpenVinoYolo] | type[OnnxRuntimeYolo]] = {
    "litert": LiteRTYolo,
    "openvino": OpenVinoYolo,
    "onnxruntime": OnnxRuntimeYolo,
}
# Weight formats each runtime reads.
FORMATS = {"litert": {".tflite"}, "openvino": {".tflite", ".onnx"}, "onnxruntime": {".onnx"}}


def open_yolo_network(backend: str, weights: Path, *, threads: int) -> YoloNetwork:
    """The network runtime named ``backend`` (a key of :data:`NETWORKS`) on ``weights``."""
    if backend not in NETWORKS:
        raise ValueError(f"no lean YOLO runtime {backend!r}; known: {sorted(NETWORKS)}")
    if weights.suffix.lower() not in FORMATS[backend]:
        raise ValueError(
            f"detector backend {backend!r} reads {sorted(FORMATS[backend])}, not {weights.name}"
        )
    return NETWORKS[backend](weights, threads=threads)


class LeanYolo:
    """Letterbox -> network -> NMS -> boxes in the original image, as ``YOLO.predict`` does.

    Args:
        network: the runtime.
        image_size: letterbox side for a network with a dynamic input (a fixed-shape export
            always gets its own size, as in ultralytics).
        min_confidence: ``conf`` of ``YOLO.predict``.
    """

    def __init__(self, network: YoloNetwork, *, image_size: int, min_confidence: float) -> None:
        from ultralytics.data.augment import LetterBox

        self.network = network
        self.side = network.input_size or image_size
        self.min_confidence = min_confidence
        self._letterbox = LetterBox((self.side, self.side), auto=False, stride=LETTERBOX_STRIDE)

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 ``[h, w, 3]`` images -> ``[n, S, S, 3]`` float32 in [0, 1]."""
        boxed = np.stack([np.asarray(self._letterbox(image=image)) for image in images])
        # Divided, not multiplied by 1/255: the same float32 values as the predictor, bit for bit
        # (int8 activations round differently on a 1-ulp difference).
        return boxed.astype(np.float32) / np.float32(255)

    def postprocess(
        self, raw: np.ndarray, shapes: Sequence[tuple[int, int]]
    ) -> list[np.ndarray]:
        """Raw ``[n, 4 + classes, anchors]`` -> per image ``[k, 6]`` (x0, y0, x1, y1, confidence,
        class) in that image's pixels, best first."""
        import torch
        from ultralytics.utils import nms, ops

        # No deadline: ultralytics stops after 2 s + 0.05 s an image and leaves the rest of
        # the batch without detections, so on a busy CPU items fell back to the full frame.
        kept = nms.non_max_suppression(
            torch.from_numpy(raw), self.min_confidence, NMS_IOU, max_det=MAX_DETECTIONS,
            max_time_img=math.inf,
        )
        out = []
        for detections, shape in zip(kept, shapes, strict=True):
            detections[:, :4] = ops.scale_boxes((self.side, self.side), detections[:, :4], shape)
            out.append(detections.numpy())
        return out

    def __call__(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """RGB uint8 images -> per image ``[k, 6]`` detections (see :meth:`postprocess`)."""
        if not images:
            return []
        raw = self.network(self.preprocess(images))
        return self.postprocess(raw, [image.shape[:2] for image in images])


__all__ = [
    "FORMATS",
    "NETWORKS",
    "LeanYolo",
    "LiteRTYolo",
    "OnnxRuntimeYolo",
    "OpenVinoYolo",
    "YoloNetwork",
    "open_yolo_network",
    "read_yolo_metadata",
]
