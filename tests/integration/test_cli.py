"""`recsys` as an operator runs it: a subprocess, its exit code, and every line it prints."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
import sqlalchemy as sa

from recsys_tasks.data.sources import write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions
from recsys_tasks.data.validation import profile
from recsys_tasks.storage.artifacts import ArtifactStore
from recsys_tasks.storage.layout import last_good_profile

PASSWORD = "Pw-n0t-in-any-log-7731"


def recsys(*args, env, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "recsys_tasks.ops.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def clean_env(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_") or k == "RECSYS_TASK_RETRIES"}
    return {**env, "RECSYS_HOME": str(home), **extra}


def write_events_csv(path: Path, users=40, items=30, seed=1) -> Path:
    frame = generate_interactions(SyntheticSpec(users=users, items=items, topics=3, seed=seed))
    frame = frame.rename(columns={"user_id": "uid", "item_id": "product", "ts": "created"})
    frame.to_csv(path, index=False)
    return path


def test_validate_uses_the_deployment_column_map_quietly_and_leaves_nothing_behind(tmp_path):
    source = write_events_csv(tmp_path / "events.csv")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = clean_env(tmp_path / "home", RECSYS_SOURCE_COLUMNS="user_id=uid,item_id=product,ts=created", TMPDIR=str(scratch))
    result = recsys("validate", "--source", str(source), "--report", str(tmp_path / "report.json"), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("validation passed")
    assert result.stderr == ""  # no Great Expectations chatter
    assert len(result.stdout.splitlines()) < 10
    assert list(scratch.iterdir()) == []  # GX's temporary Data Docs folder is gone
    assert json.loads((tmp_path / "report.json").read_text())["passed"] is True


def test_validate_runs_the_dags_drift_checks_against_the_last_good_log(tmp_path):
    source = write_events_csv(tmp_path / "events.csv")
    env = clean_env(tmp_path / "home", RECSYS_SOURCE_COLUMNS="user_id=uid,item_id=product,ts=created")
    big = generate_interactions(SyntheticSpec(users=400, items=30, topics=3, seed=1))
    # what a nightly run leaves behind after a log of 10x the volume passed
    store = ArtifactStore(str(tmp_path / "home" / "artifacts"))
    store.write_json(last_good_profile(str(source)), {**profile(big), "run_id": "r1"})
    result = recsys("validate", "--source", str(source), env=env)
    assert result.returncode == 2
    rows = len(pd.read_csv(source))
    assert (f"volume change vs the last good run of this source: observed {rows}; the last good run of this source: "
            f"{len(big)} rows; allowed: {int(len(big) * 0.5)}-{int(len(big) * 3)} rows") in result.stdout, result.stdout
    relaxed = recsys("validate", "--source", str(source), "--param", "max_volume_drop=0.99", env=env)
    assert "volume change" not in relaxed.stdout
    # another file is a new source: not judged by this one's history
    other = write_events_csv(tmp_path / "other.csv")
    fresh = recsys("validate", "--source", str(other), env=env)
    assert fresh.returncode == 0 and "new source: no history to compare" in fresh.stdout, fresh.stdout


def test_show_and_runs_say_what_is_there(tmp_path):
    env = clean_env(tmp_path, RECSYS_DB_URL=f"sqlite:///{tmp_path / 'r.db'}")
    missing = recsys("show", "--run-id", "nope", env=env)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: no run 'nope' in sqlite:///{tmp_path / 'r.db'}; `recsys runs` lists them"
    ]
    empty = recsys("runs", env=env)
    assert empty.returncode == 0 and empty.stdout.startswith("no runs yet")


def test_an_unreadable_source_is_one_line_not_a_traceback(tmp_path):
    result = recsys("validate", "--source", str(tmp_path / "absent.csv"), env=clean_env(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "absent.csv" in lines[0]
    assert "Traceback" not in result.stderr


def test_run_publishes_through_the_recsys_db_connection_and_reports_it(tmp_path, postgres_url):
    source = tmp_path / "events.parquet"
    write_interactions(generate_interactions(SyntheticSpec(users=300, items=120, topics=6, seed=3)), str(source))
    schema = postgres_url.rsplit("%3D", 1)[1]
    connection = f"postgresql://postgres:{quote(PASSWORD)}@127.0.0.1:5432/test?options={quote(f'-csearch_path={schema}')}"
    env = clean_env(tmp_path / "home", RECSYS_SOURCE_URI=str(source), AIRFLOW_CONN_RECSYS_DB=connection, RECSYS_TASK_RETRIES="0")
    result = recsys(
        "run",
        "--param",
        "top_k=7",
        "--param",
        "epochs=6",
        "--param",
        "pretrain_epochs=1",
        "--param",
        "gate_min_lift=-0.5",
        "--param",
        "num_shards=2",
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "published" and summary["rows_written"] == 300 * 7
    assert summary["results_db"].startswith("postgresql+psycopg://postgres:***@127.0.0.1")
    assert PASSWORD not in result.stdout + result.stderr

    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM recommendations_current").scalar() == 300 * 7
        stored = conn.exec_driver_sql("SELECT source_uri, coalesce(message, '') FROM recsys_runs").all()
    engine.dispose()
    assert stored and all(PASSWORD not in " ".join(row) for row in stored)

    runs = recsys("runs", env=env)
    assert runs.returncode == 0 and summary["run_id"] in runs.stdout and "published" in runs.stdout
    assert PASSWORD not in runs.stdout


def test_bench_pretrains_as_the_nightly_by_default_and_reports_seeds_and_time_to_quality(tmp_path):
    events = tmp_path / "events.csv"
    write_interactions(generate_interactions(SyntheticSpec(users=120, items=40, topics=4, seed=3)), str(events))
    small = ["--set", "d_model=16", "--set", "n_layers=1", "--set", "max_len=12", "--set", "batch_size=32",
             "--epochs", "2", "--patience", "2", "--pretrain-epochs", "1"]
    out = tmp_path / "bench.json"
    done = recsys("bench", "--data", str(events), "--out", str(out), "--seeds", "1,2", "--trace-test", "0.0", *small,
                  env=clean_env(tmp_path))
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    assert [r["train"]["seed"] for r in figures["runs"]] == figures["summary"]["seeds"] == [1, 2]
    for run in figures["runs"]:
        assert run["pretrain_objectives"] == ["contrastive"]  # the nightly's, with no flag
        assert run["model"]["d_model"] == 16 and run["train"]["epochs"] == 2
        assert all("test" in h and h["seconds_with_validation"] >= h["seconds"] for h in run["history"])
        assert run["time_to_target"]["epoch"] == 1  # any model reaches 0.0
    ndcg = [r["metrics"]["NDCG@10"] for r in figures["runs"]]
    assert figures["summary"]["test_ndcg@10"]["mean"] == pytest.approx(sum(ndcg) / 2, abs=1e-4)
    assert "2 seeds: test NDCG@10" in done.stdout and "reached 0.0 after" in done.stdout

    alone = recsys("bench", "--data", str(events), "--out", str(out), "--pretrain", "none", *small, env=clean_env(tmp_path))
    assert alone.returncode == 0, alone.stderr
    assert json.loads(out.read_text())["pretrain_objectives"] == []

    wrong = recsys("bench", "--data", str(events), "--out", str(out), "--set", "heads=1", env=clean_env(tmp_path))
    assert wrong.returncode == 2
    assert "heads=1" in wrong.stderr and "n_heads" in wrong.stderr and "Traceback" not in wrong.stderr


def test_demo_data_never_prints_the_password_of_the_url_it_writes_to(tmp_path, postgres_url):
    secret = "s3cr3t-Passw0rd"
    url = postgres_url.replace("postgres@", f"postgres:{secret}@", 1)
    assert secret in url  # trust auth here: the password is ignored, but it must not be shown
    done = recsys("demo-data", "--users", "30", "--items", "20", "--out", url.replace("?", "?table=interactions&", 1),
                  env=clean_env(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote" in done.stdout and secret not in done.stdout + done.stderr and "***" in done.stdout


def test_models_promote_asks_twice_for_a_rejected_version_and_says_when_readers_change(tmp_path, monkeypatch):
    import pandas as pd

    from recsys_tasks import db as results_db
    from recsys_tasks.config import config_from_env
    from recsys_tasks.storage import registry
    from recsys_tasks.storage.deployment import Deployment

    env = clean_env(tmp_path)
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    config = config_from_env({})
    with Deployment(config) as dep:
        dep.writable()
        rows = pd.DataFrame({"user_id": ["1", "1"], "rank": [1, 2], "item_id": ["a", "b"], "score": 1.0, "model_version": "v-1"})
        results_db.publish_recommendations(dep.engine, dep.tables, "run-1", rows, retain_runs=3)
        results_db.record_run(dep.engine, dep.tables, "run-1", "published", model_version="v-1")
        for version, run in (("v-1", "run-1"), ("v-2", "run-2")):
            dep.store.write_bytes(f"models/{version}/model.pt", b"weights")
            dep.store.write_json(f"models/{version}/lineage.json", {"run_id": run})
        dep.store.write_json("runs/run-2/gate.json", {"blessed": False, "candidate": "v-2",
                                                       "reason": "NDCG@10 0.1000 <= floor 0.2000"})
        registry.promote(dep.store, "v-1")
    once = recsys("models", "promote", "v-2", env=env)
    assert once.returncode == 2 and "the gate rejected v-2: NDCG@10 0.1000 <= floor 0.2000" in once.stderr
    assert "--over-gate" in once.stderr and registry.production_version(ArtifactStore(config.artifact_root)) == "v-1"
    twice = recsys("models", "promote", "v-2", "--over-gate", env=env)
    assert twice.returncode == 0, twice.stderr
    assert "production is now v-2" in twice.stdout and "over the gate's rejection" in twice.stdout
    assert "readers of recommendations_current keep v-1's lists (run run-1) until recsys_regenerate" in twice.stdout
    back = recsys("models", "rollback", env=env)
    assert back.returncode == 0 and "production is now v-1" in back.stdout


def test_ctrl_c_or_sigterm_stops_a_run_at_once_marks_it_failed_and_readers_keep_theirs(tmp_path):
    import signal
    import time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    alerts = []

    class Webhook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            alerts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = HTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    # retries on, and quick: an interrupted task must not use them
    env = clean_env(tmp_path, RECSYS_TASK_RETRIES="2", RECSYS_RETRY_DELAY_S="1", AIRFLOW_HOME=str(tmp_path / "airflow"),
                    RECSYS_ALERT_WEBHOOK=f"http://127.0.0.1:{hook.server_port}/hook")
    out = f"sqlite:///{tmp_path / 'recsys.db'}?table=interactions"
    assert recsys("demo-data", "--users", "800", "--items", "200", "--out", out, env=env).returncode == 0
    first = recsys("run", "--param", "epochs=2", "--param", "pretrain_epochs=0", "--param", "gate_min_lift=-0.9", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'recsys.db'}")
    with engine.connect() as conn:
        published = conn.exec_driver_sql("SELECT DISTINCT run_id FROM recommendations_current").scalar_one()
    alerts.clear()  # the first run's (none: it published)

    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "recsys_tasks.ops.cli", "run", "--param", "epochs=200", "--param", "pretrain_epochs=0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        seen = []
        for line in proc.stdout:  # the progress lines, as the operator sees them
            seen.append(line)
            if "next_item epoch" in line:
                break
        assert proc.poll() is None, "".join(seen)
        sent = time.monotonic()
        proc.send_signal(signum)
        rest = proc.communicate(timeout=60)[0]
        assert time.monotonic() - sent < 30 and proc.returncode == code, "".join(seen) + rest
        name = signal.Signals(signum).name
        assert f"interrupted ({name}): marked failed, not retried; readers keep run {published}" in rest, rest
        assert "retrying in" not in rest and "Traceback" not in rest
        with engine.connect() as conn:
            status, message = conn.exec_driver_sql(
                "SELECT status, message FROM recsys_runs ORDER BY started_at DESC LIMIT 1").one()
            readers = conn.exec_driver_sql("SELECT DISTINCT run_id FROM recommendations_current").scalars().all()
        assert status == "failed" and f"interrupted by {name}" in message
        assert readers == [published]
        assert len(alerts) == 1 and f"interrupted by {name}" in alerts[0]["reason"], alerts  # one alert per stop
        alerts.clear()
    engine.dispose()
    hook.shutdown()
