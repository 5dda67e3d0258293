"""Does pretraining earn its place? Fine-tuning alone vs each pretraining objective + fine-tuning.

    .venv/bin/python benchmarks/bench_pretraining.py --data ../shared/datasets/Beauty.txt \
        --attributes ../shared/datasets/Beauty_item2attributes.json --out results/pretraining_beauty.json

Every arm runs `recsys bench` (the published protocol, same library code as the DAG) in its own
process with the same fine-tuning budget (epoch cap, patience, seed); the pretraining arms add
`--pretrain-epochs` epochs of their objective first. Prints and saves one row per arm (test
HR@10 / NDCG@10, best epoch, seconds) and the difference each objective makes. Each arm's
figures are kept in `--work` as it finishes, so an interrupted comparison resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ARMS = ("", "masked_item", "contrastive", "attribute", "masked_item+contrastive")


def run_arm(args: argparse.Namespace, objectives: str, workdir: Path) -> dict:
    out = workdir / f"{objectives or 'finetune_only'}.json"
    command = [
        sys.executable, "-m", "recsys_tasks.cli", "bench", "--data", args.data, "--out", str(out),
        "--epochs", str(args.epochs), "--patience", str(args.patience),
    ]
    if objectives:
        command += ["--pretrain", objectives, "--pretrain-epochs", str(args.pretrain_epochs)]
    if args.attributes:
        command += ["--attributes", args.attributes]
    if out.exists():
        print(f"--- {objectives or 'fine-tuning only'}: done earlier, {out}", flush=True)
    else:
        print(f"--- {objectives or 'fine-tuning only'}: {' '.join(command)}", flush=True)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--attributes")
    parser.add_argument("--out", default="results/pretraining.json")
    parser.add_argument("--arms", default=",".join(a or "none" for a in ARMS), help="comma-separated; none = fine-tuning only")
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--work", default="results/pretraining.tmp", help="per-arm figures (resume from here)")
    args = parser.parse_args()

    arms = ["" if a == "none" else a for a in args.arms.split(",")]
    rows = []
    work = Path(args.work) / f"e{args.epochs}-p{args.patience}-pre{args.pretrain_epochs}"
    work.mkdir(parents=True, exist_ok=True)
    for objectives in arms:
        figures = run_arm(args, objectives, work)
        rows.append({
            "pretraining": objectives or "none",
            "pretrain_epochs": args.pretrain_epochs if objectives else 0,
            "NDCG@10": figures["metrics"]["NDCG@10"], "HR@10": figures["metrics"]["HR@10"],
            "validation_NDCG@10": figures["validation_ndcg@10"], "best_epoch": figures["best_epoch"],
            "pretrain_seconds": figures["pretrain_seconds"], "finetune_seconds": figures["train_seconds"],
            "finetune_sequences_per_second": figures["train_sequences_per_second"],
            "peak_rss_mb": figures["peak_rss_mb"],
        })
        print(json.dumps(rows[-1]), flush=True)
    base = next((r["NDCG@10"] for r in rows if r["pretraining"] == "none"), None)
    print(f"\n{'pretraining':<26}{'NDCG@10':>9}{'HR@10':>8}{'vs none':>9}{'best ep':>8}{'pre s':>7}{'ft s':>7}")
    for r in rows:
        delta = f"{(r['NDCG@10'] / base - 1) * 100:+.1f}%" if base else "-"
        print(f"{r['pretraining']:<26}{r['NDCG@10']:>9.4f}{r['HR@10']:>8.4f}{delta:>9}{r['best_epoch']:>8}"
              f"{r['pretrain_seconds']:>7.0f}{r['finetune_seconds']:>7.0f}")
    budget = {"finetune_epoch_cap": args.epochs, "patience": args.patience, "pretrain_epochs": args.pretrain_epochs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"data": args.data, "budget": budget, "arms": rows}, indent=2) + "\n")
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
