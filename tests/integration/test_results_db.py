"""Publishing on real SQLite and PostgreSQL: atomic switch, idempotent, retention."""

import dataclasses

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from recsys_tasks import db as results_db
from recsys_tasks.clock import utcnow
from recsys_tasks.config import config_from_env


def rows(users=3, k=2, tag="a"):
    return pd.DataFrame(
        [
            {"user_id": f"u{u}", "rank": r + 1, "item_id": f"{tag}{u}-{r}", "score": 1.0 - r / 10, "model_version": f"m-{tag}"}
            for u in range(users)
            for r in range(k)
        ]
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'results.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    config = dataclasses.replace(config_from_env({}), db_url=url)
    engine = results_db.make_engine(url)
    yield engine, results_db.Tables.from_config(config)
    engine.dispose()


def publish(engine, tables, run_id, frame, retain=5):
    results_db.apply_schema(engine, tables)
    out = results_db.publish_recommendations(engine, tables, run_id, frame, retain)
    results_db.record_run(engine, tables, run_id, "published", published_at=utcnow())
    return out


def test_readers_see_exactly_the_latest_run(db):
    engine, tables = db
    publish(engine, tables, "run-1", rows(tag="a"))
    publish(engine, tables, "run-2", rows(users=4, tag="b"))
    current = results_db.read_current(engine, tables)
    assert set(current["run_id"]) == {"run-2"}
    assert len(current) == 8
    assert list(current.columns) == list(results_db.RESULT_COLUMNS)


def test_publishing_the_same_run_twice_keeps_one_copy(db):
    engine, tables = db
    publish(engine, tables, "run-1", rows())
    publish(engine, tables, "run-1", rows())
    with engine.connect() as conn:
        count = conn.exec_driver_sql(f"SELECT COUNT(*) FROM {tables.results}").scalar()
    assert count == 6


def test_old_runs_are_dropped_beyond_the_retention_limit(db):
    engine, tables = db
    for i in range(4):
        publish(engine, tables, f"run-{i}", rows(tag=str(i)), retain=2)
    with engine.connect() as conn:
        kept = set(conn.exec_driver_sql(f"SELECT DISTINCT run_id FROM {tables.results}").scalars())
    assert kept == {"run-2", "run-3"}


def test_a_failed_publish_leaves_the_previous_run_visible(db):
    engine, tables = db
    publish(engine, tables, "run-1", rows(tag="a"))
    broken = rows(tag="b")
    broken.loc[len(broken) - 1, "item_id"] = None  # NOT NULL violation on the last row
    with pytest.raises((sa.exc.IntegrityError, psycopg.errors.NotNullViolation)):
        results_db.publish_recommendations(engine, tables, "run-2", broken, 5)
    current = results_db.read_current(engine, tables)
    assert set(current["run_id"]) == {"run-1"} and len(current) == 6
    with engine.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT COUNT(*) FROM {tables.results} WHERE run_id = 'run-2'").scalar() == 0


def companions(tag):
    fallback = pd.DataFrame({"rank": [1, 2], "item_id": [f"{tag}-hot", f"{tag}-warm"], "score": [9.0, 4.0]})
    similar = pd.DataFrame({"item_id": ["x", "x", "y"], "rank": [1, 2, 1], "similar_item_id": [f"{tag}1", f"{tag}2", "x"],
                            "score": [0.9, 0.8, 0.7]})
    return {"fallback": fallback, "similar": similar}


def test_the_fallback_list_and_similar_items_switch_with_the_users_lists(db):
    engine, tables = db
    results_db.apply_schema(engine, tables)
    for run_id, tag in (("run-1", "a"), ("run-2", "b")):
        results_db.publish_recommendations(engine, tables, run_id, rows(tag=tag), 1, companions=companions(tag))
    with engine.connect() as conn:
        fallback = conn.exec_driver_sql(f"SELECT run_id, rank, item_id FROM {tables.fallback_view} ORDER BY rank").all()
        similar = conn.exec_driver_sql(
            f"SELECT similar_item_id FROM {tables.similar_view} WHERE item_id = 'x' ORDER BY rank"
        ).all()
        kept = set(conn.exec_driver_sql(f"SELECT DISTINCT run_id FROM {tables.similar}").scalars())
    assert fallback == [("run-2", 1, "b-hot"), ("run-2", 2, "b-warm")] and [s for (s,) in similar] == ["b1", "b2"]
    assert kept == {"run-2"}  # retired with the run's lists

    known = results_db.read_current(engine, tables, "u1")  # the reader's query (sql/reader_query.sql)
    assert known["item_id"].tolist() == ["b1-0", "b1-1"] and set(known["strategy"]) == {"model"}
    stranger = results_db.read_current(engine, tables, "nobody")
    assert stranger["item_id"].tolist() == ["b-hot", "b-warm"] and set(stranger["strategy"]) == {"fallback"}
    assert set(stranger["run_id"]) == {"run-2"}

    broken = companions("c")
    broken["similar"].loc[0, "similar_item_id"] = None  # the publish fails inside the switch
    with pytest.raises((sa.exc.IntegrityError, psycopg.errors.NotNullViolation)):
        results_db.publish_recommendations(engine, tables, "run-3", rows(tag="c"), 1, companions=broken)
    assert results_db.read_current(engine, tables, "nobody")["item_id"].tolist() == ["b-hot", "b-warm"]
    assert set(results_db.read_current(engine, tables)["run_id"]) == {"run-2"}


def test_run_table_records_status_and_metrics(db):
    engine, tables = db
    results_db.apply_schema(engine, tables)
    results_db.record_run(engine, tables, "r", "trained", model_version="v1", metrics={"model": {"HR@10": 0.5}})
    results_db.record_run(engine, tables, "r", "published", rows_written=10)
    record = results_db.get_run(engine, tables, "r")
    assert record["status"] == "published" and record["model_version"] == "v1"
    assert record["metrics"] == {"model": {"HR@10": 0.5}} and record["rows_written"] == 10


def test_sql_scripts_split_on_semicolons_but_keep_do_blocks():
    script = "CREATE TABLE a (x int);\nDO $$\nBEGIN\n  PERFORM 1; PERFORM 2;\nEND\n$$;\nGRANT SELECT ON a TO r;"
    assert results_db.statements(script) == [
        "CREATE TABLE a (x int)", "DO $$\nBEGIN\n  PERFORM 1; PERFORM 2;\nEND\n$$", "GRANT SELECT ON a TO r",
    ]


def test_postgres_reader_role_can_read_the_view_and_nothing_else(postgres_url):
    config = dataclasses.replace(config_from_env({}), db_url=postgres_url)
    engine = results_db.make_engine(postgres_url)
    tables = results_db.Tables.from_config(config)
    publish(engine, tables, "run-1", rows())
    results_db.apply_schema(engine, tables)  # applying twice is harmless
    with engine.connect() as conn:
        conn.exec_driver_sql(f"SET ROLE {tables.reader_role}")
        assert conn.exec_driver_sql(f"SELECT COUNT(*) FROM {tables.view}").scalar() == 6
        assert conn.exec_driver_sql(f"SELECT status FROM {tables.runs_public}").scalar() == "published"
        assert "source_uri" not in conn.exec_driver_sql(f"SELECT * FROM {tables.runs_public}").keys()
        for view in (tables.fallback_view, tables.similar_view):  # empty here (published without them), yet readable
            assert conn.exec_driver_sql(f"SELECT COUNT(*) FROM {view}").scalar() == 0
        assert conn.execute(sa.text(results_db.sql_file("reader_query.sql", tables)), {"user_id": "u1"}).all()
        for forbidden in (f"DELETE FROM {tables.results}", f"SELECT source_uri FROM {tables.runs}"):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                conn.exec_driver_sql(forbidden)
            conn.rollback()
            conn.exec_driver_sql(f"SET ROLE {tables.reader_role}")
    engine.dispose()


def test_tables_of_an_older_version_are_upgraded_in_place(db):
    engine, tables = db
    with engine.begin() as conn:  # the first release's table and view, with a published run
        conn.exec_driver_sql(
            f"CREATE TABLE {tables.results} (run_id VARCHAR(250) NOT NULL, user_id VARCHAR(250) NOT NULL, "
            "rank INTEGER NOT NULL, item_id VARCHAR(250) NOT NULL, score DOUBLE PRECISION NOT NULL, "
            "model_version VARCHAR(100) NOT NULL, generated_at TIMESTAMP WITH TIME ZONE NOT NULL, "
            "PRIMARY KEY (run_id, user_id, rank))"
        )
        conn.exec_driver_sql(
            f"CREATE TABLE {tables.pointer} (view_name VARCHAR(100) PRIMARY KEY, run_id VARCHAR(250) NOT NULL, "
            "switched_at TIMESTAMP WITH TIME ZONE NOT NULL)"
        )
        conn.exec_driver_sql(
            f"CREATE VIEW {tables.view} AS SELECT r.run_id, r.user_id, r.rank, r.item_id, r.score, r.model_version, "
            f"r.generated_at FROM {tables.results} r JOIN {tables.pointer} p ON p.run_id = r.run_id"
        )
        conn.exec_driver_sql(
            f"INSERT INTO {tables.results} VALUES ('run-old', 'u0', 1, 'x', 1.0, 'm-old', '2026-01-01T00:00:00+00:00')"
        )
        conn.exec_driver_sql(f"INSERT INTO {tables.pointer} VALUES ('{tables.view}', 'run-old', '2026-01-01T00:00:00+00:00')")
    results_db.apply_schema(engine, tables)
    old = results_db.read_current(engine, tables)  # upgraded: the published run is still there
    assert old[["run_id", "item_id", "strategy"]].values.tolist() == [["run-old", "x", "model"]]
    publish(engine, tables, "run-new", rows(), retain=1)
    current = results_db.read_current(engine, tables)
    assert list(current.columns) == list(results_db.RESULT_COLUMNS) and set(current["strategy"]) == {"model"}
    assert set(current["run_id"]) == {"run-new"}
    with engine.connect() as conn:  # and the old run retires like any other
        assert conn.exec_driver_sql(f"SELECT COUNT(*) FROM {tables.results} WHERE run_id = 'run-old'").scalar() == 0


def partitions(engine, tables):
    with engine.connect() as conn:
        return sorted(conn.exec_driver_sql(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            f"WHERE i.inhparent = '{tables.results}'::regclass"
        ).scalars())


def test_postgres_keeps_each_run_in_a_partition_of_its_own_and_drops_it_on_retirement(postgres_url):
    config = dataclasses.replace(config_from_env({}), db_url=postgres_url)
    engine = results_db.make_engine(postgres_url)
    tables = results_db.Tables.from_config(config)
    odd = "manual__2026-11-22T00:00:00+00:00 'quoted' 100%"  # any run id is a valid partition
    for run_id in ["run-1", odd, odd, "run-3"]:
        publish(engine, tables, run_id, rows(tag=run_id[:5]), retain=2)
    assert partitions(engine, tables) == sorted([tables.partition(odd), tables.partition("run-3")])
    with engine.connect() as conn:
        tables_left = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() AND right(tablename, 5) = '_load'"
        ).scalar()
        by_run = dict(conn.exec_driver_sql(f"SELECT run_id, COUNT(*) FROM {tables.results} GROUP BY run_id").all())
    assert tables_left == 0  # no staging table outlives its publish
    assert by_run == {odd: 6, "run-3": 6}
    engine.dispose()
