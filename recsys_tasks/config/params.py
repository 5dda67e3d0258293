"""Run-level params, derived from the settings: typing, checking and applying them.

`PARAMS` lists every field made with `settings.setting`; the Airflow trigger form
(`airflow_adapter.dag_params`), `recsys run --param`, `recsys validate --param` and
`recsys bench --set` all type and check values here, so a value means the same everywhere.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recsys_tasks.config.settings import SECTIONS, ModelConfig, ParamSpec, PipelineConfig, TrainConfig
from recsys_tasks.errors import ConfigError


@dataclass(frozen=True)
class Param:
    """One run-level setting an operator may change: where it lives and what is allowed."""

    section: str | None  # None: PipelineConfig itself; else "model", "train" or "validation"
    kind: type  # int, float, bool or str
    default: Any
    nullable: bool  # None is a value of its own (min_value: keep every event)
    spec: ParamSpec

    def __getattr__(self, name: str) -> Any:  # help, low, high, choices, deployment
        return getattr(self.spec, name)


def _kind(annotation: Any) -> tuple[type, bool]:
    """`int` -> (int, False); `float | None` -> (float, True)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def _fields(kind: type) -> dict[str, tuple[dataclasses.Field, type, bool]]:
    hints = typing.get_type_hints(kind)
    return {f.name: (f, *_kind(hints[f.name])) for f in dataclasses.fields(kind)}


def _params() -> dict[str, Param]:
    found: dict[str, Param] = {}
    for section, kind in (None, PipelineConfig), *SECTIONS.items():
        for name, (f, typ, nullable) in _fields(kind).items():
            if "param" in f.metadata:
                if name in found:
                    raise ConfigError(f"param {name!r} is declared twice")  # names are flat in the form
                default = None if f.default is dataclasses.MISSING else f.default
                found[name] = Param(section, typ, default, nullable, f.metadata["param"])
    return found


PARAMS: dict[str, Param] = _params()


def coerce(name: str, kind: type, raw: Any, spec: ParamSpec | None = None) -> Any:
    """`raw` (text from a form or a command line, or a JSON value) as `kind`, checked against
    the spec's range and choices; a bad value raises ConfigError naming the setting."""
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in {"true", "1", "yes", "y"}:
            return True
        if text in {"false", "0", "no", "n"}:
            return False
        raise ConfigError(f"param {name!r} must be true or false, got {raw!r}")
    if kind is str:
        value = str(raw).strip()
        if not value:
            raise ConfigError(f"param {name!r} must not be empty")
        if spec and spec.normalise:
            value = spec.normalise(value)
        if spec and spec.choices and value not in spec.choices:
            raise ConfigError(f"param {name!r} must be one of {', '.join(spec.choices)}, got {value!r}")
        return value
    try:
        value = kind(raw)
        if kind is int and isinstance(raw, float) and raw != int(raw):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"param {name!r} must be {kind.__name__}, got {raw!r}") from None
    if spec and ((spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high)):
        raise ConfigError(f"param {name!r}={value} is outside [{spec.low}, {spec.high}]")
    return value


def typed_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params as their declared types (`"20"` -> 20, `"true"` -> True), empty ones dropped;
    unknown names and bad values raise ConfigError naming the param."""
    typed: dict[str, Any] = {}
    for name, raw in params.items():
        if raw is None or raw == "":
            continue  # an empty field in the trigger form means "use the default"
        param = PARAMS.get(name)
        if param is None:
            raise ConfigError(f"unknown param {name!r}; known params: {', '.join(sorted(PARAMS))}")
        typed[name] = coerce(name, param.kind, raw, param.spec)
    return typed


def with_params(config: PipelineConfig, params: Mapping[str, Any]) -> PipelineConfig:
    """Apply run-level params; unknown names and bad values raise ConfigError."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for name, value in typed_params(params).items():
        section = PARAMS[name].section
        (sections[section] if section else top)[name] = value
    resolved = dataclasses.replace(
        config, **{name: dataclasses.replace(getattr(config, name), **values) for name, values in sections.items()}, **top
    )
    check_consistency(resolved)
    return resolved


def field_overrides(pairs: list[str], model: ModelConfig, train: TrainConfig) -> tuple[ModelConfig, TrainConfig]:
    """`recsys bench --set`: ["frequency_mix=0.7", "lr=5e-4"] applied to the ModelConfig or
    TrainConfig field of that name, typed and checked as a param is (any field, param or not)."""
    fields = {**{n: ("model", k) for n, (_, k, _) in _fields(ModelConfig).items()},
              **{n: ("train", k) for n, (_, k, _) in _fields(TrainConfig).items()}}
    changes: dict[str, dict] = {"model": {}, "train": {}}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if name not in fields or not sep:
            raise ConfigError(f"{pair!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(fields))}")
        section, kind = fields[name]
        changes[section][name] = coerce(name, kind, raw, PARAMS[name].spec if name in PARAMS else None)
    return dataclasses.replace(model, **changes["model"]), dataclasses.replace(train, **changes["train"])


def parse_event_weights(text: str) -> dict[str, float]:
    """`"purchase=3,add_to_cart=2"` -> {"purchase": 3.0, "add_to_cart": 2.0}; types not named weigh 1."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, raw = part.partition("=")
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not sep or not name.strip() or value < 0:
            raise ConfigError(f"event_weights: {part!r} is not type=weight with a weight >= 0 (e.g. purchase=3,view=1)")
        weights[name.strip()] = value
    return weights


def parse_caps(text: str) -> dict[str, int]:
    """`max_per_attribute` ("brand=2,category=3") as {column: cap}."""
    caps: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        column, sep, raw = part.partition("=")
        if not sep or not column.strip() or not raw.strip().isdigit() or int(raw) < 1:
            raise ConfigError(f"max_per_attribute: {part!r} is not column=N with N >= 1 (e.g. brand=2)")
        caps[column.strip()] = int(raw)
    return caps


def check_consistency(config: PipelineConfig) -> None:
    """Settings that are each valid but not together; raised before any work starts."""
    parse_event_weights(config.event_weights)
    parse_caps(config.max_per_attribute)
    wants_attributes = "attribute" in config.pretrain_objectives.split("+") or "attribute" in config.train.auxiliary.split("+")
    if wants_attributes and not config.items_uri:
        raise ConfigError(
            "the attribute objective (pretrain_objectives or auxiliary) needs item attributes: "
            "set RECSYS_ITEMS_URI or the items_uri param, or choose objectives without 'attribute'"
        )
