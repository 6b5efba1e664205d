"""The worker's overlap of isolation and embedding (ml.retrieval.overlapped, Retriever)."""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from ml.index import VectorIndex
from ml.retrieval import Isolator, Query, Retriever, lookup_from, overlapped
from ml.yolo import Detection
from tests.ml.test_fusion import FakeEmbedder


def test_overlapped_runs_the_next_first_stage_during_the_current_second_stage():
    started: list[threading.Event] = [threading.Event() for _ in range(4)]
    order: list[str] = []

    def first(i: int) -> int:
        started[i].set()
        order.append(f"first {i}")
        return i * 10

    def second(x: int) -> int:
        i = x // 10
        if i + 1 < len(started):
            # Sequential code would deadlock here: the next item's first stage must be running.
            assert started[i + 1].wait(timeout=10), f"first({i + 1}) did not overlap second({i})"
        order.append(f"second {i}")
        return x + 1

    assert overlapped(range(4), first, second) == [1, 11, 21, 31]
    assert order.index("first 1") < order.index("second 0")
    assert overlapped([], first, second) == [] and overlapped([0], first, second) == [1]


class LabelledBoxes:
    """Boxes the left half of each photo as the first wanted class (or "apple")."""

    name = "left-half"

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.alone: list[bool] = []

    def detect_all(self, images, *, classes=(), alone=False):
        from ml.types import Box

        self.calls.append(len(images))
        self.alone.append(alone)
        label = classes[0] if classes else "apple"
        return [Detection(Box(0, 0, im.width / 2, im.height), label, 0.8) for im in images]


def test_overlapped_retrieval_gives_the_same_results_as_one_stage_at_a_time(
    rng, make_unit_vectors
):
    table = make_unit_vectors(rng, 256, 16)
    refs = make_unit_vectors(rng, 50, 16)
    ref_ids = np.arange(50, dtype=np.int64)
    index = VectorIndex.build(ref_ids, refs)
    queries = [
        Query([Image.new("RGB", (40, 30), (c, 0, 0)) for c in colours], detection_classes=classes)
        for colours, classes in (
            ((3, 9), ("banana",)), ((17,), ()), ((40, 41, 42), ("banana",)), ((77,), ("carrot",)),
        )
    ]
    results = {}
    for overlap in (0, 1, 2):
        detector = LabelledBoxes()
        retriever = Retriever(
            embedder=FakeEmbedder(table), index=index,
            sku_of=lookup_from({i: i % 7 for i in range(50)}),
            isolator=Isolator(detector, segmentation="none"), overlap_photos=overlap,
        )
        results[overlap] = retriever.retrieve(queries, top_k=4)
        assert sum(detector.calls) == 7
        if overlap == 1:
            assert detector.calls == [1] * 7
    for overlap in (1, 2):
        for alone, piped in zip(results[0], results[overlap], strict=True):
            assert piped.candidates == alone.candidates
            assert [(i.box, i.label, i.source) for i in piped.isolations] == [
                (i.box, i.label, i.source) for i in alone.isolations
            ]
            assert set(piped.timings_ms) == {"detect", "segment", "embed", "search", "fuse"}
    # Each query's photos keep their classes: the carrot query's box says carrot.
    assert [i.label for i in results[1][3].isolations] == ["carrot"]


def test_a_lone_step_is_detected_alone_and_overlapped_steps_are_not(rng, make_unit_vectors):
    """With the overlap on, a detection shares the cores with the previous step's embedding,
    unless it is the only step (one photo): then nothing runs beside it."""
    table = make_unit_vectors(rng, 256, 16)
    index = VectorIndex.build(np.arange(20, dtype=np.int64), make_unit_vectors(rng, 20, 16))
    photo = Image.new("RGB", (40, 30), (5, 0, 0))
    for overlap, photos, expected in ((2, 1, [True]), (2, 2, [True]), (1, 2, [False, False]),
                                      (2, 3, [False, False]), (0, 3, [True])):
        detector = LabelledBoxes()
        retriever = Retriever(
            embedder=FakeEmbedder(table), index=index,
            sku_of=lookup_from({i: i for i in range(20)}),
            isolator=Isolator(detector, segmentation="none"), overlap_photos=overlap,
        )
        retriever.retrieve([Query([photo] * photos)], top_k=3)
        assert detector.alone == expected, (overlap, photos)
