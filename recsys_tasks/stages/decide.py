"""Judging a candidate: full-ranking test metrics against baselines, then the gate."""

from __future__ import annotations

import logging

from recsys_tasks.evaluation import evaluate as evaluate_scorer
from recsys_tasks.evaluation import model_scorer, popularity_scorer
from recsys_tasks.model import SequenceEncoder
from recsys_tasks.prepare import item_popularity
from recsys_tasks.stages.context import RunContext
from recsys_tasks.stages.learn import load_data, load_torch
from recsys_tasks.training import resolve_device

log = logging.getLogger(__name__)


def load_model(run: RunContext, model_version: str) -> SequenceEncoder:
    return SequenceEncoder.from_checkpoint(load_torch(run, f"models/{model_version}/model.pt")).eval()


def evaluate(run: RunContext, sequences: str, model_version: str) -> dict:
    """Test metrics (each user's last item, all items ranked, seen items excluded)."""
    seqs, split = load_data(run, sequences)
    device = resolve_device(run.config.train.device)
    model = load_model(run, model_version).to(device)
    test_history_end = split.train_end + 1  # the validation item joins the history
    results = {
        "model": evaluate_scorer(model_scorer(model, seqs, device), seqs, split.eval_users, test_history_end),
        "popularity": evaluate_scorer(popularity_scorer(item_popularity(seqs, split)), seqs, split.eval_users, test_history_end),
    }
    results["eval_users"] = int(len(split.eval_users))
    run.store.write_json(f"models/{model_version}/metrics.json", results)
    run.store.write_json(run.path("evaluation.json"), {"model_version": model_version, **results})
    lines = [f"{'metric':<10}{'model':>10}{'popularity':>12}"]
    lines += [f"{m:<10}{results['model'][m]:>10.4f}{results['popularity'][m]:>12.4f}" for m in results["model"]]
    log.info("test metrics over %d users:\n%s", results["eval_users"], "\n".join(lines))
    run.record("evaluated", model_version=model_version, metrics=results)
    return results


def gate(run: RunContext, model_version: str, evaluation: dict) -> dict:
    """Bless the candidate only if it beats popularity by the configured margin."""
    metric = run.config.gate_metric
    candidate = evaluation["model"][metric]
    floor = evaluation["popularity"][metric] * (1.0 + run.config.gate_min_lift)
    blessed = candidate > floor
    reason = (
        f"{metric} {candidate:.4f} {'>' if blessed else '<='} popularity floor {floor:.4f} "
        f"(popularity {evaluation['popularity'][metric]:.4f}, required lift {run.config.gate_min_lift:+.0%})"
    )
    decision = {"blessed": blessed, "model_version": model_version, "reason": reason}
    run.store.write_json(run.path("gate.json"), decision)
    if blessed:
        log.info("candidate %s blessed: %s", model_version, reason)
        run.record("blessed", message=reason)
    else:
        log.warning("candidate %s rejected, nothing will be published: %s", model_version, reason)
        run.record("rejected", message=reason)
    return decision
