"""The catalogue: its shapes, its checks, and items that may never be recommended."""

import pandas as pd
import pytest

from helpers import DATASETS, read_companion, read_view
from recsys_tasks import airflow_adapter
from recsys_tasks.config import config_from_env
from recsys_tasks.data.catalogue import check_catalogue, read_catalogue
from recsys_tasks.data.sources import write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions
from recsys_tasks.errors import DataValidationError, SourceError

TINY = {"epochs": 2, "pretrain_epochs": 1, "top_k": 10, "num_shards": 2, "gate_min_lift": -0.9}


def test_a_wide_catalogue_gives_availability_text_and_multi_valued_attributes(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(
        "product_id,available,title,description,brand,tags\n"
        "a,true,Red shoe,A shoe,acme,sport|outdoor\n"
        "b,no,Blue hat,,acme,\n"
        "c,,Green scarf,Warm,bolt,winter\n"
    )
    catalogue = read_catalogue(str(path))
    items = catalogue.items.set_index("item_id")
    assert items["available"].to_dict() == {"a": True, "b": False, "c": True}  # empty means available
    assert items.loc["a", "text"] == "Red shoe A shoe" and items.loc["b", "text"] == "Blue hat"
    assert sorted(catalogue.attributes.itertuples(index=False, name=None)) == [
        ("a", "brand=acme"), ("a", "tags=outdoor"), ("a", "tags=sport"), ("b", "brand=acme"),
        ("c", "brand=bolt"), ("c", "tags=winter")]
    assert catalogue.unavailable == {"b"}


def test_a_catalogue_in_a_sql_table_and_the_s3rec_json_read_alike(tmp_path):
    frame = pd.DataFrame({"item_id": ["1", "2"], "available": [1, 0], "colour": ["red", "blue|green"]})
    uri = f"sqlite:///{tmp_path / 'shop.db'}?table=items"
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    frame.to_sql("items", engine, index=False)
    engine.dispose()
    catalogue = read_catalogue(uri)
    assert catalogue.unavailable == {"2"} and len(catalogue.attributes) == 3
    beauty = read_catalogue(str(DATASETS / "Beauty_item2attributes.json"))
    assert beauty.unavailable == set() and beauty.attributes["item_id"].nunique() > 10_000


def test_bad_catalogues_fail_with_a_clear_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("item_id,available\na,maybe\n")
    with pytest.raises(SourceError, match="'available' must be true or false.*a: 'maybe'"):
        read_catalogue(str(bad))
    nameless = tmp_path / "nameless.csv"
    nameless.write_text("sku_code,title\na,x\n")
    with pytest.raises(SourceError, match="no item_id column"):
        read_catalogue(str(nameless))
    twice = tmp_path / "twice.csv"
    twice.write_text("item_id,title\na,x\na,y\nb,z\n")
    with pytest.raises(DataValidationError, match="unique.*e.g. a"):
        check_catalogue(read_catalogue(str(twice)), pd.Series(["a", "b"]), 0.05)
    small = tmp_path / "small.csv"
    small.write_text("item_id\na\nb\n")
    with pytest.raises(DataValidationError, match="2 of the log's 4 items .*50.0%.*catalogue of this log"):
        check_catalogue(read_catalogue(str(small)), pd.Series(["a", "b", "c", "d"]), 0.05)
    assert "2 of the log's 4 items" in check_catalogue(read_catalogue(str(small)), pd.Series(["a", "b", "c", "d"]), 0.5)[0]


def test_unavailable_and_excluded_items_appear_in_no_list(recsys_home, airflow_db):
    config = config_from_env()
    log = generate_interactions(SyntheticSpec(users=400, items=100, topics=5, seed=11))
    write_interactions(log, config.source_uri)
    popular = log["item_id"].value_counts().index.tolist()
    unavailable, excluded = set(popular[:5]), {popular[5]}  # the items every list would otherwise hold
    items = pd.DataFrame({"item_id": sorted(log["item_id"].unique())})
    items["available"] = ~items["item_id"].isin(unavailable)
    items_uri = recsys_home / "catalogue.csv"
    items.to_csv(items_uri, index=False)
    params = {**TINY, "items_uri": str(items_uri), "exclude_items": ",".join(excluded), "holdout_fraction": 0.2,
              "min_history": 4}  # some users on the popularity fallback, some in the popularity holdout
    outcome = airflow_adapter.run_dag("recsys_nightly", params)
    assert outcome["state"] == "success", outcome["tasks"]
    shown = read_view(config)
    assert set(shown["strategy"]) == {"model", "popularity"} and set(shown["variant"]) == {"model", "control"}
    assert not set(shown["item_id"]) & (unavailable | excluded)
    fallback, similar = read_companion(config, "fallback"), read_companion(config, "similar")
    assert len(fallback) == 10 and not set(fallback["item_id"]) & (unavailable | excluded)
    neighbours = set(similar["item_id"]) | set(similar["similar_item_id"])
    assert len(similar) and not neighbours & (unavailable | excluded)
    assert (shown.groupby("user_id").size() == 10).mean() > 0.95  # lists stay full from the other items
    kept = pd.read_parquet(next((recsys_home / "artifacts" / "runs").rglob("catalogue.parquet")))  # versioned with the run
    assert set(kept.loc[~kept["available"], "item_id"]) == unavailable


def test_a_cap_keeps_the_best_n_of_a_group_and_the_next_items_fill_the_list():
    import numpy as np
    import torch

    from recsys_tasks.scoring.inference import capped

    scores = torch.tensor([[9.0, 8.0, 7.0, 6.0, 5.0], [9.0, 8.0, 7.0, 6.0, 5.0]])
    groups = np.array([[0, 0, 0, 1, -1], [2, -1, 2, -1, 2]])
    out = capped(scores, groups, 2)
    assert out[0].tolist() == [9.0, 8.0, float("-inf"), 6.0, 5.0]  # the third of group 0 goes
    assert out[1].tolist() == [9.0, 8.0, 7.0, 6.0, float("-inf")]  # -1 is never capped


def test_excluded_attribute_values_and_a_diversity_cap_hold_in_every_list(recsys_home, airflow_db):
    from recsys_tasks.data.synthetic import generate_catalogue

    spec = SyntheticSpec(users=400, items=100, topics=5, seed=12)
    config = config_from_env()
    write_interactions(generate_interactions(spec), config.source_uri)
    catalogue = generate_catalogue(spec)
    items_uri = recsys_home / "catalogue.csv"
    catalogue.to_csv(items_uri, index=False)
    params = {**TINY, "items_uri": str(items_uri), "exclude_attributes": "colour=red", "max_per_attribute": "category=3",
              "min_history": 4}
    outcome = airflow_adapter.run_dag("recsys_nightly", params)
    assert outcome["state"] == "success", outcome["tasks"]
    shown = read_view(config).merge(catalogue[["item_id", "category", "colour"]].astype(str), on="item_id")
    assert "red" not in set(shown["colour"])
    assert shown.groupby(["user_id", "category"]).size().max() == 3  # the cap binds (a topic-driven log) and holds
    assert (shown.groupby("user_id").size() == 10).mean() > 0.95  # places freed by the cap are filled
