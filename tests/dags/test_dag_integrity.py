"""Every DAG file imports cleanly and follows the project's conventions."""

import os
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    """The DAGs as shipped: the deployment's defaults, not the suite's RECSYS_TASK_RETRIES=0."""
    from airflow.dag_processing.dagbag import DagBag

    saved = os.environ.pop("RECSYS_TASK_RETRIES", None)
    try:
        return DagBag(dag_folder=str(DAGS))
    finally:
        if saved is not None:
            os.environ["RECSYS_TASK_RETRIES"] = saved


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dags, "no DAGs found"


PIPELINE_DAGS = {"recsys_nightly", "recsys_pretrain", "recsys_regenerate"}
RECOMMENDATIONS_URI = "recsys://recommendations/current"


def test_every_dag_has_owner_retries_tags_and_docs(dagbag):
    assert set(dagbag.dags) == PIPELINE_DAGS | {"recsys_downstream_example", "recsys_watch"}
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        assert dag.doc_md, dag_id
        assert dag.catchup is False, dag_id
        for task in dag.tasks:
            assert task.owner == "recsys", (dag_id, task.task_id)
            assert task.retries >= 2, (dag_id, task.task_id)  # a night survives a lost worker or a blip
            if dag_id in PIPELINE_DAGS | {"recsys_watch"}:  # failures are recorded (and alerted)
                assert task.on_failure_callback, (dag_id, task.task_id)


def test_nightly_dag_shape_and_params(dagbag):
    dag = dagbag.dags["recsys_nightly"]
    assert dag.max_active_runs == 1
    assert {"top_k", "epochs", "force_pretrain", "source_uri"} <= set(dag.params.keys())
    order = ["extract", "validate", "prepare", "track_outcomes", "pretrain", "finetune", "evaluate", "gate",
             "plan_shards", "generate", "companion_lists", "publish"]
    assert set(order) <= set(dag.task_ids)
    assert "prepare" in dag.get_task("validate").downstream_task_ids
    # yesterday's lists are scored before anything that could replace them is trained
    assert "finetune" in dag.get_task("track_outcomes").downstream_task_ids
    assert "plan_shards" in dag.get_task("gate").downstream_task_ids
    # the fallback list and similar items go out in the same publish as the users' lists
    assert {"generate", "companion_lists"} <= dag.get_task("publish").upstream_task_ids


def test_dag_files_import_no_heavy_libraries_at_parse_time():
    import subprocess
    import sys

    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); "
        "heavy = [m for m in ('torch', 'great_expectations', 'pandas') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    for path in DAGS.glob("*.py"):
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "", f"{path.name} imports {out.stdout.strip()} at parse time"


def _outlet_uris(dag, task_id: str) -> list[str]:
    return [asset.uri for asset in dag.get_task(task_id).outlets]


def test_gpu_tasks_go_to_the_configured_queue_and_pool():
    """docker-compose sets RECSYS_GPU_QUEUE/RECSYS_GPU_POOL=gpu; pretrain and finetune follow,
    everything else stays on the default queue. Read where the DAG files are parsed."""
    out = _parse_in_subprocess(
        {"RECSYS_GPU_QUEUE": "gpu", "RECSYS_GPU_POOL": "gpu"},
        "[(d, t.task_id, t.queue, t.pool) for d in ('recsys_nightly', 'recsys_pretrain') for t in bag.dags[d].tasks]",
    )
    for dag_id, task_id, queue, pool in out:
        expected = ("gpu", "gpu") if task_id in {"pretrain", "finetune"} else ("default", "default_pool")
        assert (queue, pool) == expected, (dag_id, task_id)


def test_assets_published_and_consumed(dagbag):
    nightly, regenerate = dagbag.dags["recsys_nightly"], dagbag.dags["recsys_regenerate"]
    assert _outlet_uris(nightly, "publish") == [RECOMMENDATIONS_URI]
    assert _outlet_uris(regenerate, "publish") == [RECOMMENDATIONS_URI]
    assert _outlet_uris(dagbag.dags["recsys_pretrain"], "pretrain") == ["recsys://encoders/latest"]
    consumer = dagbag.dags["recsys_downstream_example"]
    assert [asset.uri for asset in consumer.schedule] == [RECOMMENDATIONS_URI]
    assert consumer.tasks[0].outlets == []  # it reads; it publishes nothing


def test_nightly_schedule_is_cron_unless_a_source_asset_is_configured():
    schedule = "bag.dags['recsys_nightly'].schedule"
    assert _parse_in_subprocess({}, schedule) == "0 2 * * *"
    on_asset = _parse_in_subprocess({"RECSYS_SOURCE_ASSET": "s3://events/interactions"}, f"{schedule}.uri")
    assert on_asset == "s3://events/interactions"


def _parse_in_subprocess(env: dict[str, str], expression: str):
    """Evaluate `expression` over a DagBag parsed with `env` (module-level settings are read
    when a DAG file is imported, so each setting needs a fresh interpreter)."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, sys; from airflow.dag_processing.dagbag import DagBag; "
        "bag = DagBag(dag_folder=sys.argv[1]); assert not bag.import_errors, bag.import_errors; "
        f"print(json.dumps({expression}))"
    )
    base = {k: v for k, v in os.environ.items() if k not in {"RECSYS_GPU_QUEUE", "RECSYS_GPU_POOL", "RECSYS_SOURCE_ASSET"}}
    out = subprocess.run(
        [sys.executable, "-c", code, str(DAGS)], env={**base, **env}, capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_trigger_form_accepts_every_default_as_shipped(dagbag):
    """Pressing Trigger with nothing typed must start a run: every default is valid under its own
    schema, and an empty default is null (the form treats "" of a non-nullable type as missing)."""
    for dag_id in PIPELINE_DAGS:
        params = dagbag.dags[dag_id].params
        params.validate()  # raises on the first default its schema refuses
        for name in params:
            param = params.get_param(name)
            if param.value in (None, ""):
                assert param.value is None and "null" in param.schema["type"], (dag_id, name, param.schema)
            if "minimum" in param.schema or "maximum" in param.schema:  # the form clamps: the help says so
                assert "nearest bound" in (param.description or ""), (dag_id, name)
