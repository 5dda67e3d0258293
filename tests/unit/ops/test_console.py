"""What the console shows, read from a small deployment seeded by hand (no Airflow, no training)."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from recsys_tasks import db as results_db
from recsys_tasks.clock import utcnow
from recsys_tasks.config import config_from_env
from recsys_tasks.errors import ArtifactNotFoundError, GateRejectedError, RecsysError
from recsys_tasks.ops import console, lookup
from recsys_tasks.storage import registry
from recsys_tasks.storage.layout import run_key

GOOD, BAD = "scheduled__2026-11-20T02:00:00+00:00", "scheduled__2026-11-21T02:00:00+00:00"
REASON = ("NDCG@10 0.1000 <= floor 0.2000 set by the strongest baseline, EASE 0.2000 (required lift +0%; also "
          "evaluated: popularity 0.0500); NDCG@10 0.1000 < production v-1 0.1500 less 2% tolerance (0.1470); "
          "churn@3 0.667 <= bound 0.900 over 2 users of the published run")


def _metrics(model: float, production: float | None = None, churn: float | None = None) -> dict:
    metrics = {"model": {"NDCG@10": model, "HR@10": 2 * model}, "ease": {"NDCG@10": 0.2, "HR@10": 0.4},
               "popularity": {"NDCG@10": 0.05, "HR@10": 0.1}, "eval_users": 2, "production_version": None,
               "published": None}
    if production is not None:
        metrics.update(production={"NDCG@10": production, "HR@10": 0.3}, production_version="v-1")
    if churn is not None:
        metrics["published"] = {"users": 2, "k": 3, "churn@3": churn, "overlap@3": 1 - churn,
                                "coverage_published": 0.5, "coverage_candidate": 0.5}
    return metrics


@pytest.fixture()
def dep(recsys_home):
    """Two runs: GOOD published v-1 for users 1 and 2; BAD (v-2) was rejected against it."""
    config = config_from_env()
    dep = console.Deployment(config)
    tables, store = dep.tables, dep.store
    results_db.apply_schema(dep.engine, tables)
    rows = pd.DataFrame({"user_id": ["1", "1", "1", "2", "2", "2"], "rank": [1, 2, 3] * 2,
                         "item_id": ["b", "c", "d", "a", "c", "d"], "score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
                         "model_version": "v-1"})
    results_db.record_run(dep.engine, tables, GOOD, "evaluated", metrics=_metrics(0.15))
    results_db.publish_recommendations(dep.engine, tables, GOOD, rows, retain_runs=3)
    results_db.record_run(dep.engine, tables, GOOD, "published", model_version="v-1", rows_written=6,
                          published_at=utcnow(), message="NDCG@10 0.1500 > floor (a; b); no production")
    results_db.record_run(dep.engine, tables, BAD, "rejected", model_version="v-2",
                          metrics=_metrics(0.1, 0.15, 0.667), message=REASON)
    for stage, seconds in (("extract", 1.0), ("finetune", 4.0), ("publish", 0.0)):
        results_db.record_stage(dep.engine, tables, BAD, stage, "success", utcnow(), seconds)
    bad = run_key(BAD)
    store.write_json(f"runs/{bad}/gate.json", {"blessed": False, "model_version": "v-2", "reason": REASON})
    store.write_json(f"runs/{bad}/validation.json", {
        "passed": True, "rows": 9, "checks": [{}, {}], "failures": [],
        "warnings": [{"expectation": "freshness", "column": "ts", "observed": "2026-01-01"}]})
    store.write_bytes(f"runs/{bad}/data_docs/index.html", b"<html>docs</html>")
    # user ids as the source had them (integers); events of user 1 at t=1..4, of user 2 at t=5
    events = pd.DataFrame({"user_id": [1, 2, 1, 1, 1], "item_id": ["a", "b", "e", "f", "g"],
                           "ts": pd.to_datetime([1, 5, 2, 3, 4], unit="D", utc=True), "event_type": "view", "value": 1.0})
    store.write_frame(f"runs/{run_key(GOOD)}/interactions.parquet", events)
    for n, (version, run) in enumerate((("v-1", GOOD), ("v-2", BAD))):
        store.write_bytes(f"models/{version}/model.pt", b"weights")
        store.write_json(f"models/{version}/lineage.json", {
            "run_id": run, "created_at": f"2026-11-2{n}T02:30:00+00:00", "device": "cpu", "training_processes": 1,
            "source_uri": "postgresql+psycopg://app:hunter2@db/x", "data": {"users": 2, "items": 7, "events": 5}})
        store.write_json(f"models/{version}/metrics.json", _metrics(0.15 - 0.05 * n))
    registry.promote(store, "v-1", GOOD)
    yield dep
    dep.close()


def test_runs_newest_first_with_verdict_metric_and_churn(dep):
    bad, good = console.runs(dep)
    assert (bad["run_id"], bad["status"], bad["current"]) == (BAD, "rejected", False)
    assert (good["status"], good["current"], good["rows_written"]) == ("published", True, 6)
    assert bad["candidate"] == 0.1 and bad["production"] == 0.15 and bad["best_baseline"] == ("ease", 0.2)
    assert bad["churn"] == {"k": 3, "churn": 0.667, "overlap": 1 - 0.667, "users": 2}
    assert good["churn"] is None
    assert len(bad["reasons"]) == 3 and bad["reasons"][0].endswith("popularity 0.0500)")  # `;` in (...) kept
    assert good["reasons"] == ["NDCG@10 0.1500 > floor (a; b)", "no production"]


def test_run_detail_reads_gate_validation_and_timings(dep):
    run = console.run_detail(dep, BAD)
    assert run["gate"] == {"blessed": False, "reasons": console.reasons(REASON)}
    assert run["scorers"] == ["candidate", "production", "EASE", "popularity"]
    assert dict(run["metrics"])["NDCG@10"] == [0.1, 0.15, 0.2, 0.05]
    assert run["validation"]["passed"] and run["validation"]["warnings"] == ["freshness on ts: observed 2026-01-01"]
    assert run["data_docs"] and not run["report_plot"]
    assert [(t["stage"], t["share"]) for t in run["timings"]] == [("extract", 0.25), ("finetune", 1.0), ("publish", 0.0)]
    assert console.run_detail(dep, "no such run") is None


def test_only_data_docs_and_reports_are_served(dep):
    key = run_key(BAD)
    assert console.run_artifact(dep, key, "data_docs/index.html") == b"<html>docs</html>"
    for path in ("gate.json", "data_docs/../gate.json", "../../models/PRODUCTION.json", "/etc/passwd"):
        with pytest.raises(ArtifactNotFoundError):
            console.run_artifact(dep, key, path)
    for bad_key, path in (("..", "data_docs/index.html"), (".", "data_docs/index.html"), (key, "data_docs/./index.html"),
                          (key, "data_docs//index.html"), (key, "data_docs/missing.html")):
        with pytest.raises(ArtifactNotFoundError) as refused:
            console.run_artifact(dep, bad_key, path)
        assert str(dep.config.artifact_root) not in str(refused.value)  # no server path in what the page shows


def test_data_docs_are_served_self_contained(dep):
    key = run_key(BAD)
    page = ('<html><head><link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/b.css">'
            '<script src="https://code.jquery.com/jquery.js"></script><style>.x{background:url(\'https://cdn.test/l.png\')}'
            '</style></head><body><img src="https://assets.test/logo.png?d=now"><a href="https://gx.test/docs">docs</a>'
            '<script>vegaEmbed("#c", {})</script><table><tr><td>ok</td></tr></table></body></html>')
    dep.store.write_bytes(f"runs/{key}/data_docs/validations/v.html", page.encode())
    served = console.run_artifact(dep, key, "data_docs/validations/v.html").decode()
    assert "<table><tr><td>ok</td></tr></table>" in served and ">docs</a>" in served
    assert "<script" not in served and "http" not in served and "//" not in served.replace("</", "")


def test_quality_per_run_oldest_first_and_its_chart(dep):
    history = console.quality(dep)
    assert [h["run_id"] for h in history] == [GOOD, BAD]
    assert history[1]["scores"] == {"model": 0.1, "production": 0.15, "ease": 0.2, "popularity": 0.05}
    svg = console.quality_svg(history)
    assert svg.startswith("<svg") and svg.count("<polyline") == 4  # candidate, production, EASE, popularity
    assert svg.count('fill="#fff"') == 1  # the rejected candidate is hollow
    assert console.quality_svg([]) == ""


def test_outcomes_rows_and_their_chart_come_from_the_outcomes_table(dep):
    from recsys_tasks.scoring import outcomes

    assert console.outcomes(dep) == {"rows": [], "history": []}
    lists = pd.DataFrame({"user_id": ["a", "a", "b", "b"], "rank": [1, 2, 1, 2], "item_id": ["x", "y", "x", "z"],
                          "model_version": "v-1", "strategy": "model", "variant": ["model", "model", "control", "control"]})
    events = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["y", "q"], "event_type": ["view", "view"]})
    for run, stamp in ((GOOD, "2026-11-20"), (BAD, "2026-11-21")):
        rows = outcomes.score_lists(lists, events, {}, catalogue_items=10).assign(
            run_id=run, published_run_id="published-run", scored_at=pd.Timestamp(stamp, tz="UTC").to_pydatetime())
        results_db.write_outcomes(dep.engine, dep.tables, rows)
    found = console.outcomes(dep)
    assert [r["run_id"] for r in found["history"]] == [GOOD, BAD]  # oldest first
    assert found["history"][0]["scores"] == {"model": 1.0, "control": 0.0}
    assert found["rows"][0]["run_id"] == BAD and len(found["rows"]) == 2 * 5
    svg = console.outcomes_svg(found["history"])
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and "control (holdout)" in svg


def test_models_with_lineage_and_promote_rollback_through_the_registry(dep):
    listed = console.models(dep)
    assert listed["production"]["model_version"] == "v-1"
    assert [(v["version"], v["production"], v["run_status"]) for v in listed["versions"]] == [
        ("v-2", False, "rejected"), ("v-1", True, "published")]
    assert "hunter2" not in listed["versions"][0]["source"]
    assert listed["versions"][0]["rejected"] == REASON and listed["versions"][1]["rejected"] is None
    assert listed["readers"]["model_version"] == "v-1" and listed["readers"]["run_id"] == GOOD
    with pytest.raises(GateRejectedError, match="the gate rejected v-2: NDCG@10 0.1000 <= floor"):
        console.promote(dep, "v-2", "ada")  # one confirmation is not enough for a rejected version
    assert registry.production_version(dep.store) == "v-1"
    assert console.promote(dep, "v-2", "ada", over_gate=True)["reason"] == "promoted by ada over the gate's rejection"
    assert registry.production_version(dep.store) == "v-2"
    # the registry changed; readers did not, and the note says until when
    assert console.models(dep)["readers"]["model_version"] == "v-1"
    assert console.readers_note(dep).startswith("readers of recommendations_current keep v-1's lists")
    assert console.models(dep)["history"][0]["model_version"] == "v-1"
    assert console.rollback(dep)["model_version"] == "v-1"
    with pytest.raises(RecsysError):
        console.rollback(dep)
    with pytest.raises(RecsysError):
        console.promote(dep, "v-404", "ada")


def test_user_lookup_shows_the_published_list_beside_recent_history(dep):
    found = lookup.user_lookup(dep, "1", history=2)
    assert found["run_id"] == GOOD and found["model_version"] == "v-1"
    assert found["columns"] == ["rank", "item_id", "title", "score", "probability", "reason", "strategy", "variant"]
    assert [(r["rank"], r["item_id"], r["strategy"]) for r in found["rows"]] == [
        (1, "b", "model"),
        (2, "c", "model"),
        (3, "d", "model"),
    ]
    assert [e["item_id"] for e in found["history"]] == ["g", "f"]  # the last two, newest first
    assert found["history"][0]["ts"] == "1970-01-05 00:00 UTC"
    nobody = lookup.user_lookup(dep, "404")
    assert nobody["rows"] == [] and nobody["history"] == []
    assert lookup.sample_users(dep) == ["1", "2"]


def test_variant_and_similar_items_appear_when_published(dep):
    with dep.engine.begin() as conn:  # user 2 in the holdout
        conn.exec_driver_sql(f"UPDATE {dep.tables.results} SET variant = 'control' WHERE user_id = '2'")
    assert lookup.user_lookup(dep, "2")["rows"][0]["variant"] == "control"
    assert lookup.similar_items(dep, "c") == {"item_id": "c", "available": True, "rows": []}  # none published with it
    assert lookup.user_lookup(dep, "someone-new")["fallback"] == []
    with dep.engine.begin() as conn:  # the run's companions, as a publish writes them beside its lists
        conn.execute(sa.text(f"INSERT INTO {dep.tables.similar} VALUES (:r, 'c', 2, 'x', 0.2, :t), (:r, 'c', 1, 'd', 0.3, :t)"),
                     {"r": GOOD, "t": "2026-01-01T00:00:00+00:00"})
        conn.execute(sa.text(f"INSERT INTO {dep.tables.fallback} VALUES (:r, 1, 'hot', 9, :t)"),
                     {"r": GOOD, "t": "2026-01-01T00:00:00+00:00"})
        conn.execute(sa.text(f"INSERT INTO {dep.tables.items} VALUES (:r, 'hot', '<b>Hot</b> pick', NULL, 1, :t), "
                             "(:r, 'b', 'Bee', 'brand=acme', 1, :t)"), {"r": GOOD, "t": "2026-01-01T00:00:00+00:00"})
    assert [r["similar_item_id"] for r in lookup.similar_items(dep, "c")["rows"]] == ["d", "x"]
    assert lookup.user_lookup(dep, "someone-new")["fallback"] == [
        {"rank": 1, "item_id": "hot", "score": 9.0, "title": "<b>Hot</b> pick"}]  # the template escapes it
    assert [r["title"] for r in lookup.user_lookup(dep, "1")["rows"]] == ["Bee", None, None]  # from the run's snapshot


def test_a_fresh_deployment_shows_nothing_and_writes_nothing(recsys_home):
    dep = console.Deployment(config_from_env())
    assert console.runs(dep) == [] and console.quality(dep) == [] and lookup.sample_users(dep) == []
    assert console.models(dep) == {"production": None, "promoted": "", "history": [], "versions": [], "readers": None}
    assert lookup.user_lookup(dep, "1")["run_id"] is None
    assert sa.inspect(dep.engine).get_table_names() == []
    dep.close()
