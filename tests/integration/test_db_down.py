"""The results database becomes unreachable in the middle of a publish (a real TCP proxy in
front of the real PostgreSQL is cut): readers keep the previous run, and the run ends
`failed` with its reason once the database is back."""

import socket
import threading

import pandas as pd
import pytest
import sqlalchemy as sa
from test_publish_atomicity import big_run, snapshot

from recsys_tasks import db as results_db
from recsys_tasks import pipeline as stages
from recsys_tasks.config import config_from_env


class Proxy:
    """127.0.0.1:port -> PostgreSQL; `cut()` drops every connection and stops listening."""

    def __init__(self, port: int = 0, target=("127.0.0.1", 5432)):
        self.target, self.sockets, self.open = target, [], True
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.open:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        self.open = False
        try:  # wakes the accept() blocked in the other thread; close() alone leaves it listening
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass


@pytest.fixture()
def through_proxy(postgres_url, recsys_home, monkeypatch):
    proxy = Proxy()
    url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}") + "&connect_timeout=2"
    monkeypatch.setenv("RECSYS_DB_URL", url)
    yield proxy, url
    proxy.cut()


def test_db_cut_mid_publish_keeps_readers_on_the_previous_run_and_records_the_failure_later(through_proxy, postgres_url):
    proxy, url = through_proxy
    config = config_from_env()
    run1 = stages.RunContext(run_id="run-1", config=config)
    results_db.publish_recommendations(run1.db, run1.tables, "run-1", big_run(300, tag="a"), 5)
    run1.record("published")
    direct = sa.create_engine(postgres_url)
    before = snapshot(direct, run1.tables)

    run2 = stages.RunContext(run_id="run-2", config=config)
    run2.record("blessed")

    def shards():
        yield big_run(300, tag="b")
        proxy.cut()  # the database goes away between two shards of the load
        yield big_run(300, tag="b2")

    with pytest.raises(sa.exc.DBAPIError):
        results_db.publish_recommendations(run2.db, run2.tables, "run-2", shards(), 5)
    assert snapshot(direct, run1.tables) == before  # readers never saw run-2, nor half of it

    # the task's failure callback, with the database still down: nothing raised, verdict kept
    down = stages.RunContext(run_id="run-2", config=config)
    stages.mark_failed(down, "task publish failed: connection lost")
    assert down.store.list("pending_status")

    back = Proxy(port=proxy.port)  # the database is reachable again
    try:
        later = stages.RunContext(run_id="run-3", config=config)
        assert later.db is not None  # the next run (or CLI call) to reach the database writes what waited
        record = results_db.get_run(direct, later.tables, "run-2")
        assert record["status"] == "failed" and "connection lost" in record["message"]
        assert later.store.list("pending_status") == []
        assert pd.DataFrame(snapshot(direct, later.tables)).iloc[0, 0] == "run-1"
    finally:
        back.cut()
        direct.dispose()
