"""Great Expectations (GX Core 1.x) suite over the canonical interaction frame.

Builds an ephemeral GX context per call (nothing is written to disk by GX itself), runs the
suite and turns GX's results into a plain report: which expectation failed, on which column,
what was observed, and a few offending values. `ValidationRules` holds every threshold.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys_tasks.config import ValidationRules

log = logging.getLogger(__name__)

NEW_SOURCE = "new source: no history to compare (checked from this source's next run on)"

@dataclass
class ValidationReport:
    passed: bool
    rows: int
    checked_at: str
    failures: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)
    data_docs_dir: str | None = None  # GX Data Docs (HTML) in a temporary folder; the caller keeps or drops it
    column_mapping: dict[str, str] = field(default_factory=dict)  # canonical column <- source column, when renamed

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("data_docs_dir")
        return out

    def summary(self) -> str:
        if self.passed:
            lines = [
                f"validation passed: {len(self.checks) - len(self.warnings)} of {len(self.checks)} checks met on {self.rows} rows"
            ]
        else:
            lines = [f"validation failed: {len(self.failures)} of {len(self.checks)} checks not met on {self.rows} rows"]
        if self.column_mapping:
            lines.append("  columns: " + ", ".join(f"{c} <- {s}" for c, s in self.column_mapping.items()))
        if any(c.get("observed") == NEW_SOURCE for c in self.checks):
            lines.append(f"  {NEW_SOURCE}")
        lines += [f"  - {describe(f)}" for f in self.failures]
        lines += [f"  - warning: {describe(w)}" for w in self.warnings]
        return "\n".join(lines)


def describe(check: dict[str, Any]) -> str:
    where = f" on {check['column']}" if check.get("column") else ""
    text = f"{check['expectation']}{where}"
    if check.get("limit_days") is not None and check.get("observed") and check.get("checked_at"):
        age = pd.Timestamp(check["checked_at"]) - pd.Timestamp(check["observed"])
        return f"{text}: the newest event ({check['observed']}) is {_age(age)} old; the limit is {check['limit_days']:g} days"
    if check.get("unexpected_count") is not None:
        text += f": {check['unexpected_count']} rows ({check.get('unexpected_percent', 0):.2f}%) unexpected"
    elif check.get("observed") is not None:
        text += f": observed {check['observed']}"
    if check.get("previous") is not None:  # a drift check: what it compared with, and what it allowed
        text += f"; the last good run of this source: {check['previous']}; allowed: {check['allowed']}"
    if check.get("examples"):
        text += f", e.g. {check['examples']}"
    if check.get("error"):
        text += f" ({check['error']})"
    return text


def _age(delta: pd.Timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} hours" if hours < 48 else f"{hours / 24:.1f} days"


def _suite_expectations(rules: ValidationRules, now: pd.Timestamp, previous: dict | None) -> list[Any]:
    import great_expectations as gx

    E = gx.expectations
    expectations: list[Any] = [E.ExpectColumnToExist(column=c) for c in ("user_id", "item_id", "ts")]
    expectations += [E.ExpectColumnValuesToNotBeNull(column=c) for c in ("user_id", "item_id", "ts")]
    expectations += [E.ExpectColumnValuesToMatchRegex(column=c, regex=r"\S") for c in ("user_id", "item_id")]
    expectations += [
        E.ExpectColumnValuesToBeBetween(column="ts", min_value=pd.Timestamp(rules.ts_floor, tz="UTC"), max_value=now),
        E.ExpectTableRowCountToBeBetween(min_value=rules.min_rows, max_value=rules.max_rows),
        E.ExpectColumnUniqueValueCountToBeBetween(column="user_id", min_value=rules.min_users),
        E.ExpectColumnUniqueValueCountToBeBetween(column="item_id", min_value=rules.min_items),
        E.ExpectCompoundColumnsToBeUnique(
            column_list=["user_id", "item_id", "ts", "event_type"], mostly=1.0 - rules.max_duplicate_rate
        ),
        E.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(rules.event_types)),
        E.ExpectColumnMaxToBeBetween(
            column="ts", min_value=now - pd.Timedelta(days=rules.max_staleness_days),
            meta={"check": "freshness", "severity": rules.freshness_severity, "limit_days": rules.max_staleness_days,
                  "checked_at": now.isoformat()},
        ),
    ]
    if rules.min_valid_value is not None or rules.max_valid_value is not None:
        expectations.append(
            E.ExpectColumnValuesToBeBetween(column="value", min_value=rules.min_valid_value, max_value=rules.max_valid_value)
        )
    if previous:
        expectations.append(
            E.ExpectTableRowCountToBeBetween(
                min_value=int(previous["rows"] * (1.0 - rules.max_volume_drop)),
                max_value=int(previous["rows"] * rules.max_volume_spike),
                meta={"check": "volume change vs the last good run of this source", "severity": "error",
                      "previous": f"{previous['rows']} rows",
                      "allowed": f"{int(previous['rows'] * (1.0 - rules.max_volume_drop))}-"
                                 f"{int(previous['rows'] * rules.max_volume_spike)} rows"},
            )
        )
    return expectations


def profile(frame: pd.DataFrame, top_items: int = 1000) -> dict[str, Any]:
    """What the next run compares itself with: volume and the head of the item distribution."""
    counts = frame["item_id"].value_counts()
    return {
        "rows": len(frame),
        "users": int(frame["user_id"].nunique()),
        "items": int(len(counts)),
        "max_ts": str(frame["ts"].max()),
        "item_counts": {str(k): int(v) for k, v in counts.head(top_items).items()},
    }


def popularity_drift(previous: dict[str, Any], current: dict[str, Any]) -> float:
    """Jensen-Shannon distance (0 same, 1 disjoint) of item shares over the previous head + the rest."""
    keys = list(previous["item_counts"])
    p = np.array([previous["item_counts"][k] for k in keys] + [previous["rows"] - sum(previous["item_counts"].values())], float)
    q = np.array([current["item_counts"].get(k, 0) for k in keys], float)
    q = np.append(q, max(current["rows"] - q.sum(), 0.0))
    p, q = p / max(p.sum(), 1.0), q / max(q.sum(), 1.0)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = lambda a: np.nansum(np.where(a > 0, a * np.log2(a / m), 0.0))  # noqa: E731
        return float(np.sqrt(max((kl(p) + kl(q)) / 2, 0.0)))


def validate_interactions(
    frame: pd.DataFrame, rules: ValidationRules | None = None, now: pd.Timestamp | None = None,
    previous: dict[str, Any] | None = None,
) -> ValidationReport:
    """Run the suite (and, given the previous good run's profile, the drift checks).

    Never raises for bad data: the report says what is wrong and how badly.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    _quiet_great_expectations()
    rules = rules or ValidationRules()
    now = now or pd.Timestamp.now(tz="UTC")
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas("recsys").add_dataframe_asset("interactions")
    definition = batch.add_batch_definition_whole_dataframe("whole_log")
    suite = context.suites.add(gx.ExpectationSuite(name="interactions"))
    for expectation in _suite_expectations(rules, now, previous):
        suite.add_expectation(expectation)
    validation = context.validation_definitions.add(gx.ValidationDefinition(name="interactions", data=definition, suite=suite))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="interactions",
            validation_definitions=[validation],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
        )
    )
    outcome = checkpoint.run(batch_parameters={"dataframe": pd.DataFrame(frame)})
    result = next(iter(outcome.run_results.values()))
    checks = [_check(r, frame) for r in result.results]
    sites = context.get_docs_sites_urls()
    docs_dir = str(Path(sites[0]["site_url"].removeprefix("file://")).parent) if sites else None
    current = profile(frame)
    if previous:
        drift = popularity_drift(previous, current)
        checks.append({
            "expectation": "item popularity drift vs the last good run of this source", "column": "item_id",
            "severity": "error", "success": drift <= rules.max_popularity_drift,
            "observed": f"Jensen-Shannon distance {drift:.3f}", "previous": f"run {previous.get('run_id') or '?'} "
            f"({previous['rows']} rows, {previous['items']} items)", "allowed": f"at most {rules.max_popularity_drift}",
            "unexpected_count": None, "unexpected_percent": None, "examples": [], "error": None,
        })
    else:  # the drift checks need a previous good log of the same source
        checks.append({
            "expectation": "volume and popularity drift", "column": None, "severity": "info", "success": True,
            "observed": NEW_SOURCE, "unexpected_count": None, "unexpected_percent": None, "examples": [], "error": None,
        })
    failures = [c for c in checks if not c["success"] and c["severity"] == "error"]
    warnings = [c for c in checks if not c["success"] and c["severity"] != "error"]
    return ValidationReport(
        passed=not failures, rows=len(frame), checked_at=now.isoformat(),
        failures=failures, warnings=warnings, checks=checks, profile=current, data_docs_dir=docs_dir,
    )


