"""The GPU figures of issue 15 in one short run, for a session that has a CUDA device.

1. bf16 embedding images/s (EfficientNet-Lite0, the Embedder's CUDA path: bf16 autocast,
   float32 normalisation), batches of 64 / 128 / 256 grocery val photos, against float32;
2. detection on CUDA (ultralytics' predictor on `.pt` weights: pass --detector-pt; the
   shared int8 TFLite runs on the CPU only, so without `.pt` weights this step says so);
3. the worker's photos/s at batch 32 (bench/match_latency.py --backlog, SKULENS_MATCH_BATCH
   1 against 32) and upload to candidates for one photo (bench/match_latency.py --runs 30),
   both with the grocery workload, every stage running, the embedding network on CUDA.

Each step prints as it finishes; about 5 minutes in all.

    python bench/gpu.py --grocery ../shared/data/grocery [--detector-pt yolov8n.pt] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


def embedding_rates(grocery: Path, quick: bool) -> None:

    from ml.datasets import read_grocery_split
    from ml.embed import load_embedder
    from ml.images import load_rgb

    embedder = load_embedder("efficientnet_lite0", device="cuda", backend="torch")
    paths = [p for p, _, _ in read_grocery_split(grocery, "val")][:256]
    x = embedder.preprocess([load_rgb(p) for p in paths])
    for batch in (64, 128, 256):
        xb = x[:batch].to("cuda")
        for precision in ("bf16", "fp32"):
            for _ in range(3):
                _embed_once(embedder, xb, precision)
            times = []
            for _ in range(5 if quick else 20):
                started = time.perf_counter()
                _embed_once(embedder, xb, precision)
                times.append(time.perf_counter() - started)
            print(f"  embedding {precision} batch {batch}: "
                  f"{batch / statistics.median(times):,.0f} images/s", flush=True)


def _embed_once(embedder, x, precision: str) -> None:
    import torch

    if precision == "bf16":
        embedder.embed_tensor(x)  # the Embedder's CUDA path: bf16 autocast
    else:
        with torch.inference_mode():
            embedder.model(x)
    torch.cuda.synchronize()


def detection_rate(grocery: Path, weights: Path | None) -> None:
    if weights is None or not weights.is_file():
        print("  detection on CUDA: not measured, no .pt YOLO weights (--detector-pt); the "
              "int8 TFLite runs on the CPU only", flush=True)
        return
    from ml.datasets import read_grocery_split
    from ml.images import load_rgb
    from ml.yolo import YoloDetector

    detector = YoloDetector(weights, image_size=640, device="cuda", backend="ultralytics")
    images = [load_rgb(p) for p, _, _ in read_grocery_split(grocery, "val")][:64]
    detector.detect_all(images[:4])
    for batch in (1, 32):
        started = time.perf_counter()
        for start in range(0, len(images), batch):
            detector.detect_all(images[start : start + batch])
        seconds = time.perf_counter() - started
        print(f"  detection on CUDA, batch {batch}: {len(images) / seconds:,.1f} images/s "
              f"({seconds / len(images) * 1000:.1f} ms/image)", flush=True)


def worker_figures(grocery: Path, quick: bool) -> None:
    env = dict(os.environ, SKULENS_TORCH_DEVICE="cuda")
    bench = [sys.executable, str(ROOT / "bench" / "match_latency.py"), "--grocery", str(grocery)]
    backlog = ["--backlog", "64", "--runs", "1" if quick else "3", "--batches", "1,32"]
    latency = ["--runs", "10" if quick else "30"]
    for extra in (backlog, latency):
        subprocess.run(bench + extra, env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grocery", type=Path, required=True)
    parser.add_argument("--detector-pt", type=Path, help="ultralytics .pt weights")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("bench/gpu.py: no CUDA device here (torch.cuda.is_available() is False)")
    print(f"# GPU figures, {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"{os.cpu_count()} CPU", flush=True)
    embedding_rates(args.grocery, args.quick)
    detection_rate(args.grocery, args.detector_pt)
    worker_figures(args.grocery, args.quick)


if __name__ == "__main__":
    main()
