"""A source that has not landed yet is retried with a clear message; a bad one is not."""

import threading
import time

from helpers import read_view
from recsys_tasks import airflow_adapter
from recsys_tasks.config import config_from_env
from recsys_tasks.data.sources import read_interactions, write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions
from recsys_tasks.errors import SourceError, SourceNotLandedError


def test_a_missing_file_folder_or_table_is_not_landed_yet_and_retryable(tmp_path):
    for uri in (
        str(tmp_path / "tonight.csv"),
        str(tmp_path / "daily" / "*.parquet"),
        f"sqlite:///{tmp_path / 'x.db'}?table=events",
    ):
        try:
            read_interactions(uri)
        except SourceNotLandedError as exc:
            assert "not landed yet" in str(exc) and exc.retryable
        else:
            raise AssertionError(f"{uri} read")
    assert not SourceError("malformed").retryable


def test_the_extract_task_retries_until_the_export_lands(recsys_home, airflow_db, monkeypatch):
    monkeypatch.setenv("RECSYS_TASK_RETRIES", "3")
    monkeypatch.setenv("RECSYS_RETRY_DELAY_S", "2")
    landing = recsys_home / "exports" / "tonight.parquet"
    monkeypatch.setenv("RECSYS_SOURCE_URI", str(landing))

    def export_arrives():
        time.sleep(4)
        write_interactions(generate_interactions(SyntheticSpec(users=300, items=120, topics=6, seed=3)), str(landing))

    threading.Thread(target=export_arrives).start()
    outcome = airflow_adapter.run_dag(
        "recsys_nightly", {"epochs": 6, "pretrain_epochs": 1, "num_shards": 1, "gate_min_lift": -0.5}
    )
    assert outcome["state"] == "success", outcome["tasks"]
    assert len(read_view(config_from_env())) == 300 * 10
