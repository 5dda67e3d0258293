"""The night's budget: training gets what the other stages leave of `night_minutes`.

`train_minutes` bounds each training stage; `night_minutes` bounds the night. Before a
training stage starts, what the night has spent so far (since the run started) and what the
stages after training will cost at this size are taken off the night, and the stage gets its
share of the rest (never more than `train_minutes`). What the later stages cost is measured,
not guessed: one batch of the product every later stage computes (users' vectors against the
catalogue, then top-K) is timed on this machine at this catalogue size and scaled to the users
that generation, evaluation and the similar-items lists rank, plus the publish at the
backend's measured write rate (docs/scaling.md). The plan is logged and kept in
`runs/<run>/night.json`, one entry per training stage.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from recsys_tasks import PROGRESS, db
from recsys_tasks.clock import as_utc, utcnow
from recsys_tasks.config import TrainConfig
from recsys_tasks.learning.training import process_group
from recsys_tasks.pipeline.context import RunContext
from recsys_tasks.storage import layout

log = logging.getLogger(__name__)

PROBE_USERS = 1024
# generation inside the DAG against the bare matmul + top-K (user encoding, business rules,
# writing shards): 1.5x at 1M x 100k (issue #30's measurement); evaluation ranks per scorer
IN_DAG_OVERHEAD = 1.5
SCORERS_RANKED = 3  # the candidate, production and item-kNN (popularity is ranked once)
# rows written per second, a little under the measured (PostgreSQL COPY 228-238k/s, docs/benchmarks.md;
# SQLite's executemany path 120-165k/s, benchmarks/bench_sqlite_write.py)
WRITE_ROWS_PER_S = {"postgresql": 200_000.0, "sqlite": 100_000.0}
MARGIN = 1.1  # the estimate's error, and the stages not estimated (companions' fallback, the gate)
# the shares of what is left that each training stage may take: pretraining, when it runs, a
# small one; fine-tuning leaves room for the refit, which repeats up to its best epoch count
SHARES = {"pretrain": 0.2, "finetune": 0.55, "finetune_without_refit": 1.0, "refit": 1.0}
SMALLEST_MINUTES = 0.01  # an exhausted night still trains one epoch (train_minutes 0 would mean no budget)


@dataclass(frozen=True)
class Plan:
    stage: str
    minutes: float  # the training budget this stage gets
    spent_s: float  # the night so far
    after_training_s: float  # what the stages after training are expected to take
    night_minutes: float

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "train_minutes": round(self.minutes, 2), "spent_s": round(self.spent_s, 1),
                "after_training_s": round(self.after_training_s, 1), "night_minutes": self.night_minutes}


def ranking_seconds_per_user(n_items: int, d: int, k: int) -> float:
    """One user's scores against `n_items` items and their top-K, timed on a batch."""
    users = torch.randn(PROBE_USERS, d)
    items = torch.randn(n_items, d)
    best = float("inf")
    with torch.no_grad():
        for _ in range(2):
            tick = time.perf_counter()
            torch.topk(users @ items.T, min(k + 50, n_items), dim=1)
            best = min(best, time.perf_counter() - tick)
    return best / PROBE_USERS


def after_training_seconds(run: RunContext, n_users: int, n_items: int, eval_users: int) -> float:
    """What evaluation, generation, the similar-items lists and the publish will take at this size."""
    config = run.config
    per_user = ranking_seconds_per_user(n_items, config.model.d_model, config.top_k)
    evaluated = min(eval_users, config.eval_sample_users) if config.eval_sample_users else eval_users
    ranked = n_users + evaluated * SCORERS_RANKED + n_items  # generation, evaluation, similar items
    rows = n_users * config.top_k
    write_rate = WRITE_ROWS_PER_S.get(run.engine.dialect.name, WRITE_ROWS_PER_S["sqlite"])
    return MARGIN * (ranked * per_user * IN_DAG_OVERHEAD + rows / write_rate)


def spent_seconds(run: RunContext) -> float:
    """The night's work so far: the seconds of this run's finished stages, plus the running
    ones' time so far (a task cleared hours later counts its own work, not the hours between)."""
    now = as_utc(utcnow())
    spent = 0.0
    for stage in db.stage_timings(run.db, run.tables, run.run_id):
        if stage["status"] == "success" and stage["seconds"] is not None:
            spent += float(stage["seconds"])
        elif stage["status"] == "running" and (started := as_utc(stage["started_at"])) is not None:
            spent += max(0.0, (now - started).total_seconds())
    return spent


def plan(run: RunContext, stage: str, n_users: int, n_items: int, eval_users: int,
         after_s: float | None = None) -> Plan:
    """The training budget of `stage` (a key of SHARES) tonight. `after_s`: the later stages'
    cost when already measured for this night (the refit reuses fine-tuning's)."""
    config = run.config
    stage_cap = config.train.train_minutes or float("inf")
    night = config.night_minutes
    if not night:
        return Plan(stage, config.train.train_minutes, 0.0, 0.0, 0.0)
    after = after_training_seconds(run, n_users, n_items, eval_users) if after_s is None else after_s
    spent = spent_seconds(run)
    left_min = (night * 60.0 - spent - after) / 60.0
    minutes = max(SMALLEST_MINUTES, min(stage_cap, SHARES[stage] * left_min))
    chosen = Plan(stage, minutes, spent, after, night)
    cut = " (cut by the night)" if minutes < stage_cap else ""
    if process_group()[0] != 0:  # DDP: rank 0 says and keeps it (over_budget makes the ranks agree)
        return chosen
    log.info("night budget %.0f min: %.1f min spent, %.1f min kept for the stages after training; %s trains "
             "for at most %.1f min%s", night, spent / 60, after / 60, stage.split("_")[0], minutes, cut, extra=PROGRESS)
    _keep(run, chosen)
    return chosen


def with_budget(train: TrainConfig, budget: Plan) -> TrainConfig:
    return dataclasses.replace(train, train_minutes=budget.minutes)


def _keep(run: RunContext, chosen: Plan) -> None:
    key = run.path(layout.NIGHT)
    plans = run.store.read_json(key)["plans"] if run.store.exists(key) else []
    plans = [p for p in plans if p["stage"] != chosen.stage] + [chosen.as_dict()]
    run.store.write_json(key, {"plans": plans})
