import pytest

from recsys_tasks.config import config_from_env, with_params
from recsys_tasks.db import sql_identifier
from recsys_tasks.errors import ConfigError


def test_defaults_are_embedded_and_env_overrides_them(tmp_path):
    config = config_from_env({"RECSYS_DB_URL": "postgresql+psycopg://h/db"})
    assert config.db_url == "postgresql+psycopg://h/db"
    assert config.source_uri.startswith("sqlite:///") and config.source_uri.endswith("?table=interactions")


def test_params_are_typed_and_placed():
    config = with_params(config_from_env({}), {"top_k": "20", "epochs": 3, "force_pretrain": "true", "lr": "0.01"})
    assert config.top_k == 20 and config.train.epochs == 3 and config.force_pretrain is True
    assert config.train.lr == 0.01


def test_empty_params_keep_defaults():
    base = config_from_env({})
    assert with_params(base, {"source_uri": None, "top_k": ""}) == base


@pytest.mark.parametrize(
    "params, message",
    [
        ({"top_k": 0}, "outside"),
        ({"top_k": "ten"}, "must be int"),
        ({"force_pretrain": "maybe"}, "true or false"),
        ({"nonsense": 1}, "unknown param 'nonsense'"),
        ({"source_uri": "  "}, "must not be empty"),
    ],
)
def test_bad_params_are_refused_with_a_reason(params, message):
    with pytest.raises(ConfigError, match=message):
        with_params(config_from_env({}), params)


def test_sql_identifiers_are_checked():
    assert sql_identifier("recommendations") == "recommendations"
    with pytest.raises(ConfigError):
        sql_identifier("recs; DROP TABLE x")