def _quiet_great_expectations() -> None:
    """GX's INFO lines drown the report; some of its modules pin their own level to INFO, so
    the parent logger's level is not enough. `recsys -v` turns them back on."""
    if logging.getLogger("recsys_tasks").isEnabledFor(logging.DEBUG):
        return
    for name in [n for n in logging.Logger.manager.loggerDict if n.startswith("great_expectations")] + ["great_expectations"]:
        logging.getLogger(name).setLevel(logging.WARNING)


def _check(result: Any, frame: pd.DataFrame) -> dict[str, Any]:
    kwargs = result.expectation_config.kwargs
    column = kwargs.get("column") or ",".join(kwargs.get("column_list", []) or [])
    info = result.result or {}
    examples = info.get("partial_unexpected_list") or []
    if (
        column == "ts"
        and frame.attrs.get("unparseable_ts")
        and result.expectation_config.type == "expect_column_values_to_not_be_null"
    ):
        # the canonical frame holds NaT for unparseable timestamps: quote what the source had
        examples = frame.attrs["unparseable_ts"]
    error = None
    if result.exception_info and result.exception_info.get("raised_exception"):
        error = result.exception_info.get("exception_message")
    meta = result.expectation_config.meta or {}
    return {
        "expectation": meta.get("check", result.expectation_config.type),
        "severity": meta.get("severity", "error"),
        "column": column or None,
        "success": bool(result.success),
        "observed": _plain(info.get("observed_value")),
        "unexpected_count": info.get("unexpected_count"),
        "unexpected_percent": info.get("unexpected_percent"),
        "examples": [_plain(v) for v in examples[:5]],
        "error": error,
        **{k: meta[k] for k in ("limit_days", "checked_at", "previous", "allowed") if k in meta},
    }


