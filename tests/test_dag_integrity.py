"""Every DAG file imports cleanly and follows the project's conventions."""

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[1] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dags, "no DAGs found"


def test_every_dag_has_owner_retries_tags_and_docs(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        assert dag.doc_md, dag_id
        assert dag.catchup is False, dag_id
        for task in dag.tasks:
            assert task.owner == "recsys", (dag_id, task.task_id)
            assert task.retries >= 0 and task.on_failure_callback, (dag_id, task.task_id)


def test_nightly_dag_shape_and_params(dagbag):
    dag = dagbag.dags["recsys_nightly"]
    assert dag.max_active_runs == 1
    assert {"top_k", "epochs", "force_pretrain", "source_uri"} <= set(dag.params.keys())
    order = ["extract", "validate", "prepare", "pretrain", "finetune", "evaluate", "gate", "plan_shards", "generate", "publish"]
    assert set(order) == set(dag.task_ids)
    assert "prepare" in dag.get_task("validate").downstream_task_ids
    assert "plan_shards" in dag.get_task("gate").downstream_task_ids


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
