"""Judging a candidate: full-ranking test metrics against baselines, then the gate."""

from __future__ import annotations

import logging

import numpy as np
import torch

from recsys_tasks import PROGRESS, db
from recsys_tasks.data.prepare import Sequences, item_popularity
from recsys_tasks.learning.training import resolve_device
from recsys_tasks.metrics import difference_interval, list_overlap, mean_covariance, per_user
from recsys_tasks.pipeline import telemetry
from recsys_tasks.pipeline.context import RunContext
from recsys_tasks.pipeline.inputs import load_data, scorer_for
from recsys_tasks.pipeline.notify import AlertTargets, notify_rejection
from recsys_tasks.scoring.evaluation import (
    BASELINES,
    Scorer,
    baseline_scorer,
    ranked_metrics,
)
from recsys_tasks.scoring.inference import top_k_for_users
from recsys_tasks.scoring.report import SCORER_NAMES, metrics_table, write_evaluation_report
from recsys_tasks.storage import layout, registry

log = logging.getLogger(__name__)


def data_line(run: RunContext) -> str:
    """What the candidate was trained on and what its events meant, for the report."""
    if not run.store.exists(run.path(layout.PREPARED)):
        return ""
    p = run.store.read_json(run.path(layout.PREPARED))
    line = (f"Trained on {p['users']} users, {p['items']} items, {p['events']} events ({p['rows_extracted']} extracted); "
            f"repeated events: `{p.get('dedup_keep')}` kept; event weights `{p.get('event_weights')}` "
            f"({p.get('weighted_targets', 0)} targets weigh other than 1)")
    if p.get("min_value") is not None:
        line += f"; {p.get('below_min_value', 0)} events below min_value {p['min_value']} not positives"
    return line + "."


