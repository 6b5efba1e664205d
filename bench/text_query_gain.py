"""What the appraiser's free text adds to re-ranking, on grocery val (issue 12, part 2).

Each val photo gets, as its query text, the description words of its own product (capped like
the app caps `MatchRequest.query_text`: 300 characters, 40 words). That is the best case of a
helpful appraiser, an upper bound on the gain, not a realistic one. The script then runs
`python -m ml evaluate` twice with re-ranking on, without and with the text, and prints
Recall@1 overall and per department (Fruit, Vegetables, Packages) side by side.

It needs the re-ranking stage (issue 12, part 1) with an option that reads a query CSV's
`text` column as each query's free text; this script expects it to be called `--query-text`
(adjust QUERY_TEXT_FLAG if it lands under another name). Until then it stops with a message.

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

QUERY_TEXT_FLAG = "--query-text"
# The app's caps on an appraiser's description (webapp/matching/query_inputs.py).
MAX_CHARS, MAX_WORDS = 300, 40
DEPARTMENTS = ("Fruit", "Vegetables", "Packages")


def description_text(path: str) -> str:
    text = " ".join(Path(path).read_text(encoding="utf-8", errors="replace").split()[:MAX_WORDS])
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS].rsplit(" ", 1)[0]


def department(path: str) -> str:
    return next((d for d in DEPARTMENTS if f"/{d}/" in path), "other")


def write_queries(csvs: dict[str, Path], out: Path, limit: int | None) -> dict[str, Path]:
    """val_photos.csv with a `text` column, one file per department and one for all."""
    with open(csvs["gallery_iconic.csv"], newline="") as handle:
        text_of = {row["label"]: description_text(row["description_path"])
                   for row in csv.DictReader(handle)}
    with open(csvs["val_photos.csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))[:limit]
    files = {}
    for name in ("all", *DEPARTMENTS):
        chosen = [r for r in rows if name == "all" or department(r["path"]) == name]
        target = out / f"val_text_{name.lower()}.csv"
        with open(target, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=[*rows[0].keys(), "text"])
            writer.writeheader()
            writer.writerows({**r, "text": text_of[r["label"]]} for r in chosen)
        files[name] = target
    return files


def evaluate(gallery: Path, queries: Path, model: str | None, *, text: bool) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        command = [sys.executable, "-m", "ml", "evaluate", "--gallery", str(gallery),
                   "--queries", str(queries), "--rerank", "--json", result.name, "--quiet"]
        if model:
            command += ["--model", model]
        if text:
            command.append(QUERY_TEXT_FLAG)
        subprocess.run(command, check=True)
        return json.loads(Path(result.name).read_text())


def recall_at_1(metrics: dict) -> float | None:
    for key in ("recall_at_1", "recall@1", "r@1", "R@1"):
        if key in metrics:
            return float(metrics[key])
    recall = metrics.get("recall") or metrics.get("recall_at_k")
    if isinstance(recall, dict):
        for key in ("1", 1):
            if key in recall:
                return float(recall[key])
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grocery", required=True, help="the Grocery Store Dataset folder")
    parser.add_argument("--model", default=None)
    parser.add_argument("--json", default=None, help="write the table here")
    parser.add_argument("--limit", type=int, default=None, help="first N val photos (quick)")
    parser.add_argument("--work", default=None, help="folder for the CSVs (default: a temp dir)")
    args = parser.parse_args()

    usage = subprocess.run([sys.executable, "-m", "ml", "evaluate", "--help"],
                           capture_output=True, text=True, check=True).stdout
    missing = [flag for flag in ("--rerank", QUERY_TEXT_FLAG) if flag not in usage]
    if missing:
        print(f"pending: `python -m ml evaluate` has no {' or '.join(missing)} yet; this "
              "measurement needs the re-ranking stage with free-text evidence (issue 12, "
              "part 1).", file=sys.stderr)
        return 2

    work = Path(args.work or tempfile.mkdtemp(prefix="text-gain-"))
    work.mkdir(parents=True, exist_ok=True)
    csvs = grocery_to_csv(args.grocery, work)
    queries = write_queries(csvs, work, args.limit)
    table = {}
    for name, path in queries.items():
        without = evaluate(csvs["gallery_iconic.csv"], path, args.model, text=False)
        with_text = evaluate(csvs["gallery_iconic.csv"], path, args.model, text=True)
        table[name] = {"rerank": recall_at_1(without), "rerank+text": recall_at_1(with_text),
                       "metrics": {"rerank": without, "rerank+text": with_text}}
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu}, model {args.model or 'default'}")
    print("| val photos | R@1 re-ranked | R@1 re-ranked + description text | gain |")
    print("|---|---|---|---|")
    for name, row in table.items():
        before, after = row["rerank"], row["rerank+text"]
        gain = f"{after - before:+.4f}" if before is not None and after is not None else "?"
        print(f"| {name} | {before} | {after} | {gain} |")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
