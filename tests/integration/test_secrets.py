"""A password in the database URLs never leaves the process: not in the task logs (captured
from `recsys run`), the CLI's output, the run table as the reader role sees it, nor any
artifact on the (real, local) S3 server."""

import os
import subprocess
import sys
import uuid

import boto3
import sqlalchemy as sa

from recsys_tasks.data.sources import write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions

PASSWORD = "Zz-secret-4815162342"


def test_no_password_in_logs_output_reader_tables_or_artifacts(tmp_path, postgres_url, s3_endpoint):
    db_url = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@")  # trust auth: any password is accepted
    source = f"{db_url}&table=events"
    write_interactions(generate_interactions(SyntheticSpec(users=300, items=120, topics=6, seed=3)), source)
    bucket = f"recsys-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    env.update(
        RECSYS_HOME=str(tmp_path), RECSYS_DB_URL=db_url, RECSYS_SOURCE_URI=source, RECSYS_TASK_RETRIES="0",
        RECSYS_ARTIFACT_ROOT=f"s3://{bucket}/recsys", RECSYS_S3_ENDPOINT_URL=s3_endpoint,
    )

    def recsys(*args):
        return subprocess.run([sys.executable, "-m", "recsys_tasks.ops.cli", *args], capture_output=True, text=True,
                              timeout=600, env=env)

    published = recsys("run", "--param", "epochs=6", "--param", "pretrain_epochs=1", "--param", "num_shards=2",
                       "--param", "gate_min_lift=-0.5")
    assert published.returncode == 0, published.stderr[-3000:]
    # a run that fails on the source: its error names the URL, password and all, where it is raised
    failed = recsys("run", "--param", f"source_uri={db_url}&table=missing_events")
    assert failed.returncode == 1 and "missing_events" in failed.stderr
    # every command that prints a URL: demo-data's target, init-db's database, the outcomes' and runs' source
    demo = recsys("demo-data", "--users", "40", "--items", "20", "--out", f"{db_url}&table=demo_events")
    assert demo.returncode == 0 and "postgres:***@127.0.0.1" in demo.stdout, demo.stdout + demo.stderr
    others = [recsys("runs"), recsys("show"), recsys("models", "show"), recsys("validate", "--source", f"{db_url}&table=nope"),
              recsys("init-db"), recsys("outcomes"), recsys("-v", "runs")]
    for result in (published, failed, demo, *others):
        assert PASSWORD not in result.stdout + result.stderr
    assert "postgres:***@127.0.0.1" in failed.stderr
    logs = list((tmp_path / "logs").glob("*.log"))  # Airflow's own log of each `recsys run`
    assert len(logs) == 2 and all(PASSWORD not in log.read_text() for log in logs)

    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("SET ROLE recsys_reader")
        rows = conn.exec_driver_sql("SELECT * FROM recsys_runs_public").all()
        assert len(rows) == 2 and all(PASSWORD not in " ".join(map(str, row)) for row in rows)
        assert "postgres:***@" in " ".join(str(row) for row in rows)  # the reason is readable, masked
    engine.dispose()

    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in page.get("Contents", [])]
    assert any(k.endswith("/config.json") for k in keys) and any(k.endswith("/lineage.json") for k in keys)
    for key in keys:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert PASSWORD.encode() not in body, key