def evaluation_sample(users: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A fixed, seeded sample of `size` evaluation users (all of them when `size` is 0 or more)."""
    if not size or len(users) <= size:
        return users
    return np.sort(np.random.default_rng(seed).choice(users, size, replace=False))


def evaluate(run: RunContext, sequences: str, model_version: str) -> dict:
    """Test metrics of the candidate, production (when there is one) and the baselines,
    on the same users: each user's last item, all items ranked, seen items excluded."""
    config = run.config
    seqs, split = load_data(run, sequences)
    device = resolve_device(config.train.device)
    popularity = item_popularity(seqs, split)
    # the item-to-item baseline: EASE while its n x n inverse is affordable, item-kNN beyond
    item_to_item = "ease" if seqs.n_items <= config.ease_max_items else "item_knn"
    test_history_end = split.train_end + 1  # the validation item joins the history
    scorers = {"model": scorer_for(run, model_version, seqs, device, history_end=test_history_end)}
    scorers |= {name: baseline_scorer(name, seqs, split.train_end) for name in ("popularity", item_to_item)}
    production = run.production
    judged_as = None
    if production and production != model_version:
        # a refitted production model trained on the held-out events of users with nothing new
        # since; it is judged, as the candidate is, by its twin that did not (registry.judged_version)
        judged_as = registry.judged_version(run.store, production)
        scorers["production"] = scorer_for(run, judged_as, seqs, device, history_end=test_history_end)
    users = evaluation_sample(split.eval_users, config.eval_sample_users, config.train.seed)
    results: dict = {}
    ranks: dict[str, np.ndarray] = {}
    for name, scorer in scorers.items():
        results[name], ranks[name] = ranked_metrics(scorer, seqs, users, test_history_end, popularity,
                                                    exclude_history=config.repeats == "exclude")
    results.update(eval_users=int(len(users)), production_version=production)
    if len(users) < len(split.eval_users):  # a sample: the gate's comparisons carry its sampling error
        per = {name: per_user(config.selection_metric, r) for name, r in ranks.items()}
        results["sample"] = {"users": int(len(users)), "of": int(len(split.eval_users)), "seed": config.train.seed,
                             "metric": config.selection_metric, "covariance": mean_covariance(per)}
    if judged_as and judged_as != production:
        results["production_judged_as"] = judged_as
    results["published"] = compare_with_published(run, scorers["model"], seqs)
    run.store.write_json(layout.model_file(model_version, layout.METRICS), results)
    run.store.write_json(run.path(layout.EVALUATION), {"model_version": model_version, **results})
    history = db.metric_history(run.engine, run.tables, config.selection_metric)
    history.append({
        "run_id": run.run_id, "status": "this run", "model_version": model_version,
        "model": results["model"][config.selection_metric], "popularity": results["popularity"][config.selection_metric],
    })
    report_uri = write_evaluation_report(run.store, run.path(layout.REPORT), model_version, results, history, data_line(run),
                                        config.selection_metric)
    log.info("test metrics over %d users:\n%s\nreport: %s", results["eval_users"], metrics_table(results), report_uri)
    run.record("evaluated", model_version=model_version, metrics=results)
    return results


def compare_with_published(run: RunContext, scorer: Scorer, seqs: Sequences) -> dict | None:
    """The candidate's top-K for a sample of users against what `recommendations_current`
    shows them now: overlap, churn and coverage change. None before the first publish."""
    config = run.config
    if db.current_run_id(run.db, run.tables) is None:
        return None
    rng = np.random.default_rng(config.train.seed)
    sample = np.sort(rng.choice(seqs.n_users, min(config.churn_sample_users, seqs.n_users), replace=False))
    with torch.no_grad():
        candidate = top_k_for_users(scorer, seqs, sample, config.top_k, config.min_history)
    published = db.read_current_for(run.engine, run.tables, [seqs.user_ids[u] for u in sample])
    published = published[published["rank"] <= config.top_k]
    comparison = list_overlap(candidate, published, config.top_k, seqs.n_items)
    if comparison["users"]:
        log.info(
            "against the published run, over %d users: overlap@%d %.3f, churn %.3f, coverage %.3f -> %.3f",
            comparison["users"], config.top_k, comparison[f"overlap@{config.top_k}"], comparison[f"churn@{config.top_k}"],
            comparison["coverage_published"], comparison["coverage_candidate"],
        )
    return {**comparison, "k": config.top_k}


def gate(run: RunContext, model_version: str, evaluation: dict, refit_version: str | None = None) -> dict:
    """Bless the candidate only if it beats the strongest baseline it was evaluated with
    (popularity, EASE or item-kNN) by the configured margin, does not fall behind production
    (when there is one) by more than the tolerance, and does not replace too much of what
    readers see. A rejected candidate leaves production's lists in place; with no production
    model, the strongest baseline's lists are published instead (`publish`, `model_version`:
    what the serving tasks generate, `baseline-<name>` for a baseline). A blessed candidate
    with a refit (`refit_version`: the same training on every event) ships the refit."""
    config = run.config
    metric = config.selection_metric
    candidate = evaluation["model"][metric]
    baselines = {name: evaluation[name][metric] for name in BASELINES if name in evaluation}
    strongest = max(baselines, key=baselines.get)
    floor = baselines[strongest] * (1.0 + config.gate_min_lift)
    others = ", ".join(f"{SCORER_NAMES[n]} {v:.4f}" for n, v in baselines.items() if n != strongest)
    sample = evaluation.get("sample") if (evaluation.get("sample") or {}).get("metric") == metric else None
    # on a sample, a candidate must clear the floor by more than the sampling error, and is held
    # back by production only when it trails by more than that: noise neither blesses nor rejects
    noise = (lambda other, weight: difference_interval(sample["covariance"], "model", other, weight)) if sample else (
        lambda other, weight: 0.0)
    margin = noise(strongest, 1.0 + config.gate_min_lift)
    clears = candidate - floor > margin if sample else candidate > floor
    reasons = [
        f"{metric} {candidate:.4f} {'>' if clears else '<='} floor {floor:.4f}"
        + (f" + {margin:.4f} (95% interval of the difference)" if sample else "")
        + f" set by the strongest baseline, {SCORER_NAMES[strongest]} {baselines[strongest]:.4f} "
        f"(required lift {config.gate_min_lift:+.0%}" + (f"; also evaluated: {others})" if others else ")")
    ]
    blessed = clears
    if "production" in evaluation:
        production = evaluation["production"][metric]
        limit = production * (1.0 - config.gate_max_regression)
        slack = noise("production", 1.0 - config.gate_max_regression)
        holds = candidate >= limit - slack
        blessed = blessed and holds
        reasons.append(
            f"{metric} {candidate:.4f} {'>=' if holds else '<'} production {evaluation['production_version']} "
            + (f"(judged as {evaluation['production_judged_as']}) " if evaluation.get("production_judged_as") else "")
            + f"{production:.4f} less {config.gate_max_regression:.0%} tolerance ({limit:.4f}"
            + (f" - {slack:.4f}, the 95% interval of the difference)" if sample else ")")
        )
    else:
        reasons.append("no production model yet: floors only")
    if sample:
        reasons.append(f"evaluated on a fixed sample of {sample['users']} of {sample['of']} users (seed {sample['seed']})")
    published = evaluation.get("published") or {}
    if published.get("users"):
        churn = published[f"churn@{published['k']}"]
        holds = churn <= config.gate_max_churn
        blessed = blessed and holds
        reasons.append(
            f"churn@{published['k']} {churn:.3f} {'<=' if holds else '>'} bound {config.gate_max_churn:.3f} "
            f"over {published['users']} users of the published run"
        )
    decision = {"blessed": blessed, "candidate": model_version, "model_version": model_version, "publish": blessed}
    if blessed and refit_version:
        decision["model_version"] = refit_version  # judged as the candidate; its figures go with it
        run.store.write_json(layout.model_file(refit_version, layout.METRICS), {**evaluation, "judged_as": model_version})
        reasons.append(f"shipping {refit_version}, the candidate refitted on every event")
    if not blessed and "production" not in evaluation:
        # a first night (nothing in production) never leaves readers with nothing when the run
        # has lists better than none: the strongest baseline's, through the same generation path
        decision.update(publish=True, model_version=layout.baseline_version(strongest), serves=strongest)
        reasons.append(
            f"no production model to keep: publishing the strongest baseline's lists ({SCORER_NAMES[strongest]}) instead"
        )
    decision["reason"] = reason = "; ".join(reasons)
    run.store.write_json(run.path(layout.GATE), decision)
    name = telemetry.metric_name(metric)
    telemetry.gauges({
        f"gate.candidate.{name}": candidate, f"gate.baseline.{name}": baselines[strongest],
        f"gate.production.{name}": evaluation["production"][metric] if "production" in evaluation else None,
        "gate.blessed": 1.0 if blessed else 0.0,
        "gate.churn": published[f"churn@{published['k']}"] if published.get("users") else None,
    })
    if blessed:
        log.info("candidate %s blessed: %s", model_version, reason, extra=PROGRESS)
        run.record("blessed", message=reason)
    elif decision["publish"]:
        log.warning("candidate %s rejected; the %s baseline's lists will be published: %s", model_version, strongest, reason)
        run.record("baseline", model_version=decision["model_version"], message=reason)
    else:
        log.warning("candidate %s rejected, nothing will be published (kept for inspection): %s", model_version, reason)
        run.record("rejected", message=reason)
    if not blessed and (targets := AlertTargets.from_env()):
        readers = (f"the {SCORER_NAMES[strongest]} baseline's lists, published by this run" if decision["publish"]
                   else f"production {evaluation.get('production_version')}'s lists, unchanged")
        reached = notify_rejection(targets, {"run_id": run.run_id, "candidate": model_version,
                                             "readers_see": readers, "reason": reason})
        log.info("rejection notification sent to: %s", ", ".join(reached) or "nobody (delivery failed)")
    return decision
