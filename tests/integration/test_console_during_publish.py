"""The console's user look-up while a publish switches runs: the list and the fallback it shows
come from one run, because it reads them in one statement (sql/reader_query.sql)."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
import sqlalchemy as sa

from recsys_tasks import db
from recsys_tasks.config import config_from_env
from recsys_tasks.ops import lookup
from recsys_tasks.storage.deployment import Deployment


def _lists(users: list[str], item: str) -> pd.DataFrame:
    return pd.DataFrame({"user_id": users, "rank": 1, "item_id": item, "score": 1.0, "model_version": "v"})


def _fallback(item: str) -> dict[str, pd.DataFrame]:
    return {"fallback": pd.DataFrame({"rank": [1], "item_id": [item], "score": [5.0]})}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def test_a_look_up_during_the_switch_never_mixes_two_runs(backend, recsys_home, request):
    config = config_from_env()
    if backend == "postgresql":
        import dataclasses

        config = dataclasses.replace(config, db_url=request.getfixturevalue("postgres_url"))
    writer, page = Deployment(config), Deployment(config)
    tables = writer.tables
    # run A lists user u1 and has fallback item "fa"; run B lists only u2, with fallback "fb"
    db.publish_recommendations(writer.writable(), tables, "run-A", _lists(["u1"], "a1"), 5, companions=_fallback("fa"))
    switching, release = threading.Event(), threading.Event()

    def hold_the_switch_open() -> None:  # runs under the publisher lock, just before COMMIT
        switching.set()
        assert release.wait(30), "the look-up never let the switch commit"

    publisher = threading.Thread(target=db.publish_recommendations, args=(
        writer.engine, tables, "run-B", _lists(["u2"], "b2"), 5), kwargs={"on_switch": hold_the_switch_open,
                                                                         "companions": _fallback("fb")})
    publisher.start()
    assert switching.wait(60)

    # the switch commits between the look-up's reads: just before it reads the users' lists
    @sa.event.listens_for(page.engine, "before_cursor_execute")
    def commit_the_switch_now(conn, cursor, statement, *args) -> None:
        if tables.view in statement and not release.is_set():
            release.set()
            publisher.join(60)

    try:
        found = lookup.user_lookup(page, "u1")
    finally:
        release.set()
        publisher.join(60)
        page.close()
        writer.close()
    # u1 has no list in run B: the page shows run B's fallback, and says it is run B
    assert found["run_id"] == "run-B"
    assert found["rows"] == []
    assert [r["item_id"] for r in found["fallback"]] == ["fb"]
