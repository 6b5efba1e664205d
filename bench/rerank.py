"""Re-ranking with evidence on the Grocery Store Dataset: ablation and latency (issue 12).

Quality: every setting of the issue (cold, cold with the coarse-class filter, warm, 2-photo)
runs the stage once with every kind of evidence on and keeps each candidate's features
(:func:`ml.rerank.evaluate.collect`). The fusion weights are then chosen on one half of val
and scored on the other half, both ways (2-fold; halves = alternate val photos of each
product, or alternate groups for 2-photo queries), so that every reported query is scored by
weights that never saw it. One row per kind of evidence (visual + that kind) and one with all.
"+ typed text" simulates an appraiser typing three words of the product's description
(seeded per product), the multimodal query of part 2.

Latency (``--latency``): the stage as serving runs it (query features and OCR computed inside
it) on the cold val queries at K = 8, per kind and in total, p50 / p95; run it under the
heavy-work lock: ``flock /tmp/skulens-heavy.lock python bench/rerank.py --latency ...``.

Usage:

    python bench/rerank.py --grocery ../shared/data/grocery [--model PATH|NAME] \
        [--cache var/bench/rerank] [--json OUT] [--latency] [--fit-default OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.datasets import grocery_to_csv, read_image_csv  # noqa: E402
from ml.embed import configure_threads, embed_files, load_embedder  # noqa: E402
from ml.evaluate import allowed_per_group, group_queries  # noqa: E402
from ml.rerank.attributes import AttributePredictor  # noqa: E402
from ml.rerank.evaluate import (  # noqa: E402
    Collected,
    build_reference_store,
    collect,
    latency_summary,
    prepare,
    recall_at_1_by,
    report,
)
from ml.rerank.fusion import DEFAULT_FUSION, FusionModel, fit_fusion  # noqa: E402
from ml.rerank.ocr import MAX_LINES, REC_MIN_WIDTH, RapidOcrEngine, default_engine  # noqa: E402
from ml.rerank.stage import RerankConfig, Reranker  # noqa: E402
from ml.rerank.store import ReferenceStore  # noqa: E402
from ml.rerank.text import words  # noqa: E402

BASE = ("visual", "visual_gap")
ROWS = {
    "visual only": (),
    "+ spatial": ("spatial",),
    "+ text (OCR)": ("text",),
    "+ attributes": ("attributes",),
    "+ spatial + text": ("spatial", "text"),
    "all (spatial, text, attributes)": ("spatial", "text", "attributes"),
    "all + typed text": ("spatial", "text", "attributes", "query_text"),
    "all + soft attribute (category)": ("spatial", "text", "attributes", "soft_attributes"),
}


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                      if ln.startswith("Model name")), platform.processor())
        flags = next((ln.split(":", 1)[1].split() for ln in out.splitlines()
                      if ln.startswith("Flags")), [])
        simd = [f for f in flags if f in ("avx2", "avx512f", "avx512_vnni", "amx_tile", "fma")]
        return f"{model}, {os.cpu_count()} cores, flags {' '.join(simd)}"
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor()


def halves(queries: Sequence[Any], groups: Sequence[Sequence[int]]) -> list[int]:
    """Half 0 or 1 of each group: alternate groups of each product."""
    seen: dict[str, int] = {}
    out = []
    for rows in groups:
        label = queries[rows[0]].label
        out.append(seen.get(label, 0) % 2)
        seen[label] = seen.get(label, 0) + 1
    return out


def fit_on(items: Sequence[Collected], names: Sequence[str]) -> FusionModel:
    rows, labels, group_ids = [], [], []
    for g, item in enumerate(items):
        for e in item.evidence:
            rows.append(e.features)
            labels.append(e.sku_id == item.label)
            group_ids.append(g)
    return fit_fusion(rows, labels, names=names, groups=group_ids, source="val-half")


def two_fold(items: Sequence[Collected], half: Sequence[int], names: Sequence[str],
             department: Any) -> dict[str, Any]:
    """Scores of every query by weights fitted on the other half."""
    scored: list[tuple[Collected, FusionModel]] = []
    models = []
    for h in (0, 1):
        train = [it for it, x in zip(items, half, strict=True) if x != h]
        test = [it for it, x in zip(items, half, strict=True) if x == h]
        model = fit_on(train, names) if any(it.evidence for it in train) else DEFAULT_FUSION
        models.append(model)
        scored += [(it, model) for it in test]
    r1 = np.mean([_top1(it, m, names) for it, m in scored])
    r4 = np.mean([_in_top(it, m, names, 4) for it, m in scored])
    by_dept: dict[str, list[int]] = {}
    for it, m in scored:
        by_dept.setdefault(department(it), []).append(_top1(it, m, names))
    return {"r1": float(r1), "r4": float(r4),
            "by_department": {k: float(np.mean(v)) for k, v in sorted(by_dept.items())},
            "weights": [m.to_dict() for m in models]}


def _ranking(item: Collected, model: FusionModel, names: Sequence[str]) -> list[int]:
    from ml.rerank.evaluate import ranked_labels

    return ranked_labels(item, model, names)


def _top1(item: Collected, model: FusionModel, names: Sequence[str]) -> int:
    ranking = _ranking(item, model, names)
    return int(bool(ranking) and ranking[0] == item.label)


def _in_top(item: Collected, model: FusionModel, names: Sequence[str], k: int) -> int:
    return int(item.label in _ranking(item, model, names)[:k])


def typed_text_for(prepared: Any) -> Any:
    """Label id -> three words of that product's description (seeded per product)."""
    cache: dict[int, str] = {}

    def text(label: int, _rows: Sequence[int] = ()) -> str:
        if label not in cache:
            entry = prepared.catalogue.get(label)
            pool = sorted(set(words(entry.description))) if entry else []
            rng = random.Random(label)
            cache[label] = " ".join(rng.sample(pool, min(3, len(pool))))
        return cache[label]

    return text


