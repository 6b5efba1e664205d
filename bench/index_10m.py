"""A compressed index at 10M x 256 on one 2-core, 24 GiB machine (docs/scaling.md).

The next scale after bench/index_scale.py's 1M: IVF with an HNSW coarse quantizer, codes in
4-bit fast-scan product quantization (``PQ256x4fs``, 128 bytes a vector) and the top ``k * k'``
re-ranked from float16 copies (``Refine(SQfp16)``, 512 bytes a vector). Filters follow
``ml.index``'s strategy: a filter of at most ``--subset-max`` vectors can be scored exactly over
the allowed vectors (gathered once from the float16 store and cached; both that and the IVF
path are measured for such filters), a broader one goes through the IVF search with an
``IDSelectorBitmap`` and the re-ranking.

Data: bench/index_scale.py's hierarchical mixture with ten times the groups below category
(10 categories, 1,000 brands, 10,000 series, 40,000 centres), so each group has the size it
has at 1M and a category filter still keeps ~1/10. Vectors are generated in chunks
(``--chunk``) that are added to the index and scored exactly against every query case in the
same pass, so neither the float32 data (10 GB) nor a copy of it is ever held: the exact
top-10 of each sample query (the recall reference) is merged chunk by chunk.

The search grid (nprobe x k' x the HNSW coarse quantizer's efSearch) is measured on every
filter kind, best of ``--repeat`` runs of a batch of ``--batch`` queries that share a filter;
``--save DIR`` keeps the built index and its ground truth, ``--load DIR`` searches them again
without the build. The answer is the fastest setting whose
recall@10 reaches ``--target-recall`` on the category filter. Memory is the process's peak RSS
(the index, the chunk in flight and the ground-truth state) and the index's own bytes.

    python bench/index_10m.py                   # 10M: ~20-25 min on 2 quiet cores, 7.9 GiB peak
    python bench/index_10m.py --quick           # 1M, same code paths, ~6 min
    flock /tmp/skulens-heavy.lock python bench/index_10m.py --json var/bench/index_10m.json
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from index_scale import Mixture, best_of, machine_reference, peak_rss_mib, recall_at, rss_mib  # noqa: E402

_faiss: Any = faiss
LEVELS = ("category", "brand", "series")
TARGET_QPS = 10_000
TARGET_RECALL = 0.95
TARGET_GIB = 8.0


def cpu_summary() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni") if f in flags]
    return f"{fields.get('Model name', '?').strip()}, {os.cpu_count()} CPUs, {' '.join(simd)}"


@dataclass
class Case:
    name: str
    level: str
    queries: np.ndarray  # [b, dim]
    group: int | None  # value of `level` that filters, None: unfiltered
    allowed: list[np.ndarray] = field(default_factory=list)  # row ids, chunk by chunk
    top_scores: np.ndarray | None = None  # [b, k] exact, merged over chunks
    top_ids: np.ndarray | None = None

    def merge(self, scores: np.ndarray, ids: np.ndarray, k: int) -> None:
        if self.top_scores is None or self.top_ids is None:
            self.top_scores, self.top_ids = scores, ids
            return
        s = np.concatenate([self.top_scores, scores], axis=1)
        i = np.concatenate([self.top_ids, ids], axis=1)
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        self.top_scores = np.take_along_axis(s, order, 1)
        self.top_ids = np.take_along_axis(i, order, 1)

    def allowed_ids(self) -> np.ndarray | None:
        return None if self.group is None else np.concatenate(self.allowed)


def make_cases(mix: Mixture, batch: int, groups: int, rng: np.random.Generator) -> list[Case]:
    queries, _ = mix.sample(batch, rng)
    cases = [Case("none", "none", queries, None)]
    for level in LEVELS:
        values = np.unique(mix.level_of_centre[level])
        for value in rng.choice(values, size=groups, replace=False):
            q, _ = mix.sample(batch, rng, group=(level, int(value)))
            cases.append(Case(level, level, q, int(value)))
    return cases


def build(args: argparse.Namespace, mix: Mixture, cases: list[Case]) -> tuple[Any, float]:
    """Train on a sample, then add chunk by chunk while merging each case's exact top-k."""
    k, n, chunk = 10, args.n, args.chunk
    spec = f"IVF{args.nlist}_HNSW32,PQ{args.pq}x4fs,Refine({args.refine})"
    index = faiss.index_factory(mix.dim, spec, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.niter = args.niter
    ivf.cp.seed = args.seed
    n_train = min(n, args.nlist * args.train_per_list)
    train, _ = mix.sample(n_train, np.random.default_rng([args.seed, 10**6]))
    started = time.perf_counter()
    index.train(train)
    train_s = time.perf_counter() - started
    del train
    # Size the float16 store once: grown by doubling, its last reallocation would hold the old
    # and the new copy at once (~2x its 4.9 GB at 10M). resize(0) keeps the capacity.
    refine = faiss.downcast_index(index.refine_index)
    refine.codes.resize(n * refine.code_size)
    refine.codes.resize(0)
    print(f"index {spec}: trained on {n_train:,} vectors in {train_s:.0f} s; "
          f"RSS {rss_mib():,.0f} MiB", flush=True)
    started = time.perf_counter()
    add_s = truth_s = 0.0
    for chunk_no, start in enumerate(range(0, n, chunk)):
        rows = min(chunk, n - start)
        xb, centre = mix.sample(rows, np.random.default_rng([args.seed, chunk_no]))
        t0 = time.perf_counter()
        index.add(xb)
        add_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        for case in cases:
            if case.group is None:
                local = np.arange(rows)
            else:
                local = np.flatnonzero(mix.level_of_centre[case.level][centre] == case.group)
                case.allowed.append(local + start)
            if len(local) == 0:
                continue
            sub = xb if case.group is None else np.ascontiguousarray(xb[local])
            kk = min(k, len(local))
            scores, found = faiss.knn(case.queries, sub, kk, metric=faiss.METRIC_INNER_PRODUCT)
            ids = (local[found] + start).astype(np.int64)
            if kk < k:
                pad = k - kk
                scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
                ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            case.merge(scores, ids, k)
        truth_s += time.perf_counter() - t0
        del xb, centre
        if chunk_no % 4 == 3 or start + rows == n:
            print(f"  {start + rows:,} added ({time.perf_counter() - started:.0f} s: add "
                  f"{add_s:.0f}, exact top-{k} {truth_s:.0f}); RSS {rss_mib():,.0f} MiB",
                  flush=True)
    return index, train_s + add_s


class Searcher:
    """Filtered top-k over the built index, ml.index's way (see the module docstring)."""

    def __init__(self, index: Any, dim: int, subset_max: int) -> None:
        self.index = index
        self.base = faiss.downcast_index(index.base_index)
        self.refine = faiss.downcast_index(index.refine_index)
        self.ntotal = int(index.ntotal)
        self.dim = dim
        self.subset_max = subset_max
        # The refine codes are the float16 vectors themselves: a view, not a copy.
        self.fp16 = (
            faiss.rev_swig_ptr(self.refine.codes.data(), self.ntotal * dim * 2)
            .view(np.float16)
            .reshape(self.ntotal, dim)
            if self.refine.sq.qtype == _faiss.ScalarQuantizer.QT_fp16
            else None
        )
        self._filters: dict[int, tuple[Any, Any]] = {}

    def prepare(self, allowed: np.ndarray) -> None:
        """Both forms of a filter, built once: the gathered vectors (small filters) and the
        bitmap selector."""
        key = id(allowed)
        if key not in self._filters:
            subset = None
            if len(allowed) <= self.subset_max and self.fp16 is not None:
                subset = np.ascontiguousarray(self.fp16[np.sort(allowed)].astype(np.float32))
            bits = np.zeros(self.ntotal // 8 + 1, np.uint8)
            np.add.at(bits, allowed >> 3, (1 << (allowed & 7)).astype(np.uint8))
            selector = (_faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits)), bits)
            self._filters[key] = (subset, selector)

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, nprobe: int, k_factor: int,
        ef_search: int = 0,
    ) -> np.ndarray:
        """``nprobe == 0``: exact over the allowed vectors; else IVF (+ selector) + re-rank.
        ``ef_search``: the HNSW coarse quantizer's breadth (0: ``max(32, 2 * nprobe)``)."""
        sel = None
        if allowed is not None:
            self.prepare(allowed)
            subset, (sel, _bits) = self._filters[id(allowed)]
            if nprobe == 0:
                assert subset is not None
                _, rows = faiss.knn(queries, subset, k, metric=faiss.METRIC_INNER_PRODUCT)
                out: np.ndarray = np.sort(allowed)[rows]
                return out
        base = _faiss.SearchParametersIVF(nprobe=nprobe)
        if sel is not None:
            base.sel = sel
        if isinstance(faiss.downcast_index(self.base.quantizer), faiss.IndexHNSW):
            base.quantizer_params = _faiss.SearchParametersHNSW(
                efSearch=ef_search or max(32, 2 * nprobe))
        params = _faiss.IndexRefineSearchParameters(k_factor=k_factor, base_index_params=base)
        _, found = self.index.search(queries, k, params=params)
        result: np.ndarray = found
        return result


