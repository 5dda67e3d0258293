"""Evaluation and outcome figures as people read them: the scorers' metrics table, the
evaluation report (markdown and plots, written to the artifact store), the outcomes table."""

from __future__ import annotations

import itertools
from typing import Any

from recsys_tasks.metrics import REPORTED_METRICS, SELECTION_METRIC

SCORER_ORDER = ("model", "production", "ease", "item_knn", "popularity")
# how every page, report and message names a scorer (its key stays in figures and param values)
SCORER_NAMES = {"model": "candidate", "production": "production", "ease": "EASE", "item_knn": "item-kNN",
                "popularity": "popularity"}
METRIC_FAMILIES = ("HR", "Recall", "NDCG", "MRR", "coverage", "popularity_percentile")


def metric_order(name: str) -> tuple[int, int, str]:
    """HR@5, HR@10, HR@20, Recall@..., NDCG@..., MRR, coverage@10...: families in reading order,
    cut-offs by number (not as text, where HR@20 sorts before HR@5)."""
    family, _, k = name.partition("@")
    rank = METRIC_FAMILIES.index(family) if family in METRIC_FAMILIES else len(METRIC_FAMILIES)
    return rank, int(k) if k.isdigit() else 0, name


def metrics_table(results: dict[str, Any]) -> str:
    """Plain-text table: one row per metric, one column per scorer (candidate first). Recall@K
    equals HR@K with one held-out item per user: the JSON keeps both names, the table one."""
    names = [n for n in SCORER_ORDER if n in results]
    header = f"  {'metric':<26}" + "".join(f"{SCORER_NAMES.get(n, n):>12}" for n in names)
    rows = [
        f"  {metric:<26}" + "".join(f"{results[n][metric]:>12.4f}" for n in names)
        for metric in sorted(results["model"], key=metric_order) if not metric.startswith("Recall@")
    ]
    return "\n".join([header, *rows])


def published_line(published: dict[str, Any] | None) -> str:
    """One sentence on how the candidate's lists differ from what users see now."""
    if not published or not published.get("users"):
        return "Nothing published yet to compare the candidate's recommendations with."
    k = published["k"]
    return (
        f"Against the published recommendations ({published['users']} users sampled): overlap@{k} "
        f"{published[f'overlap@{k}']:.3f}, churn@{k} {published[f'churn@{k}']:.3f}, items shown "
        f"{published['coverage_published']:.1%} -> {published['coverage_candidate']:.1%} of the catalogue."
    )


def write_evaluation_report(store: Any, prefix: str, model_version: str, results: dict[str, Any], history: list[dict],
                            data: str = "", metric: str = SELECTION_METRIC) -> str:
    """Markdown report with two plots (scorers side by side; the metric across runs), saved
    under `prefix` in the artifact store; `data` says what the model was trained on. Returns
    the report's location."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in SCORER_ORDER if n in results]
    shown = [m for m in REPORTED_METRICS if m in results["model"]]
    figure, (bars, trend) = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        label = SCORER_NAMES.get(name, name)
        bars.bar([x + i * width for x in range(len(shown))], [results[name][m] for m in shown], width, label=label)
    bars.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(shown))], shown)
    bars.set_title(f"candidate {model_version} vs production and baselines")
    bars.legend()
    if history:
        runs = list(range(1, len(history) + 1))
        trend.plot(runs, [h["model"] for h in history], marker="o", label="candidate")
        trend.plot(runs, [h["popularity"] or 0 for h in history], marker=".", linestyle="--", label="popularity")
        for x, h in zip(runs, history, strict=True):
            if h["status"] in {"rejected", "failed"}:
                trend.annotate(h["status"], (x, h["model"]), fontsize=7, color="red")
        trend.set_xticks(runs)
        trend.legend()
    trend.set_title(f"{metric} of the candidate across runs (oldest first)")
    trend.set_xlabel("run")
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=110)
    plt.close(figure)
    store.write_bytes(f"{prefix}/evaluation.png", image.getvalue())
    markdown = "\n".join([
        f"# Evaluation of {model_version}",
        "",
        f"{results['eval_users']} users; each user's last item held out, every item ranked, seen items excluded.",
        f"Production at evaluation time: {results.get('production_version') or 'none'}.",
        published_line(results.get("published")),
        *([data] if data else []),
        "",
        "```",
        metrics_table(results),
        "```",
        "",
        "![metrics](evaluation.png)",
        "",
    ])
    return store.write_bytes(f"{prefix}/evaluation.md", markdown.encode())


def outcomes_table(rows: list[dict[str, Any]]) -> str:
    """`recsys outcomes` and the outcomes report: per scoring run, one line per group, then the uplift."""

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None or value != value else format(value, fmt)  # None and NaN: not measured

    lines: list[str] = []
    for (run_id, published), group in itertools.groupby(rows, key=lambda r: (r["run_id"], r["published_run_id"])):
        group = list(group)
        since = group[0].get("events_since")
        lines += ["" if lines else None, f"run {run_id} scored the lists of run {published}"
                  + (f" against the events after {since}" if since else "") + f" (K = {group[0]['k']})",
                  f"  {'model':<14} {'strategy':<10} {'variant':<8} {'listed':>7} {'active':>7} {'hits':>6} "
                  f"{'HR@K':>7} {'NDCG@K':>7} {'cover':>6} {'w.hits':>8}"]
        for r in group:
            lines.append(
                f"  {r['model_version'][:14]:<14} {r['strategy']:<10} {r['variant']:<8} {r['listed_users']:>7} "
                f"{r['active_users']:>7} {r['hit_users']:>6} {num(r['hit_rate'], '.4f'):>7} {num(r['ndcg'], '.4f'):>7} "
                f"{num(r['coverage'], '.3f'):>6} {num(r['weighted_hits'], '.1f'):>8}"
            )
        for r in group:
            if r.get("uplift") is not None and r["uplift"] == r["uplift"]:
                lines.append(f"  uplift of the model over control (hit rate@{r['k']}): {r['uplift']:+.1%} "
                             f"(95% interval {r['uplift_low']:+.1%} to {r['uplift_high']:+.1%})")
    return "\n".join(line for line in lines if line is not None)
