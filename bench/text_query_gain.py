"""What the appraiser's free text adds to re-ranking, on grocery val (issue 12, part 2).

Each val photo gets, as its query text, the description words of its own product (capped like
the app caps `MatchRequest.query_text`: 300 characters, 40 words). That is the best case of a
helpful appraiser, an upper bound on the gain, not a realistic one. The script runs
`python -m ml evaluate --rerank` twice on the same queries, without and with `--query-text`
(the CSV's `text` column is what the appraiser typed; the stage's `query_text` evidence fuzzily
matches it against each candidate's name and description), and prints Recall@1 (visual,
re-ranked, re-ranked with text) overall and per department side by side.

Usage (timed runs under the heavy-work lock, see docs/benchmarks.md):

    flock /tmp/skulens-heavy.lock python bench/text_query_gain.py \
        --grocery ../shared/data/grocery [--model PATH|NAME] [--json OUT] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.datasets import grocery_to_csv  # noqa: E402

# The app's caps on an appraiser's description (webapp/matching/query_inputs.py).
MAX_CHARS, MAX_WORDS = 300, 40
DEPARTMENTS = ("Fruit", "Vegetables", "Packages")


def description_text(path: str) -> str:
    text = " ".join(Path(path).read_text(encoding="utf-8", errors="replace").split()[:MAX_WORDS])
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS].rsplit(" ", 1)[0]


def write_queries(csvs: dict[str, Path], out: Path, limit: int | None) -> Path:
    """val_photos.csv with a `text` column: each photo's own product description."""
    with open(csvs["gallery_iconic.csv"], newline="") as handle:
        text_of = {row["label"]: description_text(row["description_path"])
                   for row in csv.DictReader(handle)}
    with open(csvs["val_photos.csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))[:limit]
    target = out / "val_text.csv"
    with open(target, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0].keys(), "text"])
        writer.writeheader()
        writer.writerows({**r, "text": text_of[r["label"]]} for r in rows)
    return target


def evaluate(gallery: Path, queries: Path, model: str | None, *, text: bool) -> dict:
    """`python -m ml evaluate --rerank` (its JSON: ml.rerank.evaluate.RerankEvalResult)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        command = [sys.executable, "-m", "ml", "evaluate", "--gallery", str(gallery),
                   "--queries", str(queries), "--rerank", "--breakdown-column", "department",
                   "--json", result.name, "--quiet"]
        if model:
            command += ["--model", model]
        if text:
            command.append("--query-text")
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        return json.loads(Path(result.name).read_text())


def table_rows(without: dict, with_text: dict) -> list[tuple[str, int | None, float, float,
                                                             float]]:
    """(queries, n, visual R@1, re-ranked R@1, re-ranked with text R@1), overall first."""
    rows: list[tuple[str, int | None, float, float, float]] = [(
        "all", without["visual"]["n_queries"], without["visual"]["recall_at_1"],
        without["reranked"]["recall_at_1"], with_text["reranked"]["recall_at_1"],
    )]
    for name in DEPARTMENTS:
        if name in without["by_value"] and name in with_text["by_value"]:
            visual, reranked = without["by_value"][name]
            rows.append((name, None, visual, reranked, with_text["by_value"][name][1]))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grocery", required=True, help="the Grocery Store Dataset folder")
    parser.add_argument("--model", default=None)
    parser.add_argument("--json", default=None, help="write both runs' metrics here")
    parser.add_argument("--limit", type=int, default=None, help="first N val photos (quick)")
    parser.add_argument("--work", default=None, help="folder for the CSVs (default: a temp dir)")
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="text-gain-"))
    work.mkdir(parents=True, exist_ok=True)
    csvs = grocery_to_csv(args.grocery, work)
    queries = write_queries(csvs, work, args.limit)
    without = evaluate(csvs["gallery_iconic.csv"], queries, args.model, text=False)
    with_text = evaluate(csvs["gallery_iconic.csv"], queries, args.model, text=True)
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu}, model {without['model']}, "
          f"cold, K = {without['config'].get('top_k')}")
    print("| val photos | R@1 visual | R@1 re-ranked | R@1 re-ranked + description text | gain |")
    print("|---|---|---|---|---|")
    for name, n, visual, reranked, typed in table_rows(without, with_text):
        label = f"{name} ({n})" if n else name
        gain = typed - reranked
        print(f"| {label} | {visual:.3f} | {reranked:.3f} | {typed:.3f} | {gain:+.3f} |")
    p50, p95 = with_text["latency_ms"].get("rerank_query_text", (0.0, 0.0))
    print(f"typed-text evidence: p50 {p50:.2f} ms, p95 {p95:.2f} ms per query")
    if args.json:
        Path(args.json).write_text(json.dumps({"rerank": without, "rerank+text": with_text},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
