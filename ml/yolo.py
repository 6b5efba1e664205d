"""Item detection with ultralytics YOLO (`.pt`, `.onnx` or `.tflite` weights).

Small COCO models confuse handbags, backpacks and suitcases with each other, so a category
names a *set* of target classes and any of them counts as the item. With internet the default
weights (`yolov8n.pt`) are downloaded by ultralytics itself; offline, point `weights` at a
local file such as `yolov8n_int8.tflite`.

The network runs through ultralytics' predictor (``backend="ultralytics"``, the reference;
`.tflite` goes through ai-edge-litert) or, for exported detection models, through a lean path
with the same pre- and post-processing around LiteRT, OpenVINO or ONNX Runtime
(:mod:`ml.backends.detection`). ``"auto"`` takes the fastest that reads the weights.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from ml.backends import DETECTOR_BACKENDS, DETECTOR_CPU_PREFERENCE, runtime_missing
from ml.embed import configure_threads
from ml.types import Box

if TYPE_CHECKING:
    from ml.backends.detection import LeanYolo

DEFAULT_WEIGHTS = "yolov8n.pt"
# COCO classes a bag can be detected as.
BAG_CLASSES = frozenset({"backpack", "handbag", "suitcase"})


@dataclass(frozen=True)
class Detection:
    box: Box
    label: str
    confidence: float
    # [height, width] bool, from a segmentation model (`-seg` weights); None for detect models.
    mask: np.ndarray | None = None


def resolve_detector_backend(backend: str, weights: str | Path, device: str = "cpu") -> str:
    """The runtime for ``backend`` (:data:`ml.backends.DETECTOR_BACKENDS`) and ``weights``.

    ``auto`` picks ultralytics for PyTorch weights, segmentation models and CUDA, else the
    first installed runtime of :data:`ml.backends.DETECTOR_CPU_PREFERENCE` that reads the file.
    """
    from ml.backends.detection import FORMATS

    if backend not in DETECTOR_BACKENDS:
        raise ValueError(f"detector backend must be one of {DETECTOR_BACKENDS}, got {backend!r}")
    suffix = Path(str(weights)).suffix.lower()
    lean_possible = "-seg" not in Path(str(weights)).stem and device == "cpu"
    if backend == "auto":
        if not lean_possible:
            return "ultralytics"
        for candidate in DETECTOR_CPU_PREFERENCE:
            readable = candidate == "ultralytics" or suffix in FORMATS[candidate]
            if readable and runtime_missing(candidate) is None:
                return candidate
        return "ultralytics"
    missing = runtime_missing(backend)
    if missing:
        raise RuntimeError(missing)
    if backend != "ultralytics":
        if not lean_possible:
            raise ValueError(f"detector backend {backend!r} runs detection models on the CPU only")
        if suffix not in FORMATS[backend]:
            raise ValueError(f"detector backend {backend!r} reads {sorted(FORMATS[backend])}, "
                             f"not {Path(str(weights)).name}")
    return backend


def polygon_mask(polygons: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Rasterise polygons ([k, 2] pixel coordinates each) into a [height, width] bool mask."""
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        if len(polygon) >= 3:
            draw.polygon([(float(x), float(y)) for x, y in polygon], fill=255)
    return np.asarray(canvas) > 0


