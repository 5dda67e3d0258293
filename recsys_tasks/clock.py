"""UTC instants: now, and any stamp as a UTC timestamp (a naive one is taken as UTC, which is
how the pipeline stores its times)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: Any) -> pd.Timestamp | None:
    """`value` (a datetime, pendulum instant, ISO string or pandas timestamp) in UTC; None stays None."""
    if value is None:
        return None
    import pandas as pd  # here, not at the top: DAG files import this package at parse time

    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
