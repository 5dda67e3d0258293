"""What the chunked catalogue cross-entropy and length-sorted evaluation save, step by step.

    .venv/bin/python benchmarks/bench_softmax.py --data ../shared/datasets/Beauty.txt --out results/speed_softmax.json

Three measurements on the threads given (`--threads`, default 2, the machine's cores here),
each arm interleaved with the other (A, B, A, B...) so a shared machine's load falls on both:

1. the loss alone, forward + backward, at the shapes of one Beauty batch (`--positions`
   positions, D 64) for several catalogue sizes: `F.cross_entropy` over padding + items, as the
   objectives computed it before, against `softmax.catalogue_cross_entropy`;
2. one fine-tuning epoch of the bench model on `--data` (length buckets, as shipped), with each
   of the two losses plugged into the next-item objective;
3. one validation pass (every user ranked against every item), users in their own order at
   max_len (as before) against batches of similar history lengths cut to their longest history.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from recsys_tasks.data.prepare import build_sequences, item_popularity, leave_one_out, left_padded_windows
from recsys_tasks.data.sources import read_interactions
from recsys_tasks.learning import objectives
from recsys_tasks.learning.model import SequenceEncoder
from recsys_tasks.learning.objective_builder import finetune_objective
from recsys_tasks.learning.softmax import catalogue_cross_entropy
from recsys_tasks.learning.training import PositionWeights, length_buckets
from recsys_tasks.ops.bench import BENCH_MODEL, BENCH_TRAIN, measured
from recsys_tasks.scoring import evaluation

log = logging.getLogger("bench_softmax")


def padded_cross_entropy(hidden, weight, targets, scale=None):  # noqa: ANN001, ANN201 (the function replaced)
    """The loss as computed before: logits over [padding, items], padding at -inf, `F.cross_entropy`."""
    logits = hidden @ torch.cat([weight[:1] * 0, weight]).T
    logits[:, 0] = float("-inf")
    losses = F.cross_entropy(logits, targets + 1, reduction="none" if scale is not None else "sum")
    return (losses * scale).sum() if scale is not None else losses


LOSSES: dict[str, Callable] = {"F.cross_entropy": padded_cross_entropy, "chunked": catalogue_cross_entropy}


def interleaved(arms: dict[str, Callable[[], None]], rounds: int) -> dict[str, dict[str, float]]:
    """Median and min wall seconds of each arm, run A, B, A, B... after one warm-up each."""
    for run in arms.values():
        run()
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(rounds):
        for name, run in arms.items():
            tick = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - tick)
    return {name: {"median_s": round(statistics.median(s), 4), "min_s": round(min(s), 4)} for name, s in seconds.items()}


def loss_step(loss: Callable, positions: int, classes: int) -> Callable[[], None]:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(positions, 64, generator=g).requires_grad_()
    weight = (torch.randn(classes, 64, generator=g) * 0.1).requires_grad_()
    targets = torch.randint(0, classes, (positions,), generator=g)

    def run() -> None:
        hidden.grad = weight.grad = None
        loss(hidden, weight, targets).backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--positions", type=int, default=1460, help="positions of one batch (Beauty: about 1,460)")
    parser.add_argument("--catalogues", default="2000,12101,50000", help="catalogue sizes for the loss alone")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per arm for the loss and validation")
    parser.add_argument("--epoch-rounds", type=int, default=2, help="timed epochs per arm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/speed_softmax.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)

    figures: dict = {"threads": args.threads, "positions": args.positions, "loss": {}}
    for classes in (int(c) for c in args.catalogues.split(",")):
        arms = {name: loss_step(fn, args.positions, classes) for name, fn in LOSSES.items()}
        figures["loss"][str(classes)] = interleaved(arms, args.rounds)
        log.info("loss fwd+bwd, %d items: %s", classes, figures["loss"][str(classes)])

    seqs = build_sequences(read_interactions(args.data))
    split = leave_one_out(seqs, min_length=3)
    torch.manual_seed(0)
    model = SequenceEncoder(seqs.n_items, BENCH_MODEL)
    objective = finetune_objective(model, BENCH_TRAIN, item_popularity(seqs, split), None, seqs.item_ids)
    windows = torch.as_tensor(left_padded_windows(seqs.items, seqs.offsets[:-1], split.train_end, BENCH_MODEL.max_len + 1))
    rows = windows[(windows != 0).sum(1) >= 2]
    lengths = (rows != 0).sum(1)
    weights = PositionWeights(batch_size=BENCH_TRAIN.batch_size, mean_length=float(lengths.float().mean()))
    optimizer = torch.optim.Adam(model.parameters(), lr=BENCH_TRAIN.lr)

    def epoch_with(loss: Callable) -> Callable[[], None]:
        def run() -> None:
            objectives.catalogue_cross_entropy = loss  # what full_softmax_loss calls
            model.train()
            generator = torch.Generator().manual_seed(0)
            for index in length_buckets(lengths, BENCH_TRAIN.batch_size, generator, objective.unit):
                window = rows[index][:, -int(lengths[index].max()) :]
                optimizer.zero_grad(set_to_none=True)
                objective.loss(model, window, generator, weights).backward()
                optimizer.step()
            objectives.catalogue_cross_entropy = catalogue_cross_entropy

        return run

    figures["epoch"] = interleaved({name: epoch_with(fn) for name, fn in LOSSES.items()}, args.epoch_rounds)
    figures["epoch"]["positions"] = int((lengths - 1).sum())
    log.info("one fine-tuning epoch: %s", figures["epoch"])

    model.eval()
    cpu = torch.device("cpu")

    def validation(sorted_batches: bool) -> Callable[[], None]:
        def run() -> None:
            if sorted_batches:
                evaluation.full_ranking_metrics(
                    evaluation.model_scorer(model, seqs, cpu), seqs, split.eval_users, split.train_end
                )
                return
            # as before: users in their own order, every window max_len long
            for lo in range(0, len(split.eval_users), 1024):
                batch = split.eval_users[lo : lo + 1024]
                starts, ends = seqs.offsets[batch], split.train_end[batch]
                with torch.no_grad():
                    hidden = model.last_hidden(
                        torch.as_tensor(left_padded_windows(seqs.items, starts, ends, BENCH_MODEL.max_len))
                    )
                    scores = model.item_logits(hidden)
                evaluation.exclude_seen(scores, seqs.items, starts, ends)
                target = scores.gather(1, torch.as_tensor(seqs.items[ends])[:, None])
                np.asarray((scores >= target).sum(1))

        return run

    figures["validation"] = interleaved({"users in order, max_len": validation(False),
                                         "sorted by length, cut": validation(True)}, args.rounds)
    figures["validation"]["users"] = len(split.eval_users)
    log.info("one validation pass: %s", figures["validation"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**measured(), "data": args.data, **figures}, indent=1))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