def json_value(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else float(value)


def use_flat_coarse(index: Any) -> None:
    """Swap the HNSW coarse quantizer for exact search over the same centroids (the lists stay
    valid): the coarse step becomes one BLAS product per batch and picks the true nearest
    lists."""
    ivf = faiss.extract_index_ivf(index)
    hnsw = faiss.downcast_index(ivf.quantizer)
    centroids = hnsw.storage.reconstruct_n(0, hnsw.ntotal) if hasattr(hnsw, "storage") else (
        hnsw.reconstruct_n(0, hnsw.ntotal))
    flat = faiss.IndexFlatIP(ivf.d)
    flat.add(centroids)
    ivf.quantizer = flat
    ivf.own_fields = False
    _keep_alive.append(flat)


_keep_alive: list[Any] = []


def index_bytes(index: Any) -> dict[str, float]:
    base = faiss.downcast_index(index.base_index)
    refine = faiss.downcast_index(index.refine_index)
    n = int(index.ntotal)
    return {
        "pq_codes_mib": n * base.code_size / 2**20,
        "ids_mib": n * 8 / 2**20,
        "refine_codes_mib": n * refine.code_size / 2**20,
        "coarse_mib": base.nlist * base.d * 4 * 2 / 2**20,  # centroids + the HNSW graph, about
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--nlist", type=int, default=8192)
    parser.add_argument("--pq", type=int, default=256, help="4-bit sub-quantizers (bytes x 2)")
    parser.add_argument("--refine", default="SQfp16", help="SQfp16 or SQ8")
    parser.add_argument("--niter", type=int, default=10, help="k-means iterations")
    parser.add_argument("--train-per-list", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=250_000)
    parser.add_argument("--batch", type=int, default=1000, help="queries per search call")
    parser.add_argument("--groups", type=int, default=3, help="filter values per level")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--k-factor", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--ef-search", type=int, nargs="+", default=[0, 128, 256],
                        help="HNSW coarse breadths (0: max(32, 2 x nprobe)); run 2 found the "
                             "coarse step, not the PQ depth, capping recall")
    parser.add_argument("--save", type=Path, help="keep the built index and ground truth here")
    parser.add_argument("--load", type=Path, help="search an index kept by --save (no build)")
    parser.add_argument("--coarse", choices=("hnsw", "flat"), default="hnsw",
                        help="with --load: flat searches the same centroids exactly")
    parser.add_argument("--subset-max", type=int, default=50_000,
                        help="filters up to this size are also scored exactly")
    parser.add_argument("--target-recall", type=float, default=TARGET_RECALL)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true", help="1M vectors, 1,024 lists")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.coarse == "flat" and not args.load:
        parser.error("--coarse flat swaps the quantizer of a kept index: use it with --load")
    if args.quick:
        args.n, args.nlist, args.groups = min(args.n, 1_000_000), 1024, 2
    scale = max(1, args.n // 1_000_000)
    k = 10
    try:  # a shared machine: ask for a larger share where permitted, as index_scale.py does
        if os.nice(0) > -5:
            os.setpriority(os.PRIO_PROCESS, 0, -5)
    except PermissionError:
        pass
    faiss.omp_set_num_threads(args.threads)
    report: dict[str, Any] = {
        "machine": platform.node(),
        "cpu": cpu_summary(),
        "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "faiss": faiss.__version__,
        "threads": faiss.omp_get_max_threads(),
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "load_avg_start": os.getloadavg()[0],
        "args": {k_: v for k_, v in vars(args).items() if k_ != "json"},
    }
    report["reference"] = machine_reference()
    print(f"# Compressed index at {args.n:,} x {args.dim}: {report['cpu']}, "
          f"{report['memory_gib']:.0f} GiB, faiss {report['faiss']}, {report['threads']} "
          f"threads, {report['date']}")
    print(f"machine during the run: sgemm {report['reference']['sgemm_gflops']:.0f} GFLOP/s, "
          f"memory read {report['reference']['read_gib_s']:.1f} GiB/s, load average "
          f"{report['load_avg_start']:.1f}", flush=True)

    mix = Mixture(args.dim, n_brand=100 * scale, n_series=1000 * scale,
                  n_centres=4000 * scale, seed=args.seed)
    cases = make_cases(mix, args.batch, args.groups, np.random.default_rng([args.seed, 7]))
    started = time.perf_counter()
    if args.load:
        index = faiss.read_index(str(args.load / "index.faiss"))
        if args.coarse == "flat":
            use_flat_coarse(index)
        cases = pickle.loads((args.load / "cases.pkl").read_bytes())
        build_s = json.loads((args.load / "build.json").read_text())["index_s"]
        print(f"loaded {args.load} in {time.perf_counter() - started:.0f} s", flush=True)
    else:
        index, build_s = build(args, mix, cases)
    report["build"] = {"seconds": time.perf_counter() - started, "index_s": build_s,
                       "rss_mib": rss_mib(), "peak_rss_mib": peak_rss_mib(),
                       "loaded": bool(args.load), **index_bytes(index)}
    if args.save and not args.load:
        args.save.mkdir(parents=True, exist_ok=True)
        faiss.write_index(index, str(args.save / "index.faiss"))
        (args.save / "cases.pkl").write_bytes(pickle.dumps(cases))
        (args.save / "build.json").write_text(json.dumps(report["build"]))
    b = report["build"]
    index_mib = b["pq_codes_mib"] + b["ids_mib"] + b["refine_codes_mib"] + b["coarse_mib"]
    print(f"built in {b['seconds']:.0f} s; index {index_mib:,.0f} MiB (PQ codes "
          f"{b['pq_codes_mib']:,.0f}, ids {b['ids_mib']:,.0f}, float16 re-rank "
          f"{b['refine_codes_mib']:,.0f}); RSS {b['rss_mib']:,.0f} MiB, peak "
          f"{b['peak_rss_mib']:,.0f} MiB", flush=True)

    searcher = Searcher(index, args.dim, args.subset_max)
    for case in cases:  # prepare every filter once (cached, as ml.index does), untimed
        allowed = case.allowed_ids()
        if allowed is not None:
            case.allowed = [allowed]
            searcher.prepare(allowed)
    rows = []
    print("\n| filter | allowed (mean) | path | nprobe | efSearch | k' | queries/s "
          "| recall@10 (worst) |")
    print("|---|---|---|---|---|---|---|---|")
    for level in ("none", *LEVELS):
        level_cases = [c for c in cases if c.level == level]
        sizes = [len(c.allowed[0]) if c.allowed else args.n for c in level_cases]
        exact = level != "none" and max(sizes) <= args.subset_max
        grid = [(p, f, e) for p in args.nprobe for f in args.k_factor for e in args.ef_search
                if e == 0 or e > max(32, 2 * p)]
        grid = [(0, 0, 0), *grid] if exact else grid  # small filters: both paths, measured
        for nprobe, k_factor, ef_search in grid:
            seconds, recalls = 0.0, []
            for case in level_cases:
                allowed = case.allowed[0] if case.allowed else None
                searcher.search(case.queries[:50], k, allowed, nprobe, k_factor, ef_search)
                t, found = best_of(
                    lambda c=case, a=allowed, p=nprobe, f=k_factor, e=ef_search: searcher.search(
                        c.queries, k, a, p, f, e), args.repeat)
                seconds += t
                assert case.top_ids is not None
                recalls.append(recall_at(found, case.top_ids))
            row = {
                "filter": level, "allowed_mean": float(np.mean(sizes)),
                "path": "exact subset" if nprobe == 0 else (
                    "ivf" if level == "none" else "ivf+selector"),
                "nprobe": nprobe, "k_factor": k_factor,
                "ef_search": (ef_search or max(32, 2 * nprobe))
                if nprobe and args.coarse == "hnsw" else 0,
                "coarse": args.coarse,
                "qps": len(level_cases) * args.batch / seconds,
                "recall_at_10": float(np.mean(recalls)), "recall_worst": float(min(recalls)),
            }
            rows.append(row)
            print(f"| {level} | {row['allowed_mean']:,.0f} | {row['path']} | {nprobe or '-'} "
                  f"| {row['ef_search'] or '-'} | {k_factor or '-'} | {row['qps']:,.0f} "
                  f"| {row['recall_at_10']:.4f} "
                  f"({row['recall_worst']:.4f}) |", flush=True)
    report["search"] = rows

    def best(level: str) -> dict[str, Any] | None:
        ok = [r for r in rows if r["filter"] == level and r["recall_at_10"] >= args.target_recall]
        return max(ok, key=lambda r: r["qps"]) if ok else None

    report["best"] = {level: best(level) for level in ("none", *LEVELS)}
    report["peak_rss_mib"] = peak_rss_mib()
    report["load_avg_end"] = os.getloadavg()[0]
    print(f"\nfastest setting at recall@10 >= {args.target_recall} (target {TARGET_QPS:,} q/s "
          f"filtered, <= {TARGET_GIB:.0f} GiB):")
    for level, row in report["best"].items():
        if row is None:
            print(f"  {level}: none of the grid reaches the recall target")
        else:
            print(f"  {level}: {row['qps']:,.0f} q/s at recall {row['recall_at_10']:.4f} "
                  f"(nprobe {row['nprobe'] or '-'}, efSearch {row['ef_search'] or '-'}, "
                  f"k' {row['k_factor'] or '-'}, "
                  f"{row['path']})")
    print(f"peak RSS {report['peak_rss_mib']:,.0f} MiB "
          f"({report['peak_rss_mib'] / 1024:.2f} GiB); load average at the end "
          f"{report['load_avg_end']:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=json_value))


if __name__ == "__main__":
    main()
