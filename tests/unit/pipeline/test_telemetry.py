"""The metrics' names and the watch's clock arithmetic, without a run."""

import re
from pathlib import Path

import pandas as pd
import pytest

from recsys_tasks.config import environment
from recsys_tasks.errors import ConfigError
from recsys_tasks.pipeline import telemetry
from recsys_tasks.pipeline.watch import last_deadline

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[3] / "docs" / "operations.md"


def test_the_documented_metrics_are_the_ones_sent():
    documented = re.findall(r"^\| `recsys\.([^`]+)` \|", DOCS.read_text(), flags=re.M)
    assert documented == list(telemetry.NAMES)


def test_metric_names_are_statsd_safe():
    assert telemetry.metric_name("NDCG@10") == "ndcg_at_10"
    assert telemetry.metric_name("generate[3]") == "generate"
    assert telemetry.metric_name("companion_lists") == "companion_lists"


def test_without_a_statsd_host_nothing_is_sent(monkeypatch):
    for name in ("RECSYS_STATSD_HOST", "AIRFLOW__METRICS__STATSD_ON"):
        monkeypatch.delenv(name, raising=False)
    assert telemetry._target() is None
    telemetry.gauge("publish.rows", 3)  # no socket, no error
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", "9125")
    assert telemetry._target() == ("localhost", 9125, "recsys")


def test_the_deadline_is_the_last_hh_mm_passed(monkeypatch):
    now = pd.Timestamp("2026-12-07T05:30", tz="UTC")
    assert last_deadline(now, 6, 0) == pd.Timestamp("2026-12-06T06:00", tz="UTC")
    assert last_deadline(now, 5, 30) == now
    monkeypatch.setenv("RECSYS_PUBLISH_DEADLINE", "off")
    assert environment.publish_deadline() is None
    monkeypatch.setenv("RECSYS_PUBLISH_DEADLINE", "7:05")
    assert environment.publish_deadline() == (7, 5)
    monkeypatch.setenv("RECSYS_PUBLISH_DEADLINE", "25:00")
    with pytest.raises(ConfigError, match="HH:MM"):
        environment.publish_deadline()
