"""The gate blesses a candidate only above the strongest baseline it was evaluated with."""

import pytest

from helpers import read_view, run_record
from recsys_tasks import airflow_adapter
from recsys_tasks import pipeline as stages
from recsys_tasks.config import config_from_env, with_params
from recsys_tasks.data.sources import write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions


def evaluation(model, popularity, **others):
    scores = {"model": model, "popularity": popularity, **others}
    return {name: {"NDCG@10": value} for name, value in scores.items()} | {"eval_users": 100, "production_version": None}


@pytest.fixture()
def run(recsys_home):
    return stages.RunContext(run_id="manual__gate", config=config_from_env())


@pytest.mark.parametrize("strongest", ["ease", "item_knn"])
def test_a_candidate_above_popularity_but_below_the_item_to_item_baseline_is_rejected(run, strongest):
    decision = stages.gate(run, "v-test", evaluation(0.135, 0.05, **{strongest: 0.384}))
    assert decision["blessed"] is False
    assert f"strongest baseline, {strongest} 0.3840" in decision["reason"]
    assert "popularity 0.0500" in decision["reason"]


def test_the_lift_is_measured_against_the_strongest_baseline(recsys_home):
    run = stages.RunContext(run_id="manual__gate", config=with_params(config_from_env(), {"gate_min_lift": 0.1}))
    assert stages.gate(run, "v-a", evaluation(0.43, 0.05, ease=0.40))["blessed"] is False  # 0.43 <= 0.44
    assert stages.gate(run, "v-b", evaluation(0.45, 0.05, ease=0.40))["blessed"] is True


def test_a_run_whose_model_loses_to_ease_publishes_nothing(recsys_home, airflow_db):
    config = config_from_env()
    write_interactions(generate_interactions(SyntheticSpec(users=300, items=100, topics=5, seed=4)), config.source_uri)
    outcome = airflow_adapter.run_dag("recsys_nightly", {"epochs": 1, "pretrain_epochs": 0, "top_k": 5, "num_shards": 1})
    assert outcome["tasks"]["gate"] == "success" and outcome["tasks"]["publish"] == "skipped"
    record = run_record(config, outcome["run_id"])
    metrics = record["metrics"]
    assert metrics["model"]["NDCG@10"] > metrics["popularity"]["NDCG@10"]  # the old gate would have passed it
    assert metrics["model"]["NDCG@10"] <= metrics["ease"]["NDCG@10"]
    assert record["status"] == "rejected" and "strongest baseline, ease" in record["message"]
    assert read_view(config).empty
