"""Telling an operator that a run failed, that its gate rejected the candidate, that the
lists readers see are stale, or that a night missed its deadline: a JSON webhook and/or an
e-mail over SMTP.

Both are optional and configured by the deployment, never by a run's params:
- `RECSYS_ALERT_WEBHOOK`: a URL that receives a JSON POST (Slack/Teams/Mattermost incoming
  webhooks accept the `text` field; other receivers can read the structured fields);
- `RECSYS_ALERT_SMTP`: `smtp://[user:password@]host:port?to=a@x,b@x[&from=recsys@x]`
  (`smtps://` for implicit TLS, `&starttls=true` to upgrade a plain connection).
A notification that cannot be delivered is logged and never hides the failure it reports.
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from recsys_tasks.config import environment
from recsys_tasks.errors import ConfigError
from recsys_tasks.redact import redact, redact_obj

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertTargets:
    webhook_url: str | None = None
    smtp_url: str | None = None

    @classmethod
    def from_env(cls) -> AlertTargets:
        webhook_url, smtp_url = environment.alert_targets()
        return cls(webhook_url=webhook_url, smtp_url=smtp_url)

    def __bool__(self) -> bool:
        return bool(self.webhook_url or self.smtp_url)


def failure_text(event: Mapping[str, Any]) -> str:
    """One readable paragraph: what failed, where, and why."""
    where = f"{event.get('dag_id')} / {event.get('run_id')} / task {event.get('task_id')}"
    attempt = f" (attempt {event['try_number']})" if event.get("try_number") else ""
    text = f"recsys run failed: {where}{attempt}: {event.get('reason')}"
    if event.get("log_url"):
        text += f"\nlog: {event['log_url']}"
    return text


def rejection_text(event: Mapping[str, Any]) -> str:
    """What the gate decided, and what readers have now."""
    return (f"recsys candidate rejected: run {event.get('run_id')}: candidate "
            f"{event.get('candidate')}; readers see {event.get('readers_see')}. {event.get('reason')}")


def notify_failure(targets: AlertTargets, event: Mapping[str, Any], timeout_s: float = 10.0) -> list[str]:
    """Send `event` (dag_id, run_id, task_id, try_number, reason, log_url) to every configured
    target; returns the targets reached. Credentials in the event are masked first."""
    return _send(targets, {"kind": "failed", **event}, failure_text, timeout_s)


def notify_rejection(targets: AlertTargets, event: Mapping[str, Any], timeout_s: float = 10.0) -> list[str]:
    """The gate rejected tonight's candidate (`event`: run_id, candidate, readers_see,
    reason): a successful run, yet one an operator must hear about."""
    return _send(targets, {"kind": "rejected", **event}, rejection_text, timeout_s)


WATCH_TITLES = {"stale": "recsys lists are stale", "late": "recsys lists are late"}


def notify_watch(targets: AlertTargets, kind: str, event: Mapping[str, Any], timeout_s: float = 10.0) -> list[str]:
    """What `recsys_watch` found (`kind`: stale or late; `event["reason"]` says what and why)."""
    return _send(targets, {"kind": kind, **event}, lambda e: f"{WATCH_TITLES[kind]}: {e.get('reason')}", timeout_s)


def _send(targets: AlertTargets, event: dict[str, Any], texts: Any, timeout_s: float) -> list[str]:
    event = redact_obj(event)
    text = texts(event)
    reached = []
    if targets.webhook_url:
        try:
            _post_webhook(targets.webhook_url, {"text": text, **event}, timeout_s)
            reached.append("webhook")
        except OSError as exc:
            log.error("could not deliver the %s notification to the webhook %s: %s", event["kind"],
                      redact(targets.webhook_url), exc)
    if targets.smtp_url:
        try:
            _send_mail(targets.smtp_url, text, timeout_s)
            reached.append("smtp")
        except (OSError, smtplib.SMTPException, ConfigError) as exc:
            log.error("could not e-mail the %s notification through %s: %s", event["kind"], redact(targets.smtp_url), exc)
    return reached


def _post_webhook(url: str, payload: dict[str, Any], timeout_s: float) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(payload, default=str).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (the operator's own URL)
        response.read()


def _send_mail(smtp_url: str, text: str, timeout_s: float) -> None:
    parts = urlsplit(smtp_url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError(f"RECSYS_ALERT_SMTP must look like smtp://host:port?to=ops@example.com, got {redact(smtp_url)!r}")
    query = parse_qs(parts.query)
    recipients = [a for v in query.get("to", []) for a in v.split(",") if a]
    if not recipients:
        raise ConfigError("RECSYS_ALERT_SMTP needs at least one recipient: ?to=ops@example.com")
    message = EmailMessage()
    message["Subject"] = text.splitlines()[0][:150]
    message["From"] = query.get("from", [f"recsys@{parts.hostname}"])[0]
    message["To"] = ", ".join(recipients)
    message.set_content(text)
    kind = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
    with kind(parts.hostname, parts.port or (465 if parts.scheme == "smtps" else 25), timeout=timeout_s) as server:
        if query.get("starttls", ["false"])[0].lower() == "true":
            server.starttls()
        if parts.username:
            server.login(unquote(parts.username), unquote(parts.password or ""))
        server.send_message(message)
