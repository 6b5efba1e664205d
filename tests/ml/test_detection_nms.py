"""The lean detector's NMS keeps every image's detections however slow the machine is."""

from __future__ import annotations

import itertools

import numpy as np

from ml.backends.detection import LeanYolo


class _FixedSizeNetwork:
    input_size = 64

    def __call__(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - not called
        raise AssertionError


def _raw(batch: int) -> np.ndarray:
    """One confident box of class 26 (handbag) per image, [batch, 4 + 80, anchors]."""
    raw = np.zeros((batch, 84, 10), np.float32)
    raw[:, :4, 0] = [32, 32, 20, 20]  # centre x, centre y, width, height
    raw[:, 4 + 26, 0] = 0.9
    return raw


def test_nms_on_a_slow_machine_keeps_the_whole_batch(monkeypatch) -> None:
    from ultralytics.utils import nms

    clock = itertools.count(0.0, 5.0)  # every image seems to take five seconds
    monkeypatch.setattr(nms.time, "time", lambda: next(clock))
    yolo = LeanYolo(_FixedSizeNetwork(), image_size=64, min_confidence=0.25)
    kept = yolo.postprocess(_raw(8), [(64, 64)] * 8)
    assert [len(k) for k in kept] == [1] * 8
    assert all(int(k[0, 5]) == 26 for k in kept)
