"""Detection and embedding runtimes side by side, on the grocery val photos, in one process.

For the detector (YOLOv8n int8 TFLite) and the embedding network, every installed runtime is
timed photo by photo, interleaved (each photo goes through every runtime before the next
photo, so load on the machine hits them alike), and compared with the reference runtime with
the oracles of ``ml.backends.oracle``: the same boxes (IoU >= 0.99), the same embeddings
(cosine), identical val rankings and R@1 against the 81 iconic catalogue images.

Embedding runtimes: torch (reference), openvino, onnxruntime (float32 exports), torch.compile
(inductor), and int8: the ONNX export quantised statically by onnxruntime.quantization (QDQ,
per-channel weights, calibrated on 64 *train* photos), run by ONNX Runtime and by OpenVINO.

    python bench/inference_backends.py --grocery ../shared/data/grocery [--quick]
        [--model CHECKPOINT|BACKBONE] [--threads N] [--json OUT] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.backends import prepare_openvino, runtime_missing  # noqa: E402
from ml.backends.oracle import compare_detections, compare_rankings  # noqa: E402
from ml.datasets import read_grocery_classes, read_grocery_split  # noqa: E402
from ml.embed import Embedder, configure_threads, load_embedder  # noqa: E402
from ml.evaluate import evaluate_embeddings  # noqa: E402
from ml.images import load_rgb  # noqa: E402

GROCERY_DETECTION_CLASSES = ["apple", "orange", "banana", "broccoli", "carrot"]
SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared/weights/yolov8n_int8.tflite"
DETECTOR_BACKENDS = ("ultralytics", "litert", "openvino")


def machine() -> dict[str, str]:
    """CPU model and the SIMD flags that decide these runtimes' kernels."""
    info = {"host": platform.node(), "cpus": str(os.cpu_count())}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return info
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            info["model"] = value.strip()
        if key.strip() == "Flags":
            flags = value.split()
            wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni",
                      "amx_int8", "amx_bf16")
            info["flags"] = " ".join(f for f in wanted if f in flags) or "(none of avx2/avx512/amx)"
    return info


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def bench_detection(photos: list[Path], weights: Path, threads: int, any_class: bool) -> dict:
    from ml.yolo import YoloDetector

    images = [load_rgb(p) for p in photos]
    detectors = {}
    for backend in DETECTOR_BACKENDS:
        missing = runtime_missing(backend)
        if missing:
            print(f"  detector {backend}: skipped, {missing}")
            continue
        # The reference as the app ran it before this change: ultralytics' default threads.
        detectors[backend] = YoloDetector(
            weights, image_size=320, backend=backend, threads=threads, min_confidence=0.15
        )
        detectors[backend].detect_all(images[:2], classes=GROCERY_DETECTION_CLASSES)
    times: dict[str, list[float]] = {b: [] for b in detectors}
    chosen: dict[str, list] = {b: [] for b in detectors}
    for image in images:
        for backend, detector in detectors.items():
            started = time.perf_counter()
            found = detector.detect_all([image], classes=GROCERY_DETECTION_CLASSES)[0]
            times[backend].append((time.perf_counter() - started) * 1000)
            chosen[backend].append((found.box, found.label) if found else None)
    result: dict[str, Any] = {"photos": len(images), "backends": {}}
    for backend in detectors:
        agreement = compare_detections(chosen["ultralytics"], chosen[backend])
        entry = {
            "name": detectors[backend].name,
            "median_ms": median(times[backend]),
            "p90_ms": float(np.percentile(times[backend], 90)),
            "grocery_classes": agreement.__dict__ | {"share": agreement.share},
        }
        if any_class:
            found_any = [detectors[backend].detect_all([im])[0] for im in images]
            entry["any_class_choices"] = [(f.box, f.label) if f else None for f in found_any]
        result["backends"][backend] = entry
    if any_class:
        ref = result["backends"]["ultralytics"]["any_class_choices"]
        for entry in result["backends"].values():
            agreement = compare_detections(ref, entry.pop("any_class_choices"))
            entry["any_class"] = agreement.__dict__ | {"share": agreement.share}
    return result


class CompiledTorch:
    """torch.compile (inductor) of the reference network, as an embedding runtime."""

    backend = "torch.compile"

    def __init__(self, embedder: Embedder) -> None:
        import torch

        self._torch = torch
        self._net = torch.compile(embedder.model, dynamic=False)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return self._net(t).numpy()


