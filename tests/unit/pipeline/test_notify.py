"""A failed run tells the operator: a JSON webhook and an e-mail, each to a real local receiver."""

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from helpers import run_record
from recsys_tasks import airflow_adapter
from recsys_tasks.config import config_from_env
from recsys_tasks.data.sources import write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions
from recsys_tasks.pipeline.notify import AlertTargets, notify_failure


class Webhook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Webhook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


class Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) to accept one message: what a mail relay says, in order."""

    messages: list = []

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self):
        self.reply("220 localhost test SMTP")
        envelope = {"to": []}
        while line := self.rfile.readline().decode().rstrip("\r\n"):
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 localhost")
            elif verb == "MAIL":
                envelope["from"] = line
                self.reply("250 OK")
            elif verb == "RCPT":
                envelope["to"].append(line)
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                body = []
                while (data := self.rfile.readline().decode()) not in (".\r\n", ""):
                    body.append(data)
                Smtp.messages.append({**envelope, "data": "".join(body)})
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 OK")


@pytest.fixture()
def receivers(monkeypatch):
    Webhook.received.clear()
    Smtp.messages.clear()
    http = HTTPServer(("127.0.0.1", 0), Webhook)
    smtp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Smtp)
    for server in (http, smtp):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("RECSYS_ALERT_WEBHOOK", f"http://127.0.0.1:{http.server_port}/hooks/recsys")
    monkeypatch.setenv("RECSYS_ALERT_SMTP", f"smtp://127.0.0.1:{smtp.server_address[1]}?to=ops@example.com,ml@example.com")
    yield
    for server in (http, smtp):
        server.shutdown()
        server.server_close()


def test_a_run_failing_validation_notifies_webhook_and_mail(recsys_home, airflow_db, receivers):
    config = config_from_env()
    write_interactions(generate_interactions(SyntheticSpec(users=50, items=30, topics=3, seed=1)), config.source_uri)
    outcome = airflow_adapter.run_dag("recsys_nightly", {"min_rows": 10**9})
    assert outcome["tasks"]["validate"] == "failed"

    assert len(Webhook.received) == 1
    hook = Webhook.received[0]
    assert hook["dag_id"] == "recsys_nightly" and hook["run_id"] == outcome["run_id"] and hook["task_id"] == "validate"
    assert "validation failed" in hook["reason"] and hook["text"].startswith("recsys run failed: recsys_nightly")

    assert len(Smtp.messages) == 1
    mail = Smtp.messages[0]
    assert [line.split(":", 1)[1] for line in mail["to"]] == ["<ops@example.com>", "<ml@example.com>"]
    assert "Subject: recsys run failed: recsys_nightly" in mail["data"] and outcome["run_id"] in mail["data"]
    assert run_record(config, outcome["run_id"])["status"] == "failed_validation"


def test_a_rejected_candidate_notifies_and_says_what_readers_keep(recsys_home, airflow_db, receivers):
    config = config_from_env()
    write_interactions(generate_interactions(SyntheticSpec(users=120, items=40, topics=3, seed=2)), config.source_uri)
    first = airflow_adapter.run_dag("recsys_nightly", {"epochs": 2, "pretrain_epochs": 0, "gate_min_lift": -0.9})
    assert first["tasks"]["publish"] == "success" and Webhook.received == []  # a blessed night is quiet
    # no candidate clears an 11x lift over the strongest baseline: a successful run, yet an alert
    second = airflow_adapter.run_dag("recsys_nightly", {"epochs": 2, "pretrain_epochs": 0, "gate_min_lift": 10})
    assert second["state"] == "success" and second["tasks"]["publish"] == "skipped"
    assert len(Webhook.received) == 1
    hook = Webhook.received[0]
    assert hook["kind"] == "rejected" and hook["run_id"] == second["run_id"] and "floor" in hook["reason"]
    assert hook["text"].startswith(f"recsys candidate rejected: run {second['run_id']}")
    assert "readers see production" in hook["text"] and "unchanged" in hook["text"]
    assert len(Smtp.messages) == 1 and "Subject: recsys candidate rejected" in Smtp.messages[0]["data"]


def test_an_unreachable_receiver_is_logged_and_credentials_are_masked(receivers, caplog):
    targets = AlertTargets(webhook_url="http://127.0.0.1:9/unreachable", smtp_url=None)
    reached = notify_failure(targets, {"run_id": "r", "task_id": "t", "reason": "postgresql://app:hunter22@db/x is down"})
    assert reached == []
    assert "could not deliver" in caplog.text

    reached = notify_failure(AlertTargets.from_env(), {"run_id": "r", "reason": "postgresql://app:hunter22@db/x"})
    assert reached == ["webhook", "smtp"]
    assert "hunter22" not in json.dumps(Webhook.received) + json.dumps(Smtp.messages)
    assert "postgresql://app:***@db/x" in Webhook.received[-1]["reason"]