def _plain(value: Any) -> Any:
    """JSON-friendly values for the report."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# GX's Data Docs load Bootstrap, jQuery, Vega and a logo (with a timestamp) from CDNs, and run
# inline scripts. `offline_html` makes a page self-contained: no script, nothing fetched from
# outside, outbound links as plain text; the tables render with GX's own local stylesheet and
# the few rules below.
_EXTERNAL = r"""(?:https?:)?//[^"']*"""
_OFFLINE_RULES = [
    (re.compile(r"<script\b.*?</script\s*>", re.IGNORECASE | re.DOTALL), ""),
    (re.compile(rf"""<link\b[^>]*\bhref=["']{_EXTERNAL}["'][^>]*>""", re.IGNORECASE), ""),
    (re.compile(rf"""<img\b[^>]*\bsrc=["']{_EXTERNAL}["'][^>]*>""", re.IGNORECASE), ""),
    (re.compile(rf"""\s(?:href|action|src)=["']{_EXTERNAL}["']""", re.IGNORECASE), ""),
    (re.compile(r"\son[a-z]+=(?:\"[^\"]*\"|'[^']*')", re.IGNORECASE), ""),  # inline handlers
    (re.compile(r"""url\(\s*["']?(?:https?:)?//[^)]*\)""", re.IGNORECASE), "none"),  # in style blocks
    (re.compile(r"""@import\s+(?:url\()?["']?(?:https?:)?//[^;]*;""", re.IGNORECASE), ""),
]
_OFFLINE_STYLE = (
    "<style>body{font-family:system-ui,sans-serif;margin:1rem 2rem;color:#1f2328}"
    "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #d0d7de;padding:4px 8px;vertical-align:top}"
    ".collapse:not(.show){display:block}</style>"
)


def offline_html(page: str) -> str:
    """A Data Docs page that loads nothing from outside and runs no script (see above)."""
    for pattern, replacement in _OFFLINE_RULES:
        page = pattern.sub(replacement, page)
    return page.replace("</head>", _OFFLINE_STYLE + "</head>", 1)