def quantise_int8(onnx_path: Path, calibration: np.ndarray, out: Path) -> Path:
    """Static int8 QDQ model of ``onnx_path`` calibrated on ``calibration [n, 3, S, S]``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._rows = iter(calibration[i : i + 1] for i in range(len(calibration)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            row = next(self._rows, None)
            return None if row is None else {"images": row}

    prepared = out.with_suffix(".pre.onnx")
    quant_pre_process(str(onnx_path), str(prepared))
    quantize_static(
        str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )
    return out


def bench_embedding(
    model: str, val: list[Path], iconic: list[Path], train: list[Path], threads: int,
    export_dir: Path, compile_torch: bool, timed: int,
) -> dict:
    from ml.backends.embedding import OnnxRuntimeEmbedding, OpenVinoEmbedding

    reference = load_embedder(model, device="cpu", backend="torch")
    runtimes: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    load_s: dict[str, float] = {}
    onnx_path = None
    for backend in ("openvino", "onnxruntime"):
        if runtime_missing(backend):
            print(f"  embedding {backend}: skipped, {runtime_missing(backend)}")
            continue
        started = time.perf_counter()
        embedder = load_embedder(model, device="cpu", backend=backend, export_dir=export_dir)
        load_s[backend] = time.perf_counter() - started
        assert embedder.runtime is not None
        runtimes[backend] = embedder.runtime
        onnx_path = next(export_dir.glob("*.onnx"), None) if onnx_path is None else onnx_path
    if compile_torch:
        started = time.perf_counter()
        compiled = CompiledTorch(reference)
        for n in (1, 8):
            compiled(np.zeros((n, 3, reference.image_size, reference.image_size), np.float32))
        load_s["torch.compile"] = time.perf_counter() - started
        runtimes["torch.compile"] = compiled
    if onnx_path is not None and not runtime_missing("onnxruntime"):
        started = time.perf_counter()
        calibration = reference.preprocess([load_rgb(p) for p in train[:64]]).numpy()
        int8 = quantise_int8(onnx_path, calibration, export_dir / "int8.onnx")
        load_s["int8 quantisation"] = time.perf_counter() - started
        runtimes["onnxruntime-int8"] = OnnxRuntimeEmbedding(int8, threads=threads)
        if not runtime_missing("openvino"):
            runtimes["openvino-int8"] = OpenVinoEmbedding(int8, threads=threads)

    def embed_all(run: Callable[[np.ndarray], np.ndarray], paths: list[Path]) -> np.ndarray:
        out = []
        for start in range(0, len(paths), 32):
            x = reference.preprocess([load_rgb(p) for p in paths[start : start + 32]]).numpy()
            out.append(run(x))
        return np.concatenate(out)

    def run_reference(x: np.ndarray) -> np.ndarray:
        import torch

        return reference.embed_tensor(torch.from_numpy(x))

    all_runtimes: dict[str, Callable[[np.ndarray], np.ndarray]] = {"torch": run_reference}
    all_runtimes.update(runtimes)
    vectors = {name: (embed_all(run, val), embed_all(run, iconic))
               for name, run in all_runtimes.items()}

    # Timing: batch 1 and batch 8 of preprocessed val photos, interleaved across runtimes.
    x = reference.preprocess([load_rgb(p) for p in val[:timed]]).numpy()
    times: dict[str, dict[int, list[float]]] = {n: {1: [], 8: []} for n in all_runtimes}
    for run in all_runtimes.values():
        run(x[:1])
        run(x[:8])
    for i in range(timed):
        for name, run in all_runtimes.items():
            started = time.perf_counter()
            run(x[i : i + 1])
            times[name][1].append((time.perf_counter() - started) * 1000)
    for i in range(0, timed - 7, 8):
        for name, run in all_runtimes.items():
            started = time.perf_counter()
            run(x[i : i + 8])
            times[name][8].append((time.perf_counter() - started) * 1000 / 8)

    val_labels = np.array([label for label in VAL_LABELS], dtype=np.int64)
    iconic_labels = np.array(ICONIC_LABELS, dtype=np.int64)
    ref_q, ref_g = vectors["torch"]
    result: dict[str, Any] = {"model": reference.name, "load_s": load_s, "backends": {}}
    for name in all_runtimes:
        q, g = vectors[name]
        agreement = compare_rankings(ref_q, ref_g, q, g, k=10)
        report = evaluate_embeddings(g, iconic_labels, q, val_labels)
        result["backends"][name] = {
            "batch1_median_ms": median(times[name][1]),
            "batch8_ms_per_image": median(times[name][8]),
            "min_cosine": agreement.min_cosine,
            "identical_top10": agreement.identical_top_k,
            "same_top1": agreement.same_top1,
            "queries": agreement.queries,
            "recall_at_1": report.recall_at_1,
            "recall_at_4": report.recall_at_4,
        }
    return result


VAL_LABELS: list[int] = []
ICONIC_LABELS: list[int] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grocery", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=SHARED_WEIGHTS)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--threads", type=int, default=0, help="0: every core")
    parser.add_argument("--quick", action="store_true", help="24 photos, no torch.compile")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    prepare_openvino()
    threads = configure_threads(args.threads or None)

    val_items = read_grocery_split(args.grocery, "val")
    train_items = read_grocery_split(args.grocery, "train")
    classes = read_grocery_classes(args.grocery)
    VAL_LABELS[:] = [product for _, product, _ in val_items]
    ICONIC_LABELS[:] = [c.class_id for c in classes]
    val = [path for path, _, _ in val_items]
    iconic = [c.iconic_path for c in classes]
    rng = np.random.default_rng(0)
    train = [train_items[i][0] for i in rng.permutation(len(train_items))[:64]]
    detect_photos = val[:: max(1, len(val) // 24)] if args.quick else val

    info = machine()
    started = datetime.now(UTC)
    print(f"# inference runtimes, {info.get('model', '?')} ({info['cpus']} CPU; "
          f"{info.get('flags', '')}), threads {threads}, {started:%Y-%m-%d %H:%M} UTC")
    out: dict[str, Any] = {"machine": info, "date": started.isoformat(), "threads": threads}
    with tempfile.TemporaryDirectory(prefix="skulens-exports-") as export_dir:
        out["embedding"] = bench_embedding(
            args.model, val, iconic, train, threads, Path(export_dir),
            compile_torch=not (args.quick or args.no_compile), timed=24 if args.quick else 96,
        )
    emb = out["embedding"]
    ref = emb["backends"]["torch"]
    print(f"embedding {emb['model']}: {ref['queries']} val queries against {len(iconic)} iconic; "
          f"load/compile s: { {k: round(v, 1) for k, v in emb['load_s'].items()} }")
    print("  runtime            b1 ms  b8 ms/img  speed-up b1  min cosine  identical top-10  "
          "same top-1  R@1    R@4")
    for name, row in emb["backends"].items():
        print(f"  {name:<17} {row['batch1_median_ms']:6.1f} {row['batch8_ms_per_image']:9.1f} "
              f"{ref['batch1_median_ms'] / row['batch1_median_ms']:10.2f}x "
              f"{row['min_cosine']:11.6f} {row['identical_top10']:>9}/{row['queries']} "
              f"{row['same_top1']:>9} {row['recall_at_1']:.4f} {row['recall_at_4']:.4f}")

    if args.weights.is_file():
        out["detection"] = det = bench_detection(
            detect_photos, args.weights, threads, any_class=not args.quick
        )
        base = det["backends"]["ultralytics"]["median_ms"]
        print(f"detection {args.weights.name}: {det['photos']} val photos, one per call, "
              f"classes {GROCERY_DETECTION_CLASSES}")
        print("  runtime        median ms  p90 ms  speed-up  same box (IoU>=0.99, grocery classes)"
              "  any class  min IoU")
        for name, row in det["backends"].items():
            g = row["grocery_classes"]
            a = row.get("any_class", {})
            print(f"  {name:<14} {row['median_ms']:9.1f} {row['p90_ms']:7.1f} "
                  f"{base / row['median_ms']:8.2f}x  {g['same']}/{g['photos']} "
                  f"(found {g['found_candidate']} vs {g['found_reference']})"
                  f"  {a.get('same', '-')}/{a.get('photos', '-')}  {g['min_iou']:.4f}")
    else:
        print(f"detection: skipped, no weights at {args.weights}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
