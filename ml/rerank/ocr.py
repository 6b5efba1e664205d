"""Text on the item: OCR of the query crop with RapidOCR's PP-OCRv4 ONNX models.

``rapidocr-onnxruntime`` ships the detection and recognition models inside its wheel
(Apache-2.0), so nothing is downloaded at run time. Its pipeline is called in parts
(detection, then recognition of the largest lines only) so that one crop costs a bounded
amount of time: on a cluttered package the full pipeline reads 15+ lines and takes 4x longer
for no extra evidence.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from ml.rerank.types import OcrWord

# The crop is read at this longer side (queries are 256-512 px crops; text smaller than this
# resolution shows is not legible to the recogniser either); catalogue images at index time
# at REFERENCE_OCR_SIDE.
OCR_SIDE = 320
REFERENCE_OCR_SIDE = 480
# Recognise at most this many text lines per crop, the largest first.
MAX_LINES = 8
# The recogniser pads every batch of lines to at least this width (px at its 48-px height);
# RapidOCR's 320 pads a short word ~3x, a narrower floor pads each batch to its widest line.
REC_MIN_WIDTH = 320
MIN_CONFIDENCE = 0.5
MIN_WORD_CHARS = 3


class OcrUnavailable(RuntimeError):
    """The OCR package or its models are not installed."""


@runtime_checkable
class OcrEngine(Protocol):
    """Reads words on an image."""

    name: str

    def read(self, image: Image.Image) -> list[OcrWord]:
        """Words with their line's box in pixels of ``image``, best-effort order."""
        ...


class RapidOcrEngine:
    """PP-OCRv4 (detection + recognition, no angle classifier) through onnxruntime.

    Args:
        side: the crop's longer side is resized to this before detection.
        max_lines: recognise only the largest ``max_lines`` detected lines.
        threads: onnxruntime intra-op threads (1 keeps a worker's other stages responsive).
        rec_min_width: the recogniser's padded width floor (see :data:`REC_MIN_WIDTH`).
    """

    name = "rapidocr-ppocrv4"

    def __init__(self, *, side: int = OCR_SIDE, max_lines: int = MAX_LINES, threads: int = 1,
                 rec_min_width: int = REC_MIN_WIDTH):
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise OcrUnavailable(f"rapidocr-onnxruntime is not installed: {exc}") from exc
        self.side = side
        self.max_lines = max_lines
        self._lock = threading.Lock()  # onnxruntime sessions are shared; one read at a time
        try:
            self._engine: Any = RapidOCR(
                det_limit_side_len=side, det_limit_type="max", intra_op_num_threads=threads,
                inter_op_num_threads=1, use_cls=False,
            )
        except Exception as exc:  # noqa: BLE001 - missing or unreadable model files
            raise OcrUnavailable(f"RapidOCR could not load its models: {exc}") from exc
        channels, height, _width = self._engine.text_rec.rec_image_shape[:3]
        self._engine.text_rec.rec_image_shape = [channels, height, max(height, rec_min_width)]

    def read(self, image: Image.Image) -> list[OcrWord]:
        rgb = image.convert("RGB")
        # Up as well as down: the detector misses text on small crops (a 198-px catalogue
        # carton reads nothing as it is and its brand and product at 320 px).
        scale = self.side / max(rgb.size)
        work = rgb if abs(scale - 1.0) < 1e-3 else rgb.resize(
            (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
            Image.Resampling.BILINEAR,
        )
        pixels = np.ascontiguousarray(np.asarray(work)[..., ::-1])  # the models expect BGR
        with self._lock:
            boxes, _elapsed = self._engine.text_det(pixels)
            if boxes is None or len(boxes) == 0:
                return []
            boxes = sorted(boxes, key=_area, reverse=True)[: self.max_lines]
            crops = self._engine.get_crop_img_list(pixels, [np.asarray(b, np.float32)
                                                            for b in boxes])
            recognised, _elapsed = self._engine.text_rec(crops)
        words: list[OcrWord] = []
        for box, (text, confidence, *_rest) in zip(boxes, recognised, strict=True):
            if float(confidence) < MIN_CONFIDENCE:
                continue
            points = np.asarray(box, dtype=np.float64) / scale
            line_box = (float(points[:, 0].min()), float(points[:, 1].min()),
                        float(points[:, 0].max()), float(points[:, 1].max()))
            for token in str(text).split():
                if sum(ch.isalnum() for ch in token) >= MIN_WORD_CHARS:
                    words.append(OcrWord(token, float(confidence), line_box))
        return words


def _area(box: Any) -> float:
    points = np.asarray(box, dtype=np.float64).reshape(-1, 2)
    x, y = points[:, 0], points[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def read_all(engine: OcrEngine, images: Sequence[Image.Image]) -> tuple[list[OcrWord], float]:
    """Words of every image (``query_index`` set to the image's position) and the ms spent."""
    started = time.perf_counter()
    words: list[OcrWord] = []
    for i, image in enumerate(images):
        for word in engine.read(image):
            words.append(OcrWord(word.text, word.confidence, word.box, i))
    return words, (time.perf_counter() - started) * 1000


_engines: dict[str, RapidOcrEngine] = {}
_engines_lock = threading.Lock()


def default_engine(kind: str = "query") -> RapidOcrEngine:
    """One shared :class:`RapidOcrEngine` per process and kind (loading one takes ~0.3 s):
    ``"query"`` reads crops at :data:`OCR_SIDE` and :data:`MAX_LINES` lines; ``"reference"``
    reads catalogue images at index time, larger and more lines (time matters less there).

    Raises:
        OcrUnavailable: rapidocr-onnxruntime or its models are missing.
    """
    with _engines_lock:
        if kind not in _engines:
            if kind == "query":
                _engines[kind] = RapidOcrEngine()
            elif kind == "reference":
                _engines[kind] = RapidOcrEngine(side=REFERENCE_OCR_SIDE, max_lines=2 * MAX_LINES)
            else:
                raise ValueError(f"unknown OCR engine kind {kind!r}")
        return _engines[kind]


__all__ = [
    "MAX_LINES",
    "OCR_SIDE",
    "REFERENCE_OCR_SIDE",
    "OcrEngine",
    "OcrUnavailable",
    "RapidOcrEngine",
    "default_engine",
    "read_all",
]
