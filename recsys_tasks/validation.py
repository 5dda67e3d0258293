"""Great Expectations (GX Core 1.x) suite over the canonical interaction frame.

Builds an ephemeral GX context per call (nothing is written to disk by GX itself), runs the
suite and turns GX's results into a plain report: which expectation failed, on which column,
what was observed, and a few offending values. `ValidationRules` holds every threshold.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "rating", "interaction")


@dataclass(frozen=True)
class ValidationRules:
    max_duplicate_rate: float = 0.01  # share of rows repeating an earlier (user, item, ts, event)
    min_rows: int = 1
    min_users: int = 2  # a one-user log cannot train or evaluate anything
    min_items: int = 2
    event_types: tuple[str, ...] = DEFAULT_EVENT_TYPES
    min_value: float | None = None
    max_value: float | None = None


@dataclass
class ValidationReport:
    passed: bool
    rows: int
    checked_at: str
    failures: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if self.passed:
            return f"validation passed: {len(self.checks)} expectations met on {self.rows} rows"
        lines = [f"validation failed: {len(self.failures)} of {len(self.checks)} expectations not met on {self.rows} rows"]
        for failure in self.failures:
            lines.append(f"  - {describe(failure)}")
        return "\n".join(lines)


def describe(check: dict[str, Any]) -> str:
    where = f" on {check['column']}" if check.get("column") else ""
    text = f"{check['expectation']}{where}"
    if check.get("unexpected_count") is not None:
        text += f": {check['unexpected_count']} rows ({check.get('unexpected_percent', 0):.2f}%) unexpected"
    elif check.get("observed") is not None:
        text += f": observed {check['observed']}"
    if check.get("examples"):
        text += f", e.g. {check['examples']}"
    if check.get("error"):
        text += f" ({check['error']})"
    return text


def _suite_expectations(frame: pd.DataFrame, rules: ValidationRules, now: pd.Timestamp) -> list[Any]:
    import great_expectations as gx

    E = gx.expectations
    expectations: list[Any] = [E.ExpectColumnToExist(column=c) for c in ("user_id", "item_id", "ts")]
    expectations += [E.ExpectColumnValuesToNotBeNull(column=c) for c in ("user_id", "item_id", "ts")]
    expectations += [E.ExpectColumnValuesToMatchRegex(column=c, regex=r"\S") for c in ("user_id", "item_id")]
    expectations += [
        E.ExpectColumnValuesToBeBetween(column="ts", max_value=now),
        E.ExpectTableRowCountToBeBetween(min_value=rules.min_rows),
        E.ExpectColumnUniqueValueCountToBeBetween(column="user_id", min_value=rules.min_users),
        E.ExpectColumnUniqueValueCountToBeBetween(column="item_id", min_value=rules.min_items),
        E.ExpectCompoundColumnsToBeUnique(
            column_list=["user_id", "item_id", "ts", "event_type"], mostly=1.0 - rules.max_duplicate_rate
        ),
        E.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(rules.event_types)),
    ]
    if rules.min_value is not None or rules.max_value is not None:
        expectations.append(E.ExpectColumnValuesToBeBetween(column="value", min_value=rules.min_value, max_value=rules.max_value))
    return expectations


def validate_interactions(
    frame: pd.DataFrame, rules: ValidationRules | None = None, now: pd.Timestamp | None = None
) -> ValidationReport:
    """Run the suite; never raises for bad data, the report says what is wrong."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its INFO lines drown the report
    rules = rules or ValidationRules()
    now = now or pd.Timestamp.now(tz="UTC")
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas("recsys").add_dataframe_asset("interactions")
    definition = batch.add_batch_definition_whole_dataframe("whole_log")
    suite = context.suites.add(gx.ExpectationSuite(name="interactions"))
    for expectation in _suite_expectations(frame, rules, now):
        suite.add_expectation(expectation)
    validation = context.validation_definitions.add(gx.ValidationDefinition(name="interactions", data=definition, suite=suite))
    data = pd.DataFrame(frame)  # GX reads the frame; attrs (raw timestamps) are ours
    result = validation.run(
        batch_parameters={"dataframe": data},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
    )
    checks = [_check(r, frame) for r in result.results]
    failures = [c for c in checks if not c["success"]]
    return ValidationReport(
        passed=not failures, rows=len(frame), checked_at=now.isoformat(), failures=failures, checks=checks
    )


def _check(result: Any, frame: pd.DataFrame) -> dict[str, Any]:
    kwargs = result.expectation_config.kwargs
    column = kwargs.get("column") or ",".join(kwargs.get("column_list", []) or [])
    info = result.result or {}
    examples = info.get("partial_unexpected_list") or []
    if column == "ts" and frame.attrs.get("unparseable_ts") and result.expectation_config.type == "expect_column_values_to_not_be_null":
        # the canonical frame holds NaT for unparseable timestamps: quote what the source had
        examples = frame.attrs["unparseable_ts"]
    error = None
    if result.exception_info and result.exception_info.get("raised_exception"):
        error = result.exception_info.get("exception_message")
    return {
        "expectation": result.expectation_config.type,
        "column": column or None,
        "success": bool(result.success),
        "observed": _plain(info.get("observed_value")),
        "unexpected_count": info.get("unexpected_count"),
        "unexpected_percent": info.get("unexpected_percent"),
        "examples": [_plain(v) for v in examples[:5]],
        "error": error,
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
