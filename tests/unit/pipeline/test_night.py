"""The night's budget: training gets what the stages before it spent and the stages after it
will take leave of `night_minutes` (pipeline/night.py), on a real embedded deployment."""

import dataclasses
from datetime import timedelta

import pytest

from recsys_tasks import db
from recsys_tasks.clock import utcnow
from recsys_tasks.config import config_from_env
from recsys_tasks.pipeline import RunContext, night
from recsys_tasks.storage import layout


def context(night_minutes: float, train_minutes: float = 30.0) -> RunContext:
    base = config_from_env()
    return RunContext("night-run", dataclasses.replace(
        base, night_minutes=night_minutes, train=dataclasses.replace(base.train, train_minutes=train_minutes)))


def test_training_gets_its_share_of_what_the_night_leaves(recsys_home):
    run = context(night_minutes=10.0)
    earlier = utcnow() - timedelta(hours=5)  # a task cleared hours later counts the work, not the hours
    db.record_stage(run.db, run.tables, run.run_id, "extract", "success", earlier, 90.0)
    db.record_stage(run.db, run.tables, run.run_id, "prepare", "success", earlier, 30.0)
    db.record_stage(run.db, run.tables, run.run_id, "finetune", "running", utcnow() - timedelta(seconds=60), None)

    plan = night.plan(run, "finetune", n_users=5000, n_items=2000, eval_users=5000)
    assert 180 <= plan.spent_s < 190
    assert 0 < plan.after_training_s < 60
    left = 10.0 - (plan.spent_s + plan.after_training_s) / 60
    assert plan.minutes == pytest.approx(night.SHARES["finetune"] * left)  # < train_minutes: the night cuts it
    refit = night.plan(run, "refit", 5000, 2000, 5000, after_s=plan.after_training_s)
    assert refit.after_training_s == plan.after_training_s and refit.minutes > plan.minutes
    kept = run.store.read_json(run.path(layout.NIGHT))["plans"]
    assert [p["stage"] for p in kept] == ["finetune", "refit"] and kept[0]["train_minutes"] == round(plan.minutes, 2)

    assert night.plan(context(60.0), "finetune", 5000, 2000, 5000).minutes == 30.0  # a long night: train_minutes caps
    assert night.plan(context(1.0), "finetune", 5000, 2000, 5000).minutes == night.SMALLEST_MINUTES  # spent: one epoch
    assert night.plan(context(0.0, train_minutes=7.0), "finetune", 5000, 2000, 5000).minutes == 7.0  # no night


def test_the_stages_after_training_are_costed_by_what_they_rank_and_write(recsys_home):
    run = context(night_minutes=60.0)
    small = night.after_training_seconds(run, n_users=10_000, n_items=5000, eval_users=10_000)
    large = night.after_training_seconds(run, n_users=1_000_000, n_items=5000, eval_users=1_000_000)
    # 100x the users: generation and the publish grow 100x; evaluation stops at eval_sample_users
    assert 20 * small < large
    per_user = night.ranking_seconds_per_user(5000, run.config.model.d_model, run.config.top_k)
    rows = 1_000_000 * run.config.top_k / night.WRITE_ROWS_PER_S["sqlite"]
    assert large > night.MARGIN * rows and large < night.MARGIN * (rows + 5 * 1_200_000 * per_user * night.IN_DAG_OVERHEAD)
