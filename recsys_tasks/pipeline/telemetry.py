"""Per-run metrics out, over StatsD (UDP), the way Airflow emits its own.

Off unless `RECSYS_STATSD_HOST` is set (or Airflow's `[metrics] statsd_on` is, whose host and
port are then used); `RECSYS_STATSD_PORT` (8125) and `RECSYS_STATSD_PREFIX` (`recsys`) complete
it. `NAMES` are the metrics (docs/operations.md says what each is; a test keeps the two equal).

A metric that cannot be sent is dropped: telemetry never fails a run.
"""

from __future__ import annotations

import logging
import os
import re
import socket

log = logging.getLogger(__name__)

NAMES = (
    "stage.<stage>.duration", "stage.<stage>.failed", "gate.candidate.<metric>", "gate.production.<metric>",
    "gate.baseline.<metric>", "gate.blessed", "gate.churn", "publish.rows", "publish.users", "lists.age_hours",
)


def _target() -> tuple[str, int, str] | None:
    host = os.environ.get("RECSYS_STATSD_HOST")
    if not host and os.environ.get("AIRFLOW__METRICS__STATSD_ON", "").lower() == "true":
        host = os.environ.get("AIRFLOW__METRICS__STATSD_HOST", "localhost")
    if not host:
        return None
    port = int(os.environ.get("RECSYS_STATSD_PORT") or os.environ.get("AIRFLOW__METRICS__STATSD_PORT") or 8125)
    return host, port, os.environ.get("RECSYS_STATSD_PREFIX", "recsys").strip(".")


def metric_name(text: str) -> str:
    """`NDCG@10` -> `ndcg_at_10`, `generate[2]` -> `generate`: StatsD-safe, one series per stage."""
    text = re.sub(r"\[\d+\]$", "", text).replace("@", "_at_")
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")


def _send(lines: list[str]) -> None:
    target = _target()
    if target is None or not lines:
        return
    host, port, prefix = target
    payload = "\n".join(f"{prefix}.{line}" for line in lines).encode()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(payload, (host, port))
    except OSError as error:
        log.debug("statsd %s:%s unreachable: %s", host, port, error)


def gauge(name: str, value: float) -> None:
    _send([f"{name}:{value:g}|g"])


def gauges(values: dict[str, float | None]) -> None:
    _send([f"{name}:{value:g}|g" for name, value in values.items() if value is not None])


def timing(name: str, seconds: float) -> None:
    _send([f"{name}:{seconds * 1000:.0f}|ms"])


def incr(name: str) -> None:
    _send([f"{name}:1|c"])


def stage(label: str, seconds: float, failed: bool) -> None:
    name = metric_name(label)
    timing(f"stage.{name}.duration", seconds)
    if failed:
        incr(f"stage.{name}.failed")