class YoloDetector:
    """Best box per image among the target classes; None when nothing qualifies.

    Args:
        weights: ultralytics weights or export.
        backend: a name of :data:`ml.backends.DETECTOR_BACKENDS` (see the module docstring).
        image_size: letterbox side; a fixed-shape export (such as the 640-px TFLite) always
            runs at its own size, with every backend, as ultralytics does.
        threads: CPU threads of the lean runtimes (0: torch's count, ``configure_threads``).
        alone_threads: threads for a call made ``alone`` (nothing else running), when more than
            ``threads``: a second copy of the runtime, opened at the first such call.
    """

    def __init__(
        self,
        weights: str | Path = DEFAULT_WEIGHTS,
        *,
        image_size: int = 640,
        min_confidence: float = 0.15,
        min_area_share: float = 0.05,
        device: str = "cpu",
        backend: str = "ultralytics",
        threads: int = 0,
        alone_threads: int = 0,
    ) -> None:
        self.backend = resolve_detector_backend(backend, weights, device)
        self.image_size = image_size
        self.min_confidence = min_confidence
        # An item photographed for appraisal fills a fair part of the frame; tiny boxes are
        # parts (a handle, a logo) and segment unstably.
        self.min_area_share = min_area_share
        self.device = device
        self._lean: LeanYolo | None = None
        self._lean_alone: LeanYolo | None = None
        self._open_alone: Callable[[], LeanYolo] | None = None
        self._opening = threading.Lock()
        if self.backend != "ultralytics":
            from ml.backends.detection import LeanYolo, open_yolo_network, read_yolo_metadata

            path = Path(weights)
            if not path.exists():
                raise FileNotFoundError(f"detector weights not found: {weights}")
            metadata = read_yolo_metadata(path)
            if metadata.get("task", "detect") != "detect":
                task = metadata["task"]
                raise ValueError(f"{path.name}: a {task} model; use the ultralytics backend")
            threads = threads or configure_threads()
            network = open_yolo_network(self.backend, path, threads=threads)
            self._lean = LeanYolo(network, image_size=image_size, min_confidence=min_confidence)
            # Opened at the first call made alone; the same model, so the same boxes.
            self._open_alone = (
                (lambda: LeanYolo(open_yolo_network(self.backend, path, threads=alone_threads),
                                  image_size=image_size, min_confidence=min_confidence))
                if alone_threads > threads else None
            )
            self.names: dict[int, str] = metadata["names"]
            self.task = "detect"
            # LiteRT is the reference's own interpreter (same numbers); another runtime's boxes
            # differ slightly, so vectors computed from its crops carry its name.
            suffix = "" if self.backend == "litert" else f"+{self.backend}"
            self.name = f"yolo:{path.name}{suffix}"
            return
        threads_env = os.environ.get("OMP_NUM_THREADS")
        # The package exports YOLO lazily (__getattr__), which its stubs do not declare.
        from ultralytics import YOLO  # type: ignore[attr-defined]  # late: sets OMP_NUM_THREADS=1
        from ultralytics.utils import patches

        # ultralytics replaces Image.open with one that pip-installs pi-heif at run time when a
        # file is not an image; ml.images registers pillow-heif itself, so put Pillow's back.
        Image.open = patches._image_open

        if threads_env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = threads_env
        weights = str(weights)
        if weights != DEFAULT_WEIGHTS and not Path(weights).exists():
            raise FileNotFoundError(f"detector weights not found: {weights}")
        # A `-seg` model also outlines the item; it then replaces GrabCut.
        self.task = "segment" if "-seg" in Path(weights).stem else "detect"
        self.model = YOLO(weights, task=self.task)
        configure_threads()  # ultralytics' device selection sets torch to cpu_count - 1 threads
        self.names = dict(self.model.names)
        self.name = f"yolo:{Path(weights).name}"

    def detect_all(
        self, images: Sequence[Image.Image], *, classes: Collection[str] = (),
        alone: bool = False,
    ) -> list[Detection | None]:
        """Best detection per image whose label is in `classes` (any class when empty); with
        ``alone``, on ``alone_threads`` (see ``ItemDetector.detect_all``)."""
        if not images:
            return []
        wanted = set(classes)
        unknown = wanted - set(self.names.values())
        if unknown:
            raise ValueError(f"unknown detector classes: {sorted(unknown)}")
        if self._lean is not None:
            lean = self._lean
            if alone and self._open_alone is not None:
                with self._opening:  # two callers at once open one copy, not two
                    if self._lean_alone is None:
                        self._lean_alone = self._open_alone()
                lean = self._lean_alone
            found_raw = lean([np.asarray(image.convert("RGB")) for image in images])
            return [
                self._best(image, rows[:, :4].tolist(), rows[:, 5].tolist(), rows[:, 4].tolist(),
                           wanted)[0]
                for image, rows in zip(images, found_raw, strict=True)
            ]
        results = self.model.predict(
            list(images), imgsz=self.image_size, conf=self.min_confidence,
            device=self.device, verbose=False,
        )
        configure_threads()  # the first predict selects the device again
        found: list[Detection | None] = []
        for image, result in zip(images, results, strict=True):
            boxes = getattr(result, "boxes", None)
            if boxes is None:  # not a detection model's result
                found.append(None)
                continue
            best, best_index = self._best(
                image, boxes.xyxy.tolist(), boxes.cls.tolist(), boxes.conf.tolist(), wanted
            )
            masks = getattr(result, "masks", None)
            if best is not None and masks is not None:
                outline = polygon_mask([masks.xy[best_index]], image.size)
                best = Detection(best.box, best.label, best.confidence, outline)
            found.append(best)
        return found

    def _best(
        self,
        image: Image.Image,
        xyxy: Sequence[Sequence[float]],
        classes: Sequence[float],
        confidences: Sequence[float],
        wanted: Collection[str],
    ) -> tuple[Detection | None, int]:
        """The most confident large-enough box of a wanted class, and its index."""
        best: Detection | None = None
        best_index = -1
        min_area = self.min_area_share * image.width * image.height
        for index, (box, cls, conf) in enumerate(zip(xyxy, classes, confidences, strict=True)):
            label = self.names[int(cls)]
            if wanted and label not in wanted:
                continue
            if (box[2] - box[0]) * (box[3] - box[1]) < min_area:
                continue
            if best is None or conf > best.confidence:
                best, best_index = Detection(Box(*box), label, float(conf)), index
        return best, best_index