def category_of(prepared: Any) -> Any:
    """Label id -> {"category": the product's coarse class}: a soft attribute as typed."""

    def soft(label: int) -> dict[str, str]:
        entry = prepared.catalogue.get(label)
        return {"category": entry.category} if entry and entry.category else {}

    return soft


def load_or_build_store(gallery: Sequence[Any], path: Path, ocr: Any) -> ReferenceStore:
    store = ReferenceStore.load(path) if path.exists() else None
    if store is not None and len(store) == len(gallery):
        return store
    store = build_reference_store(gallery, ocr=ocr, progress=True)
    store.save(path)
    return ReferenceStore.load(path) or store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grocery", type=Path, required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--cache", type=Path, default=Path("var/bench/rerank"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--latency", action="store_true", help="time the stage (use flock)")
    parser.add_argument("--latency-queries", type=int, default=296)
    parser.add_argument("--fit-default", type=Path,
                        help="write the fusion fitted on val half 0 (cold, all kinds) here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=8)
    parser.add_argument("--ocr-max-lines", type=int, default=MAX_LINES,
                        help="lines the query OCR recognises (ml.rerank.ocr.MAX_LINES)")
    parser.add_argument("--ocr-rec-width", type=int, default=REC_MIN_WIDTH,
                        help="the recogniser's padded width floor (ml.rerank.ocr.REC_MIN_WIDTH)")
    parser.add_argument("--dump-items", type=Path,
                        help="pickle each setting's collected candidates here (refit offline)")
    parser.add_argument("--settings", default="cold,filtered,warm,2-photo",
                        help="comma-separated subset of cold, filtered, warm, 2-photo")
    args = parser.parse_args()
    chosen = {s.strip() for s in args.settings.split(",")}
    configure_threads(args.threads)
    import cv2

    cv2.setNumThreads(1)

    csv_dir = args.cache / "csv"
    csvs = grocery_to_csv(args.grocery, csv_dir)
    iconic = read_image_csv(csvs["gallery_iconic.csv"])
    warm = read_image_csv(csvs["gallery_warm.csv"])
    val = read_image_csv(csvs["val_photos.csv"])
    embedder = load_embedder(args.model, device="cpu")
    attributes = None
    if args.model and Path(args.model).is_file():
        attributes = AttributePredictor.from_checkpoint(args.model)
    reference_ocr = default_engine("reference")
    custom_ocr = (args.ocr_max_lines, args.ocr_rec_width) != (MAX_LINES, REC_MIN_WIDTH)
    ocr = (RapidOcrEngine(max_lines=args.ocr_max_lines, rec_min_width=args.ocr_rec_width)
           if custom_ocr else default_engine("query"))
    tag = embedder.name
    args.cache.mkdir(parents=True, exist_ok=True)

    vec_path = args.cache / f"vectors-{tag}.npz"
    if vec_path.exists():
        z = np.load(vec_path)
        vectors = {k: z[k] for k in ("warm", "val")}
    else:
        vectors = {"warm": embed_files(embedder, [r.path for r in warm]),
                   "val": embed_files(embedder, [r.path for r in val])}
        np.savez(vec_path, **vectors)
    stores = {"cold": load_or_build_store(iconic, args.cache / "store-iconic", reference_ocr)}
    stores["warm"] = (load_or_build_store(warm, args.cache / "store-warm", reference_ocr)
                      if "warm" in chosen else stores["cold"])
    n_iconic = len(iconic)
    prepared = {
        "cold": prepare(iconic, val, embedder, ocr=ocr,
                        vectors=(vectors["warm"][:n_iconic], vectors["val"]),
                        store=stores["cold"]),
    }
    if "warm" in chosen:
        prepared["warm"] = prepare(warm, val, embedder, ocr=ocr,
                                   vectors=(vectors["warm"], vectors["val"]), store=stores["warm"])
    # Query features and OCR words are the same in every setting: share the caches.
    ocr_tag = f"-lines{args.ocr_max_lines}-w{args.ocr_rec_width}" if custom_ocr else ""
    feat_path = args.cache / f"query-features{ocr_tag}.pkl"
    if feat_path.exists():
        features, words_cache = pickle.loads(feat_path.read_bytes())
    else:
        features, words_cache = {}, {}
    for p in prepared.values():
        p.query_features, p.query_words = features, words_cache

    config = RerankConfig(top_k=args.top_k)
    started = datetime.now(UTC)
    out: dict[str, Any] = {"model": tag, "machine": machine(), "date": started.isoformat(),
                           "top_k": args.top_k,
                           "ocr_margin": config.ocr_margin, "ocr_max_lines": args.ocr_max_lines,
                           "ocr_rec_width": args.ocr_rec_width,
                           "attribute_heads": attributes is not None, "settings": {}}
    print(f"{tag} on {out['machine']}, {started:%Y-%m-%d %H:%M} UTC")

    if args.latency:
        reranker = Reranker(config, store=stores["cold"], ocr=ocr, attributes=attributes)
        groups = group_queries(val)[: args.latency_queries]
        timed = collect(prepared["cold"], groups, reranker, reuse_features=False)
        out["latency_ms"] = latency_summary(timed)
        out["ocr_share"] = sum(t.ocr_ran for t in timed) / len(timed)
        for kind, (p50, p95) in out["latency_ms"].items():
            print(f"  {kind:<20} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")
        print(f"  OCR ran on {100 * out['ocr_share']:.0f}% of {len(timed)} queries")
        for kind in ("spatial", "text"):
            only = RerankConfig(top_k=args.top_k).without(
                *[k for k in ("spatial", "text", "attributes") if k != kind])
            alone = collect(prepared["cold"], groups,
                            Reranker(only, store=stores["cold"], ocr=ocr, attributes=attributes),
                            reuse_features=False)
            summary = latency_summary(alone)
            out[f"latency_{kind}_only_ms"] = summary
            print(f"  {kind} alone: total p50 {summary['total'][0]:.1f} ms, "
                  f"p95 {summary['total'][1]:.1f} ms")
    else:
        every = {
            "cold": ("cold", "cold", group_queries(val), None),
            "filtered": ("cold, coarse-class filter", "cold", group_queries(val), "category"),
            "warm": ("warm", "warm", group_queries(val), None),
            "2-photo": ("cold, 2 photos", "cold",
                        [g for g in group_queries(val, group_size=2) if len(g) == 2], None),
        }
        settings = {v[0]: v[1:] for k, v in every.items() if k in chosen}
        for name, (gallery_kind, groups, filter_column) in settings.items():
            p = prepared[gallery_kind]
            reranker = Reranker(config, store=stores[gallery_kind], ocr=ocr,
                                attributes=attributes)
            allowed = None
            if filter_column:
                allowed, _ = allowed_per_group(p.gallery, val, groups, filter_column)
            t0 = time.perf_counter()
            items = collect(p, groups, reranker, allowed=allowed, query_text=typed_text_for(p),
                            soft_attributes=category_of(p), progress=sys.stderr.isatty())
            tmp = feat_path.with_name(f".{feat_path.name}.{os.getpid()}")
            tmp.write_bytes(pickle.dumps((features, words_cache)))
            os.replace(tmp, feat_path)
            half = halves(val, groups)
            if args.dump_items:
                args.dump_items.mkdir(parents=True, exist_ok=True)
                departments = [val[it.rows[0]].get("department") or "" for it in items]
                (args.dump_items / f"{name.replace(' ', '_').replace(',', '')}.pkl").write_bytes(
                    pickle.dumps((items, half, departments)))

            def department(item: Collected) -> str:
                return val[item.rows[0]].get("department") or ""

            visual = report(items, None)
            result: dict[str, Any] = {
                "queries": len(items), "visual_r1": visual.recall_at_1,
                "visual_r4": visual.recall_at_4,
                "visual_by_department": recall_at_1_by(items, None, department),
                "ocr_share": sum(i.ocr_ran for i in items) / len(items),
                "default_fusion_r1": report(items, DEFAULT_FUSION).recall_at_1,
                "rows": {},
            }
            for row, kinds in ROWS.items():
                if attributes is None:  # a model without heads: that kind is simply off
                    if kinds == ("attributes",):
                        continue
                    kinds = tuple(k for k in kinds if k != "attributes")
                    row = row.replace("all (spatial, text, attributes)", "all (spatial, text)")
                result["rows"][row] = two_fold(items, half, (*BASE, *kinds), department)
            out["settings"][name] = result
            print(f"\n{name}: {len(items)} queries, OCR on {100 * result['ocr_share']:.0f}%, "
                  f"{time.perf_counter() - t0:.0f} s")
            print(f"  {'':<34}{'R@1':>7}{'R@4':>7}  R@1 by department")
            depts = result["visual_by_department"]
            print(f"  {'visual (cosine)':<34}{visual.recall_at_1:>7.3f}{visual.recall_at_4:>7.3f}"
                  f"  {'  '.join(f'{k} {v:.3f}' for k, v in depts.items())}")
            for row, r in result["rows"].items():
                print(f"  {row:<34}{r['r1']:>7.3f}{r['r4']:>7.3f}  "
                      f"{'  '.join(f'{k} {v:.3f}' for k, v in r['by_department'].items())}")
            if name == "cold" and args.fit_default:
                train = [it for it, x in zip(items, half, strict=True) if x == 0]
                model = fit_on(train, (*BASE, "spatial", "text", "attributes", "query_text",
                                       "soft_attributes"))
                args.fit_default.parent.mkdir(parents=True, exist_ok=True)
                args.fit_default.write_text(json.dumps(model.to_dict(), indent=2) + "\n")
                print(f"  default fusion (fitted on half 0): {model.to_dict()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
