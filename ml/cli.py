"""Command line: ``python -m ml <command> ...``.

Commands: ``evaluate`` (retrieval metrics of a model on gallery/query CSVs), ``grocery-csv``
(Grocery Store Dataset -> CSVs), ``latency`` (batch-1 embedding latency) and ``train``
(provided by :mod:`ml.train`, which defines ``add_arguments(parser)`` and ``run(args)``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ml.fuse import DEFAULT_STRATEGY, STRATEGIES
from ml.retrieval import DEFAULT_SEARCH_DEPTH


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ml.embed import configure_threads
    from ml.evaluate import evaluate_csv, format_table
    from ml.index import configure_threads as configure_faiss_threads

    configure_threads(args.threads)
    configure_faiss_threads(args.threads)
    if args.rerank:
        return _evaluate_reranked(args)
    result = evaluate_csv(
        args.gallery,
        args.queries,
        model=args.model,
        filter_column=args.filter_column,
        group_size=args.group_size,
        full_groups=args.full_groups,
        strategy=args.strategy,
        search_depth=args.search_depth,
        isolator=_isolator(args),
        detection_classes=[c for c in (args.detector_classes or "").split(",") if c],
        device=args.device,
        batch_size=args.batch_size,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    print(format_table(result))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
        print(f"wrote {path}")
    return 0


def _evaluate_reranked(args: argparse.Namespace) -> int:
    """``evaluate --rerank``: the visual ranking and the re-ranking stage, default settings."""
    from ml.datasets import read_image_csv
    from ml.embed import load_embedder
    from ml.rerank.attributes import AttributePredictor
    from ml.rerank.evaluate import evaluate_reranked, format_rerank_table
    from ml.rerank.ocr import OcrUnavailable, default_engine
    from ml.rerank.stage import RerankConfig

    off = [k.strip() for k in (args.rerank_off or "").split(",") if k.strip()]
    config = RerankConfig(top_k=args.rerank_top_k).without(*off)
    ocr = reference_ocr = None
    if config.text:
        try:
            ocr, reference_ocr = default_engine("query"), default_engine("reference")
        except OcrUnavailable as exc:
            print(f"text evidence off: {exc}", file=sys.stderr)
    embedder = load_embedder(args.model, device=args.device)
    attributes = None
    if args.model and Path(args.model).is_file():
        attributes = AttributePredictor.from_checkpoint(args.model)
    result = evaluate_reranked(
        read_image_csv(args.gallery),
        read_image_csv(args.queries),
        embedder,
        config=config,
        ocr=ocr,
        reference_ocr=reference_ocr,
        attributes=attributes,
        filter_column=args.filter_column,
        breakdown_column=args.breakdown_column,
        group_size=args.group_size,
        strategy=args.strategy,
        text_column="text" if args.query_text else None,
        batch_size=args.batch_size,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    print(format_rerank_table(result))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n")
        print(f"wrote {path}")
    return 0
def _isolator(args: argparse.Namespace) -> Any:
    """The app's subject isolation, when asked for (`--detector`): detect, segment, crop."""
    if not args.detector:
        return None
    from ml.retrieval import Isolator
    from ml.yolo import YoloDetector

    detector = YoloDetector(args.detector, image_size=args.detector_image_size,
                            min_confidence=args.detector_min_confidence)
    return Isolator(detector, segmentation=args.segmentation)


def _cmd_grocery_csv(args: argparse.Namespace) -> int:
    from ml.datasets import grocery_to_csv

    for name, path in grocery_to_csv(args.root, args.out).items():
        n = sum(1 for _ in path.open()) - 1
        print(f"{name}: {n} rows -> {path}")
    return 0


def _cmd_latency(args: argparse.Namespace) -> int:
    from ml.embed import configure_threads, load_embedder, measure_latency
    from ml.images import load_rgb

    configure_threads(args.threads)
    embedder = load_embedder(args.model, device=args.device)
    image = load_rgb(args.image)
    stats = measure_latency(embedder, image, runs=args.runs)
    print(
        f"{embedder.name} on {embedder.device} ({int(stats['threads'])} threads), batch 1, "
        f"{args.runs} runs: median {stats['embed_median_ms']:.1f} ms "
        f"(min {stats['embed_min_ms']:.1f}; forward only {stats['forward_median_ms']:.1f})"
    )
    return 0


