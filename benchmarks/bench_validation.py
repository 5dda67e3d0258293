"""How long the Great Expectations suite takes on a large log.

    .venv/bin/python benchmarks/bench_validation.py --rows 1000000 --out results/validation.json

Prints and saves: rows, seconds for the whole suite (with the previous-run drift checks),
rows per second and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions
from recsys_tasks.data.validation import profile, validate_interactions
from recsys_tasks.ops.bench import measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", default="results/validation.json")
    args = parser.parse_args()

    users = max(args.rows // 14, 2)  # the generator averages ~15 events per user: make a few too many
    frame = generate_interactions(SyntheticSpec(users=users, items=max(users // 5, 100), seed=7)).head(args.rows)
    previous = profile(frame)
    started = time.perf_counter()
    report = validate_interactions(frame, previous=previous)
    seconds = time.perf_counter() - started
    figures = {
        "rows": len(frame),
        "checks": len(report.checks),
        "passed": report.passed,
        "seconds": round(seconds, 2),
        "rows_per_second": round(len(frame) / seconds),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(json.dumps({**measured(), **figures}, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**measured(), **figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
