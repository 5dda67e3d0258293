"""Does pretraining earn its place? Fine-tuning alone vs each pretraining objective + fine-tuning.

    .venv/bin/python benchmarks/bench_pretraining.py --data ../shared/datasets/Beauty.txt \
        --attributes ../shared/datasets/Beauty_item2attributes.json --epochs 10 --seeds 42,43 --jobs 2 \
        --out results/pretraining_beauty_10_epochs.json

Every arm runs `recsys bench` (the published protocol, same library code as the DAG) in its own
process with the same fine-tuning budget (epoch cap, patience) for every seed; the pretraining
arms add `--pretrain-epochs` epochs of their objective first. An arm is `PRETRAINING[/AUXILIARY]`:
`none`, `contrastive+attribute`, `none/contrastive` (fine-tuning with a contrastive auxiliary
loss, no pretraining), `contrastive+attribute/contrastive` (both).

Prints and saves one row per arm and seed (test HR@10 / NDCG@10, best epoch, seconds; runs of
the same arms with other seeds found in `--work` count too), then each arm's mean over seeds,
its change against `none` and the spread between seeds (the noise a difference has to beat).
`--jobs N` runs N arms at once, each on its share of the cores. Each run's figures are kept in
`--work` as it finishes, so an interrupted comparison resumes there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from recsys_tasks.ops.bench import measured

ARMS = ("none", "masked_item", "contrastive", "attribute", "contrastive+attribute", "none/contrastive")


def figures_file(workdir: Path, arm: str, seed: int | str) -> Path:
    """Where one run of an arm keeps its figures (`seed="*"`: a glob over its seeds)."""
    return workdir / f"{arm.replace('/', '__')}-seed{seed}.json"


def run_arm(args: argparse.Namespace, arm: str, seed: int, workdir: Path) -> dict:
    objectives, _, auxiliary = arm.partition("/")
    out = figures_file(workdir, arm, seed)
    command = [
        sys.executable, "-m", "recsys_tasks.ops.cli", "bench", "--data", args.data, "--out", str(out),
        "--epochs", str(args.epochs), "--patience", str(args.patience), "--seed", str(seed),
    ]
    # always explicit: `recsys bench` alone pretrains as the nightly does
    command += ["--pretrain", objectives, "--pretrain-epochs", str(args.pretrain_epochs if objectives != "none" else 0)]
    if auxiliary:
        command += ["--auxiliary", auxiliary, "--auxiliary-weight", str(args.auxiliary_weight)]
    if args.attributes:
        command += ["--attributes", args.attributes]
    if out.exists():
        print(f"--- {arm}, seed {seed}: done earlier, {out}", flush=True)
    else:
        print(f"--- {arm}, seed {seed}: {' '.join(command)}", flush=True)
        threads = str(max(1, (os.cpu_count() or 1) // args.jobs))
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": threads})
    row = figures_row(args, json.loads(out.read_text()), arm, seed)
    print(json.dumps(row), flush=True)
    return row


def figures_row(args: argparse.Namespace, figures: dict, arm: str, seed: int) -> dict:
    pretrained = arm.partition("/")[0] != "none"
    return {
        "arm": arm, "seed": seed, "pretrain_epochs": args.pretrain_epochs if pretrained else 0,
        "NDCG@10": figures["metrics"]["NDCG@10"], "HR@10": figures["metrics"]["HR@10"],
        "validation_NDCG@10": figures["validation_ndcg@10"], "best_epoch": figures["best_epoch"],
        "pretrain_seconds": figures["pretrain_seconds"], "finetune_seconds": figures["train_seconds"],
        "finetune_sequences_per_second": figures["train_sequences_per_second"], "peak_rss_mb": figures["peak_rss_mb"],
    }


def summarise(rows: list[dict], arms: list[str]) -> list[dict]:
    """Per arm: mean test NDCG@10 / HR@10 over seeds and the change against `none`."""
    summary = []
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm]
        ndcg = [r["NDCG@10"] for r in mine]
        summary.append({
            "arm": arm, "seeds": [r["seed"] for r in mine],
            "NDCG@10": round(statistics.mean(ndcg), 4), "HR@10": round(statistics.mean(r["HR@10"] for r in mine), 4),
            "NDCG@10_range": [min(ndcg), max(ndcg)],
            "seconds": round(statistics.mean(r["pretrain_seconds"] + r["finetune_seconds"] for r in mine)),
        })
    base = next((s["NDCG@10"] for s in summary if s["arm"] == "none"), None)
    for s in summary:
        s["vs_none"] = round(s["NDCG@10"] / base - 1, 4) if base else None
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--attributes")
    parser.add_argument("--out", default="results/pretraining.json")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated PRETRAINING[/AUXILIARY]; none = no pretraining")
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--auxiliary-weight", type=float, default=0.1)
    parser.add_argument("--seeds", default="42", help="comma-separated; every arm runs once per seed")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1, help="arms run at once")
    parser.add_argument("--work", default="results/pretraining.tmp", help="per-run figures (resume from here)")
    args = parser.parse_args()

    arms = args.arms.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(args.work) / f"e{args.epochs}-p{args.patience}-pre{args.pretrain_epochs}-aux{args.auxiliary_weight:g}"
    work.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda job: run_arm(args, *job, work), [(a, s) for s in seeds for a in arms]))
    for arm in arms:  # runs of these arms with other seeds, kept from earlier invocations, count too
        for path in sorted(work.glob(figures_file(work, arm, "*").name)):
            seed = int(path.stem.rsplit("-seed", 1)[1])
            if seed not in seeds:
                rows.append(figures_row(args, json.loads(path.read_text()), arm, seed))
    summary = summarise(rows, arms)
    spread = max((s["NDCG@10_range"][1] - s["NDCG@10_range"][0] for s in summary), default=0.0)
    print(f"\n{'pretraining[/auxiliary]':<36}{'NDCG@10':>9}{'HR@10':>8}{'vs none':>9}{'seeds range':>18}{'s/run':>7}")
    for s in summary:
        delta = f"{s['vs_none'] * 100:+.1f}%" if s["vs_none"] is not None else "-"
        low, high = s["NDCG@10_range"]
        print(f"{s['arm']:<36}{s['NDCG@10']:>9.4f}{s['HR@10']:>8.4f}{delta:>9}{f'{low:.4f}-{high:.4f}':>18}{s['seconds']:>7}")
    print(f"largest spread between seeds of one arm: {spread:.4f} NDCG@10")
    budget = {
        "finetune_epoch_cap": args.epochs, "patience": args.patience, "pretrain_epochs": args.pretrain_epochs,
        "auxiliary_weight": args.auxiliary_weight, "seeds": sorted({r["seed"] for r in rows}),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    result = {"data": args.data, "budget": budget, "summary": summary, "seed_spread_NDCG@10": round(spread, 4), "runs": rows}
    Path(args.out).write_text(json.dumps({**measured(), **result}, indent=2) + "\n")
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
