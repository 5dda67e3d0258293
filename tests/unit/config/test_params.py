"""Params are refused at the door: the trigger form's schema, the CLI, and the task adapter."""

import copy
import subprocess
import sys

import pytest

from recsys_tasks import airflow_adapter
from recsys_tasks.config import PARAMS, config_from_env, default_config, typed_params, with_params
from recsys_tasks.errors import ConfigError

CHOICE_PARAMS = sorted(name for name, spec in PARAMS.items() if spec.choices)


@pytest.fixture(scope="module")
def nightly(airflow_db):
    return airflow_adapter.load_dag("recsys_nightly")


def triggered(dag, conf):
    """The params a run triggered with `conf` would get, validated as the API validates them."""
    params = copy.deepcopy(dag.params)
    params.update(conf)
    return params.validate()


def test_every_choice_param_is_an_enum_with_its_real_default(nightly):
    defaults = default_config()
    assert {"split", "auxiliary", "pretrain_objectives", "source_format", "dedup_keep", "warm_start"} <= set(CHOICE_PARAMS)
    for name in CHOICE_PARAMS:
        spec = PARAMS[name]
        param = nightly.params.get_param(name)
        assert set(spec.choices) <= set(param.schema["enum"]), name
        owner = getattr(defaults, spec.section) if spec.section else defaults
        assert param.value == (None if spec.deployment else getattr(owner, name)), name
    for name in ("source_uri", "items_uri", "source_format"):  # empty: the deployment's RECSYS_* setting
        assert nightly.params[name] is None


@pytest.mark.parametrize("name", CHOICE_PARAMS)
def test_a_bad_choice_is_refused_when_the_run_is_triggered(nightly, name):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=name):
        triggered(nightly, {name: "bogus"})


def test_numbers_out_of_bounds_and_strings_for_numbers_are_refused(nightly):
    from airflow.sdk.exceptions import ParamValidationError

    for conf in ({"top_k": 0}, {"top_k": "20"}, {"gate_max_churn": 2.0}, {"force_pretrain": "maybe"}):
        with pytest.raises(ParamValidationError, match=next(iter(conf))):
            triggered(nightly, conf)


def test_a_bad_param_stops_dag_test_before_any_task_runs(recsys_home, airflow_db):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="split"):
        airflow_adapter.run_dag("recsys_nightly", {"split": "random"})
    assert not (recsys_home / "artifacts").exists()  # extract never ran


def test_typed_params_coerce_cli_strings_and_name_the_culprit():
    assert typed_params({"top_k": "20", "force_pretrain": "true", "lr": "5e-4", "source_uri": ""}) == {
        "top_k": 20, "force_pretrain": True, "lr": 5e-4,
    }
    assert typed_params({"pretrain_objectives": "attribute, contrastive"}) == {"pretrain_objectives": "contrastive+attribute"}
    for bad, name in (({"auxiliary": "bogus"}, "auxiliary"), ({"split": "random"}, "split"), ({"top_k": "many"}, "top_k"),
                      ({"no_such": 1}, "no_such")):
        with pytest.raises(ConfigError, match=name):
            typed_params(bad)


def test_the_attribute_objective_without_attributes_is_a_config_error(recsys_home):
    with pytest.raises(ConfigError, match="items_uri"):
        with_params(config_from_env(), {"pretrain_objectives": "contrastive+attribute"})
    with pytest.raises(ConfigError, match="items_uri"):
        with_params(config_from_env(), {"auxiliary": "attribute"})


def test_cli_refuses_a_bad_param_in_one_line_before_starting_airflow(recsys_home):
    result = subprocess.run(
        [sys.executable, "-m", "recsys_tasks.ops.cli", "run", "--param", "split=random"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: param 'split' must be one of leave_one_out, time, got 'random'"
    ]
    assert "Traceback" not in result.stderr + result.stdout


def test_every_task_and_run_has_a_time_limit(airflow_db):
    for dag_id in ("recsys_nightly", "recsys_pretrain", "recsys_regenerate"):
        dag = airflow_adapter.load_dag(dag_id)
        assert dag.dagrun_timeout is not None, dag_id
        assert all(task.execution_timeout is not None for task in dag.tasks), dag_id


def test_init_db_creates_the_schema_once_for_the_deployment(recsys_home):
    env = {**__import__("os").environ, "RECSYS_DB_URL": f"sqlite:///{recsys_home / 'r.db'}"}
    result = subprocess.run([sys.executable, "-m", "recsys_tasks.ops.cli", "init-db"], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0 and "results schema is current" in result.stdout