def _add_latency(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("latency", help="batch-1 embedding latency of a model on one image")
    p.add_argument("--image", required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_cmd_latency)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("evaluate", help="Recall@K and MAP@R of a model on gallery/query CSVs")
    p.add_argument("--gallery", required=True, help="gallery CSV (path,label[,category,...])")
    p.add_argument("--queries", required=True, help="query CSV (path,label[,group,...])")
    p.add_argument(
        "--model",
        default=None,
        help="checkpoint path or pretrained backbone (default efficientnet_lite0)",
    )
    p.add_argument(
        "--filter-column",
        default=None,
        help="also evaluate with search restricted to gallery rows sharing this column's value",
    )
    p.add_argument(
        "--group-size",
        type=int,
        default=None,
        help="fuse N photos of the same label into one query (rows without a group column)",
    )
    p.add_argument(
        "--full-groups", action="store_true",
        help="with --group-size N, only queries of exactly N photos (drop leftover photos)",
    )
    p.add_argument("--strategy", default=DEFAULT_STRATEGY, choices=STRATEGIES)
    p.add_argument(
        "--rerank",
        action="store_true",
        help="also apply the re-ranking stage (ml.rerank) with its default settings; the "
        "catalogue text comes from the gallery CSV's name/description columns",
    )
    p.add_argument("--rerank-top-k", type=int, default=8, help="candidates re-ranked")
    p.add_argument(
        "--rerank-off",
        default="",
        help="evidence kinds to switch off, comma-separated "
        "(spatial,text,attributes,query_text,soft_attributes)",
    )
    p.add_argument(
        "--query-text",
        action="store_true",
        help="with --rerank: the query CSV's text column is what the appraiser typed",
    )
    p.add_argument(
        "--breakdown-column",
        default="department",
        help="with --rerank: R@1 per value of this query column",
    )
    p.add_argument(
        "--search-depth", type=int, default=DEFAULT_SEARCH_DEPTH,
        help="references searched per photo before fusion (the app's SKULENS_SEARCH_DEPTH)",
    )
    p.add_argument(
        "--detector", default=None,
        help="isolate items as the app does: YOLO weights (e.g. yolov8n_int8.tflite)",
    )
    p.add_argument("--detector-classes", default="",
                   help="comma-separated COCO classes that count as the item (default: any)")
    p.add_argument("--detector-image-size", type=int, default=320)
    p.add_argument("--detector-min-confidence", type=float, default=0.15)
    p.add_argument("--segmentation", default="grabcut", choices=("grabcut", "none"))
    p.add_argument("--json", default=None, help="write the metrics as JSON here")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_evaluate)


def _add_grocery(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("grocery-csv", help="write Grocery Store Dataset CSVs for evaluation")
    p.add_argument("--root", required=True, help="dataset folder (holds classes.csv)")
    p.add_argument("--out", required=True, help="folder for the CSVs")
    p.set_defaults(func=_cmd_grocery_csv)


def _add_train(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``train`` forwards to ml.train (``add_arguments(parser)`` / ``run(args)``)."""
    try:
        train = importlib.import_module("ml.train")
    except ImportError as exc:
        # Keep evaluate/grocery-csv usable when training-only dependencies are missing.
        error = f"{type(exc).__name__}: {exc}"
        p = sub.add_parser("train", help="train the embedding network (unavailable)")

        def unavailable(args: argparse.Namespace) -> int:
            print(f"ml.train cannot be imported: {error}", file=sys.stderr)
            return 2

        p.set_defaults(func=unavailable)
        return
    p = sub.add_parser("train", help="train the embedding network (metric learning)")
    train.add_arguments(p)

    def run(args: argparse.Namespace) -> int:
        return int(train.run(args) or 0)

    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml", description="SKU Lens ML tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    _add_evaluate(sub)
    _add_grocery(sub)
    _add_latency(sub)
    _add_train(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


__all__ = ["build_parser", "main"]
