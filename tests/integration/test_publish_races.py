"""Races around the publish, on a real PostgreSQL: a reader that leaves a transaction open,
two publishers at once, and an older run arriving after a newer one."""

import dataclasses
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from test_publish_atomicity import big_run, snapshot

from recsys_tasks import db as results_db
from recsys_tasks.config import config_from_env
from recsys_tasks.errors import StalePublishError


@pytest.fixture()
def pg(postgres_url):
    config = dataclasses.replace(config_from_env({}), db_url=postgres_url)
    engine = results_db.make_engine(postgres_url)
    tables = results_db.Tables.from_config(config)
    results_db.apply_schema(engine, tables)
    yield postgres_url, engine, tables
    engine.dispose()


def started(engine, tables, run_id, at):
    results_db.record_run(engine, tables, run_id, "blessed", started_at=at)


def test_a_reader_holding_a_transaction_blocks_neither_readers_nor_the_publish(pg):
    url, engine, tables = pg
    results_db.publish_recommendations(engine, tables, "run-1", big_run(500, tag="a"), 1)
    idle_reader = results_db.make_engine(url).connect()
    idle_reader.exec_driver_sql(f"SELECT count(*) FROM {tables.view}").scalar()  # and never commits

    waits, stop = [], threading.Event()

    def other_reader():
        reader = results_db.make_engine(url)
        with reader.connect() as conn:
            while not stop.is_set():
                tick = time.perf_counter()
                conn.exec_driver_sql(f"SELECT item_id FROM {tables.view} WHERE user_id = 'u7' ORDER BY rank").all()
                conn.commit()
                waits.append(time.perf_counter() - tick)
                time.sleep(0.02)
        reader.dispose()

    poller = threading.Thread(target=other_reader)
    poller.start()
    try:
        tick = time.perf_counter()
        # retain 1: retiring run-1 needs its partition, which the idle reader holds
        outcome = results_db.publish_recommendations(engine, tables, "run-2", big_run(500, tag="b"), 1)
        publish_seconds = time.perf_counter() - tick
        results_db.apply_schema(engine, tables)  # a task start with the schema current: no DDL, no wait
        time.sleep(0.5)
    finally:
        stop.set()
        poller.join(30)
        idle_reader.close()
    assert [tuple(r)[:2] for r in snapshot(engine, tables)] == [("run-2", 5000)]
    assert outcome["retired_runs"] == []  # left for the next publish instead of queueing readers
    assert publish_seconds < 10
    assert len(waits) > 10 and max(waits) < 1.0, f"slowest reader query {max(waits):.2f}s"

    # with the idle reader gone, the next publish retires what was left
    later = results_db.publish_recommendations(engine, tables, "run-3", big_run(500, tag="c"), 1)
    assert set(later["retired_runs"]) == {"run-1", "run-2"}


def test_two_publishers_take_turns_and_never_interleave(pg):
    url, engine, tables = pg
    now = datetime.now(UTC)
    started(engine, tables, "run-old", now - timedelta(minutes=5))
    started(engine, tables, "run-new", now)
    spans, errors, holding = {}, {}, threading.Event()

    def publisher(run_id, hold):
        def on_switch():  # runs under the publisher lock, just before COMMIT
            spans[run_id] = [time.perf_counter()]
            holding.set()
            time.sleep(hold)
            spans[run_id].append(time.perf_counter())

        try:
            results_db.publish_recommendations(
                results_db.make_engine(url), tables, run_id, big_run(300, tag=run_id), 5, on_switch
            )
        except StalePublishError as exc:
            errors[run_id] = exc

    first = threading.Thread(target=publisher, args=("run-new", 1.5))
    first.start()
    assert holding.wait(60)  # the first publisher holds the lock (its load time varies by machine)
    second = threading.Thread(target=publisher, args=("run-old", 0.0))
    second.start()
    first.join(60)
    second.join(60)

    assert "run-new" in spans and errors.keys() == {"run-old"}  # the older run came second: refused
    assert "readers already see run run-new" in str(errors["run-old"])
    assert [tuple(r)[:2] for r in snapshot(engine, tables)] == [("run-new", 3000)]
    with engine.connect() as conn:
        left = conn.exec_driver_sql(f"SELECT count(*) FROM {tables.results} WHERE run_id = 'run-old'").scalar()
    assert left == 0


def test_publishers_in_order_both_publish_one_after_the_other(pg):
    url, engine, tables = pg
    now = datetime.now(UTC)
    started(engine, tables, "run-a", now - timedelta(minutes=5))
    started(engine, tables, "run-b", now)
    spans, holding = {}, threading.Event()

    def publisher(run_id, hold):
        def on_switch():
            tick = time.perf_counter()
            holding.set()
            spans[run_id] = (tick, time.sleep(hold), time.perf_counter())

        results_db.publish_recommendations(results_db.make_engine(url), tables, run_id, big_run(300, tag=run_id), 5, on_switch)

    first = threading.Thread(target=publisher, args=("run-a", 1.5))
    first.start()
    assert holding.wait(60)
    second = threading.Thread(target=publisher, args=("run-b", 0.0))
    second.start()
    first.join(60)
    second.join(60)
    (_, _, a_out), (b_in, _, _) = spans["run-a"], spans["run-b"]
    assert b_in > a_out, "the second publisher switched while the first held the lock"
    assert [tuple(r)[:2] for r in snapshot(engine, tables)] == [("run-b", 3000)]


def test_schema_changes_wait_a_bounded_time_for_an_idle_reader(pg):
    url, engine, tables = pg
    idle_reader = results_db.make_engine(url).connect()
    idle_reader.exec_driver_sql(f"SELECT count(*) FROM {tables.view}").scalar()
    with engine.begin() as conn:  # an older deployment: the view must be replaced
        conn.exec_driver_sql(f"DROP VIEW {tables.runs_public}")
    tick = time.perf_counter()
    with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
        results_db.apply_schema(engine, tables, attempts=2)
    assert time.perf_counter() - tick < 6
    idle_reader.close()
    results_db.apply_schema(engine, tables)
    assert results_db.schema_is_current(engine, tables)
