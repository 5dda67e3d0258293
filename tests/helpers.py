"""Small readers the end-to-end tests share: what downstream apps see, and the run table."""

import os
import signal
import subprocess
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from recsys_tasks import db as results_db


def _datasets_dir() -> Path:
    """../shared/datasets beside the checkout (as CI lays it out); RECSYS_DATASETS overrides,
    and the workspace copy serves a clone made elsewhere (e.g. /tmp/check)."""
    candidates = [os.environ.get("RECSYS_DATASETS"), Path(__file__).resolve().parents[2] / "shared" / "datasets",
                  "/work/shared/datasets"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "Beauty.txt").exists():
            return Path(candidate)
    raise FileNotFoundError(f"benchmark datasets not found in {candidates[1:]}; set RECSYS_DATASETS")


DATASETS = _datasets_dir()


def read_view(config):
    """Everything `recommendations_current` shows right now."""
    engine = results_db.make_engine(config.db_url)
    try:
        return results_db.read_current(engine, results_db.Tables.from_config(config))
    finally:
        engine.dispose()


def read_companion(config, name):
    """What `recommendations_fallback` ("fallback") or `similar_items_current` ("similar") shows."""
    tables = results_db.Tables.from_config(config)
    engine = results_db.make_engine(config.db_url)
    try:
        with engine.connect() as conn:
            view = tables.fallback_view if name == "fallback" else tables.similar_view
            return pd.read_sql(sa.text(f"SELECT * FROM {view}"), conn)
    finally:
        engine.dispose()


def run_record(config, run_id):
    engine = results_db.make_engine(config.db_url)
    try:
        return results_db.get_run(engine, results_db.Tables.from_config(config), run_id)
    finally:
        engine.dispose()


def stop_process_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM a server started with `start_new_session=True` and its children; SIGKILL after `grace` s.
    A group that is already gone (the test stopped it as a user would) is fine."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        proc.wait(10)
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def headless_chromium():
    """Debian's Chromium through Selenium, headless, 1280x900, its console log kept (the UI tests)."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(path), f"{path} missing: apt-get install chromium chromium-driver (.ci/run does)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)



class S3FaultProxy:
    """An HTTP proxy in front of the S3 endpoint that answers the next requests of a method
    with planned faults (a status code with S3's error body, or "drop": the connection closed
    without an answer) and forwards every other request: botocore meets real HTTP failures."""

    ERRORS = {500: "InternalError", 503: "SlowDown", 403: "AccessDenied"}

    def __init__(self, upstream: str):
        import http.client
        import threading
        from collections import defaultdict
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        proxy, target = self, urlsplit(upstream)
        self.faults: dict[str, list] = defaultdict(list)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request that arrived

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests.append((self.command, self.path.split("?")[0]))
                if proxy.faults[self.command]:
                    fault = proxy.faults[self.command].pop(0)
                    if fault == "drop":
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    code = proxy.ERRORS.get(fault, "InternalError")
                    payload = f"<Error><Code>{code}</Code><Message>{code}</Message></Error>".encode()
                    self.send_response(fault)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                conn.request(self.command, self.path, body=body or None, headers=dict(self.headers))
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def fail(self, method: str, *faults) -> None:
        self.faults[method].extend(faults)

    def count(self, method: str, path_end: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.endswith(path_end))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
