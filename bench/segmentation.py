"""Cheaper isolation than GrabCut at 192 px: cost, mask IoU and val R@1, side by side.

Every grocery val photo goes through the detector (LiteRT, the reference's boxes; COCO's
fruit and vegetable classes, as in bench/match_latency.py); each photo with a box is then
segmented by every variant, interleaved, timed, and its mask compared by IoU with the current
one (192 px, 3 iterations, the whole photo: the setting before ``ml.segment`` went to 1). R@1: the 296 val photos,
isolated by each variant exactly as the app does (detect, mask, neutral background; the full
frame when nothing is found), against the 81 iconic catalogue images isolated the same way,
embedded by pretrained EfficientNet-Lite0.

    python bench/segmentation.py --grocery ../shared/data/grocery [--json OUT] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.inference_backends import (  # noqa: E402
    GROCERY_DETECTION_CLASSES,
    SHARED_WEIGHTS,
    machine,
)
from ml.datasets import read_grocery_classes, read_grocery_split  # noqa: E402
from ml.embed import configure_threads, load_embedder  # noqa: E402
from ml.evaluate import evaluate_embeddings  # noqa: E402
from ml.images import load_rgb  # noqa: E402
from ml.segment import box_mask, grabcut_mask, isolate  # noqa: E402
from ml.types import Box  # noqa: E402
from ml.yolo import YoloDetector  # noqa: E402

# name -> grabcut_mask keyword arguments (None: no mask, the box alone).
VARIANTS: dict[str, dict | None] = {
    "192 px, 3 it, whole photo (before)": {"iterations": 3},
    "192 px, 2 it, whole photo": {"iterations": 2},
    "192 px, 1 it, whole photo (current)": {"iterations": 1},
    "192 px, 3 it, box + 15%": {"iterations": 3, "margin": 0.15},
    "192 px, 2 it, box + 15%": {"iterations": 2, "margin": 0.15},
    "192 px, 1 it, box + 15%": {"iterations": 1, "margin": 0.15},
    "160 px, 2 it, box + 15%": {"max_side": 160, "iterations": 2, "margin": 0.15},
    "128 px, 3 it, whole photo": {"max_side": 128, "iterations": 3},
    "128 px, 2 it, box + 15%": {"max_side": 128, "iterations": 2, "margin": 0.15},
    "no mask (box only)": None,
}
CURRENT = "192 px, 3 it, whole photo (before)"  # the masks the IoU column compares with


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grocery", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=SHARED_WEIGHTS)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true", help="every 6th val photo")
    args = parser.parse_args()
    configure_threads()
    val_items = read_grocery_split(args.grocery, "val")
    classes = read_grocery_classes(args.grocery)
    if args.quick:
        val_items = val_items[::6]
    detector = YoloDetector(args.weights, image_size=320, backend="litert")

    def boxes_of(paths: list[Path]) -> tuple[list, list[Box | None]]:
        images = [load_rgb(p) for p in paths]
        found = detector.detect_all(images, classes=GROCERY_DETECTION_CLASSES)
        return images, [d.box if d else None for d in found]

    val_images, val_boxes = boxes_of([p for p, _, _ in val_items])
    iconic_images, iconic_boxes = boxes_of([c.iconic_path for c in classes])
    detected = [i for i, b in enumerate(val_boxes) if b is not None]
    info = machine()
    print(f"# segmentation, {info.get('model', '?')} ({info['cpus']} CPU), "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {len(detected)} of {len(val_images)} val "
          f"photos and {sum(b is not None for b in iconic_boxes)} of {len(iconic_images)} iconic "
          "images with a detector box")

    def segment(name: str, image, box: Box) -> np.ndarray:
        options = VARIANTS[name]
        return box_mask(image.size, box) if options is None else grabcut_mask(image, box, **options)

    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    masks: dict[str, list[np.ndarray]] = {name: [] for name in VARIANTS}
    for i in detected:
        for name in VARIANTS:  # interleaved: load hits every variant alike
            started = time.perf_counter()
            mask = segment(name, val_images[i], val_boxes[i])
            times[name].append((time.perf_counter() - started) * 1000)
            masks[name].append(mask)

    embedder = load_embedder("efficientnet_lite0", device="cpu")
    val_labels = np.array([label for _, label, _ in val_items])
    iconic_labels = np.array([c.class_id for c in classes])

    def isolated(name: str, images: list, boxes: list[Box | None]) -> list:
        crops = []
        for image, box in zip(images, boxes, strict=True):
            if box is None:
                crops.append(image)
            else:
                options = VARIANTS[name]
                mask = None if options is None else segment(name, image, box)
                crops.append(isolate(image, box, mask))
        return crops

    rows = {}
    for name in VARIANTS:
        queries = embedder.embed(isolated(name, val_images, val_boxes))
        gallery = embedder.embed(isolated(name, iconic_images, iconic_boxes))
        report = evaluate_embeddings(gallery, iconic_labels, queries, val_labels)
        ious = [mask_iou(a, b) for a, b in zip(masks[name], masks[CURRENT], strict=True)]
        rows[name] = {
            "median_ms": statistics.median(times[name]),
            "p90_ms": float(np.percentile(times[name], 90)),
            "median_iou": statistics.median(ious),
            "p10_iou": float(np.percentile(ious, 10)),
            "recall_at_1": report.recall_at_1,
            "recall_at_4": report.recall_at_4,
        }
    print("| variant | median ms | p90 ms | median IoU with 3 it (before) | p10 IoU | val R@1 "
          "| val R@4 |")
    print("|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} | {row['median_iou']:.3f} "
              f"| {row['p10_iou']:.3f} | {row['recall_at_1']:.4f} | {row['recall_at_4']:.4f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
