"""CPU time (``time.thread_time``) of the re-ranking stage per query at K = 8.

On a machine shared with other jobs, wall-clock latency measures the other jobs; the CPU time
one thread spends is what a quiet core would take (the stage is single-threaded: OpenCV and
BLAS at one thread, onnxruntime at one intra-op thread). Run after ``bench/rerank.py`` has
cached the cold reference store and the model's vectors:

    python bench/rerank_cpu.py --model-tag e1-epoch4-4418506f70bc [--queries 40] \
        [--ocr-max-lines 8 4] [--ocr-rec-width 320 48]   # OCR settings, interleaved per photo
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.datasets import read_image_csv  # noqa: E402
from ml.fuse import rank_skus  # noqa: E402
from ml.images import load_rgb  # noqa: E402
from ml.index import VectorIndex  # noqa: E402
from ml.rerank import spatial  # noqa: E402
from ml.rerank.evaluate import catalogue_from_gallery  # noqa: E402
from ml.rerank.ocr import MAX_LINES, REC_MIN_WIDTH, RapidOcrEngine  # noqa: E402
from ml.rerank.stage import RerankConfig, Reranker  # noqa: E402
from ml.rerank.store import ReferenceStore  # noqa: E402
from ml.rerank.types import RerankQuery  # noqa: E402


def cpu_ms(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.thread_time()
    out = fn()
    return out, (time.thread_time() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=Path("var/bench/rerank"))
    parser.add_argument("--model-tag", required=True, help="the vectors-<tag>.npz to use")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--ocr-max-lines", type=int, nargs="+", default=[MAX_LINES])
    parser.add_argument("--ocr-rec-width", type=int, nargs="+", default=[REC_MIN_WIDTH])
    args = parser.parse_args()
    cv2.setNumThreads(1)
    gallery = read_image_csv(args.cache / "csv" / "gallery_iconic.csv")
    queries = read_image_csv(args.cache / "csv" / "val_photos.csv")
    vectors = np.load(args.cache / f"vectors-{args.model_tag}.npz")
    gallery_vectors, query_vectors = vectors["warm"][: len(gallery)], vectors["val"]
    label_id = {label: i for i, label in enumerate(sorted({r.label for r in gallery}))}
    catalogue = catalogue_from_gallery(gallery, label_id)
    references: dict[int, list[int]] = {}
    for i, rec in enumerate(gallery):
        references.setdefault(label_id[rec.label], []).append(i)
    store = ReferenceStore.load(args.cache / "store-iconic")
    engines = {(lines, width): RapidOcrEngine(max_lines=lines, rec_min_width=width)
               for lines in args.ocr_max_lines for width in args.ocr_rec_width}
    index = VectorIndex.build(np.arange(len(gallery)), gallery_vectors, kind="flat")
    ref_to_sku = {i: label_id[r.label] for i, r in enumerate(gallery)}
    reranker = Reranker(RerankConfig().without("text"), store=store)
    step = max(1, len(queries) // args.queries)
    spent: dict[str, list[float]] = {"extract": [], "verify_k8": []}
    spent |= {f"ocr {lines} lines, width {width}": [] for lines, width in engines}
    with threadpool_limits(1):
        for row in range(0, len(queries), step)[: args.queries]:
            image = load_rgb(queries[row].path)
            cosines, ids = index.search(query_vectors[row : row + 1], len(gallery))
            visual = rank_skus(cosines, ids, ref_to_sku, top_k=10)
            features, ms = cpu_ms(lambda image=image: spatial.extract(image))
            spent["extract"].append(ms)
            query = RerankQuery([image], cosines, ids)
            _, ms = cpu_ms(lambda query=query, visual=visual, features=features: reranker.rerank(
                query, visual, catalogue=catalogue, sku_references=references,
                ref_to_sku=ref_to_sku, query_features=[features]))
            spent["verify_k8"].append(ms)
            for (lines, width), ocr in engines.items():  # interleaved: same machine state
                _, ms = cpu_ms(lambda image=image, ocr=ocr: ocr.read(image))
                spent[f"ocr {lines} lines, width {width}"].append(ms)
    for kind, values in spent.items():
        print(f"{kind:<28} CPU ms per query: p50 {np.percentile(values, 50):6.1f}   "
              f"p95 {np.percentile(values, 95):6.1f}   (n={len(values)})")
    total = np.array(spent["extract"]) + np.array(spent["verify_k8"])
    print(f"spatial (extract + verify K=8): p50 {np.percentile(total, 50):.1f}   "
          f"p95 {np.percentile(total, 95):.1f}")


if __name__ == "__main__":
    main()
