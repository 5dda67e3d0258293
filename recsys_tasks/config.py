"""Typed, frozen configuration: defaults that run, overrides from one place, validated.

Deployment-level settings (where data comes from, where results and artifacts go) come from
the environment (`RECSYS_SOURCE_URI`, `RECSYS_DB_URL`, `RECSYS_ARTIFACT_ROOT`, `RECSYS_HOME`).
Run-level settings come from DAG params or `recsys run --param key=value`, and are checked
against `PARAMS` before anything runs. The resolved config is saved beside every model.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys_tasks.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    d_model: int = 64  # SASRec's width on Amazon-size catalogues; wider overfits short sequences
    n_layers: int = 2  # two blocks capture item-to-item transitions; more adds little at ~10 items/user
    n_heads: int = 2
    max_len: int = 50  # most recent items kept per user; covers >95% of histories here
    dropout: float = 0.3  # short sequences overfit quickly; 0.3-0.5 is the usual range
    # BSARec's frequency branch beside attention: its share alpha in each block (0: off; BSARec
    # 0.7), and how many of the lowest frequencies over max_len its low-pass keeps (BSARec's c = 5
    # keeps c // 2 + 1 = 3). On by default: at 20 epochs it raised validation NDCG@10 on Beauty
    # (seeds 42, 43) and Sports (results/ablation_13.json)
    frequency_mix: float = 0.7
    frequencies: int = 3
    attention_sink: bool = False  # a learned key/value every position may attend to ("attend to nothing")


@dataclass(frozen=True)
class TrainConfig:
    pretrain_epochs: int = 5  # self-supervised passes when the shared encoder is (re)built
    epochs: int = 20  # fine-tuning upper bound for a nightly run; early stopping may end sooner
    patience: int = 4  # epochs without a better validation NDCG@10 before stopping
    batch_size: int = 256
    lr: float = 2e-3  # converges within a nightly budget; 1e-3 is the benchmarks' setting
    weight_decay: float = 0.0
    mask_prob: float = 0.2  # Cloze masking rate used by BERT4Rec
    seed: int = 42
    device: str = "auto"  # "auto" takes CUDA when present, else CPU
    # above this many items fine-tuning uses a sampled softmax (in-batch + uniform negatives,
    # logQ-corrected): a full one costs batch positions x items floats per step
    sampled_softmax_above: int = 50_000
    negatives: int = 1024  # uniform negatives per batch of the sampled softmax
    warm_start: str = "all"  # what fine-tuning takes from the pretrained encoder: one of WARM_START
    # self-supervised objectives kept on as a regulariser while fine-tuning ("+"-joined, "" none),
    # their loss weighted by auxiliary_weight (CL4SRec's setting: contrastive, 0.1)
    auxiliary: str = "none"
    auxiliary_weight: float = 0.1
    # soft future labels (FENRec): position t learns the next item with weight 1 and the k-th item
    # after it with future_decay^k, k <= future_items, normalised to sum to 1 (0: the next item only)
    future_decay: float = 0.0
    future_items: int = 2
    # validation, the kept model and what is shipped use an exponential moving average of the
    # weights, updated every step with this decay (0: the weights as trained)
    ema_decay: float = 0.0
    # training processes (DDP through torch's distributed launcher); 0: one per visible GPU
    # when there are several, else one. More than one on CPU uses the gloo backend.
    processes: int = 0


WARM_START = ("all", "embeddings")  # the whole encoder, or its item and position embeddings only
SELF_SUPERVISED = ("contrastive", "attribute", "masked_item")  # objectives that need no labels
SPLITS = ("leave_one_out", "time")


def objective_sets(names: tuple[str, ...] = SELF_SUPERVISED) -> tuple[str, ...]:
    """Every non-empty "+"-joined combination of `names`, in their order: the allowed values
    of `pretrain_objectives` and `auxiliary` (an enum the trigger form can show)."""
    combos = [[]]
    for name in names:
        combos += [c + [name] for c in combos]
    return tuple("+".join(c) for c in sorted(combos[1:], key=len))


def canonical_objectives(value: str) -> str:
    """`attribute+contrastive` and `contrastive, attribute` both mean `contrastive+attribute`."""
    parts = {p.strip() for p in value.replace(",", "+").split("+") if p.strip()}
    return "+".join(n for n in SELF_SUPERVISED if n in parts) + "".join(f"+{p}" for p in sorted(parts - set(SELF_SUPERVISED)))
SOURCE_FORMATS = ("csv", "parquet", "movielens-100k", "movielens-1m", "movielens-csv", "sequence")
DEFAULT_EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "rating", "interaction")


@dataclass(frozen=True)
class ValidationRules:
    max_duplicate_rate: float = 0.01  # share of rows repeating an earlier (user, item, ts, event)
    min_rows: int = 1
    max_rows: int | None = None
    min_users: int = 2  # a one-user log cannot train or evaluate anything
    min_items: int = 2
    event_types: tuple[str, ...] = DEFAULT_EVENT_TYPES
    min_value: float | None = None
    max_value: float | None = None
    ts_floor: str = "1990-01-01"  # older timestamps are almost always unit or parsing mistakes
    max_volume_drop: float = 0.5  # fail when rows fall below (1 - this) x the previous run's
    max_volume_spike: float = 3.0  # fail when rows exceed this x the previous run's
    max_popularity_drift: float = 0.5  # Jensen-Shannon distance of item shares vs the previous run
    max_staleness_days: float = 2.0  # newest event older than this: stale
    freshness_severity: str = "warning"  # "error" to stop stale runs; warning keeps history valid


@dataclass(frozen=True)
class PipelineConfig:
    source_uri: str
    db_url: str
    artifact_root: str
    source_format: str | None = None  # None: detect from the file name (see formats.py)
    source_columns: str = ""  # column mapping "user_id=uid,ts=created_at"; empty: canonical names
    window_days: int = 0  # only events of the last N days; 0 keeps the whole log
    # which of a user's repeated events of one item is kept: "strongest" (the highest event_weights
    # weight, then value; a purchase after a view of the item is kept), "first" or "last"
    dedup_keep: str = "strongest"
    min_user_events: int = 0  # k-core bounds; 0 keeps everyone (every user still gets recommendations)
    min_item_events: int = 0
    items_uri: str | None = None  # optional item attributes (JSON item -> [attr], or CSV/Parquet item_id, attribute)
    results_table: str = "recommendations"
    current_view: str = "recommendations_current"
    runs_table: str = "recsys_runs"
    reader_role: str = "recsys_reader"  # PostgreSQL role that may only read the view and the run table
    top_k: int = 10
    min_history: int = 2  # users with fewer events get popular items (strategy 'popularity'), not the model
    num_shards: int = 4  # generation tasks per run; bounded so the scheduler sees a handful, not one per user
    retain_runs: int = 5  # published runs kept in the results table, the current one included
    min_sequence_length: int = 3  # users need train + validation + test items to be evaluated
    split: str = "leave_one_out"  # or "time": evaluate only users active after time_split_quantile
    time_split_quantile: float = 0.8
    gate_metric: str = "NDCG@10"
    gate_min_lift: float = 0.0  # candidate must beat the strongest baseline (popularity, EASE, item-kNN) by this relative margin
    gate_max_regression: float = 0.02  # candidate may trail production by at most this share
    # share of the published top-K a candidate may replace, over a sample of users (1.0: no bound);
    # replacing nearly all of it at once usually means a broken model or item-id mapping, not a better model
    gate_max_churn: float = 0.9
    churn_sample_users: int = 2000
    ease_max_items: int = 5000  # EASE baseline only below this catalogue size (it inverts an n x n matrix)
    force_pretrain: bool = False
    # "+"-joined: contrastive, attribute (needs items_uri), masked_item. Contrastive is the default:
    # it gave fine-tuning the largest head start on Beauty; masked_item (bidirectional) slowed it down
    pretrain_objectives: str = "contrastive"
    # what the nightly fine-tuning starts from: "encoder" (the pretrained encoder), or
    # "production" (the production model when there is one: on Beauty at a one-minute nightly
    # budget it reached twice the encoder's next-night NDCG@10, benchmarks/bench_nightly.py)
    warm_start_from: str = "encoder"
    # share of users (a stable hash of the user id) shown a control list instead of the model's,
    # flagged `variant = 'control'` in the published rows, so outcome tracking can measure uplift
    holdout_fraction: float = 0.0
    holdout_control: str = "popularity"  # the control list: "popularity", or "production" (the model being replaced)
    # what each event type is worth ("type=weight", others 1): as a fine-tuning target (its
    # cross-entropy times the weight), in de-duplication (dedup_keep=strongest) and in outcome
    # tracking's weighted hits
    event_weights: str = "purchase=3,add_to_cart=2"
    outcomes_table: str = "recsys_outcomes"
    # the catalogue (items_uri): share of event items missing from it tolerated (a warning up to
    # this, an error above); items marked available = false are never recommended
    catalogue_max_missing: float = 0.05
    exclude_items: str = ""  # comma-separated item ids never recommended (business rule)
    exclude_attributes: str = ""  # comma-separated catalogue attributes never recommended, e.g. "brand=acme,category=tobacco"
    # diversity: at most N items of one value of an attribute per list, e.g. "brand=2" ("" no cap)
    max_per_attribute: str = ""
    # ratings below this are not positives (dropped before training); None keeps every event
    min_value: float | None = None
    similar_k: int = 10  # similar items published per item (similar_items_current)
    trending_days: int = 7  # the fallback list (recommendations_fallback): most events in the last N days of the log
    fallback_view: str = "recommendations_fallback"  # the current run's non-personal list, for users without a row
    similar_view: str = "similar_items_current"  # the current run's similar items per item
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validation: ValidationRules = field(default_factory=ValidationRules)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PipelineConfig:
        """The inverse of `to_dict` (JSON lists become the tuples the dataclasses hold)."""

        def build(kind: type, raw: Mapping[str, Any]) -> Any:
            return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})

        nested = {"model": ModelConfig, "train": TrainConfig, "validation": ValidationRules}
        flat = {k: v for k, v in values.items() if k not in nested}
        return build(cls, {**flat, **{k: build(kind, values[k]) for k, kind in nested.items()}})


def recsys_home() -> Path:
    """Folder holding the embedded default's databases and artifacts."""
    return Path(os.environ.get("RECSYS_HOME", Path.cwd() / "var")).resolve()


def default_config() -> PipelineConfig:
    """The embedded default: SQLite source and results, a local artifact folder."""
    home = recsys_home()
    db_url = f"sqlite:///{home / 'recsys.db'}"
    return PipelineConfig(
        source_uri=f"{db_url}?table=interactions",
        db_url=db_url,
        artifact_root=str(home / "artifacts"),
    )


def config_from_env(environ: Mapping[str, str] | None = None) -> PipelineConfig:
    env = os.environ if environ is None else environ
    config = default_config()
    overrides = {
        "source_uri": env.get("RECSYS_SOURCE_URI"),
        "db_url": env.get("RECSYS_DB_URL"),
        "artifact_root": env.get("RECSYS_ARTIFACT_ROOT"),
        "source_format": env.get("RECSYS_SOURCE_FORMAT"),
        "source_columns": env.get("RECSYS_SOURCE_COLUMNS"),
        "items_uri": env.get("RECSYS_ITEMS_URI"),
    }
    return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v})


@dataclass(frozen=True)
class Param:
    """One run-level setting an operator may change: where it lives and what is allowed."""

    section: str | None  # None: PipelineConfig itself; else "model", "train" or "validation"
    kind: type
    low: float | None = None
    high: float | None = None
    help: str = ""
    choices: tuple[str, ...] = ()
    # set by the deployment (RECSYS_* variables): the trigger form shows it empty, and empty keeps it
    deployment: bool = False


PARAMS: dict[str, Param] = {
    "top_k": Param(None, int, 1, 1000, "recommendations per user"),
    "epochs": Param("train", int, 0, 1000, "fine-tuning epochs (upper bound; early stopping)"),
    "pretrain_epochs": Param("train", int, 0, 1000, "self-supervised pretraining epochs"),
    "force_pretrain": Param(None, bool, help="rebuild the pretrained encoder even if one exists"),
    "pretrain_objectives": Param(None, str, help="self-supervised objectives of pretraining (attribute needs items_uri)", choices=objective_sets()),
    "source_uri": Param(None, str, help="interaction source for this run only (overrides RECSYS_SOURCE_URI)", deployment=True),
    "source_format": Param(None, str, help="file format; detected from the name when empty", choices=SOURCE_FORMATS, deployment=True),
    "items_uri": Param(None, str, help="item attributes for this run (overrides RECSYS_ITEMS_URI)", deployment=True),
    "window_days": Param(None, int, 0, 36500, "only events of the last N days (0: all)"),
    "max_duplicate_rate": Param("validation", float, 0.0, 1.0, "share of duplicate events tolerated"),
    "freshness_severity": Param("validation", str, help="'warning' (default) or 'error' for a stale log", choices=("warning", "error")),
    "min_user_events": Param(None, int, 0, 1000, "k-core: drop users with fewer events"),
    "min_item_events": Param(None, int, 0, 1000, "k-core: drop items with fewer events"),
    "dedup_keep": Param(None, str, help="which of repeated (user, item) events is kept: the strongest (event_weights, then value), the first or the last", choices=("strongest", "first", "last")),
    "min_value": Param(None, float, -1e12, 1e12, "events with a value (rating) below this are not positives"),
    "exclude_items": Param(None, str, help="comma-separated item ids never recommended"),
    "exclude_attributes": Param(None, str, help="comma-separated catalogue attributes never recommended, e.g. brand=acme"),
    "max_per_attribute": Param(None, str, help="at most N items per value of a catalogue attribute in one list, e.g. brand=2"),
    "catalogue_max_missing": Param(None, float, 0.0, 1.0, "share of event items missing from the catalogue tolerated"),
    "similar_k": Param(None, int, 1, 100, "similar items published per item"),
    "trending_days": Param(None, int, 1, 3650, "window of the trending fallback list, in days"),
    "split": Param(None, str, help="leave_one_out, or time (evaluate only recently active users)", choices=SPLITS),
    "ts_floor": Param("validation", str, help="timestamps before this date are refused"),
    "min_rows": Param("validation", int, 0, 10**10, "fewest interactions accepted"),
    "min_users": Param("validation", int, 0, 10**9, "fewest distinct users accepted"),
    "min_items": Param("validation", int, 0, 10**9, "fewest distinct items accepted"),
    "max_volume_drop": Param("validation", float, 0.0, 1.0, "largest relative drop in rows vs the previous good run"),
    "max_volume_spike": Param("validation", float, 1.0, 1000.0, "largest growth factor in rows vs the previous good run"),
    "max_popularity_drift": Param("validation", float, 0.0, 1.0, "largest Jensen-Shannon distance of item shares"),
    "max_staleness_days": Param("validation", float, 0.0, 36500.0, "newest event must be younger than this"),
    "min_history": Param(None, int, 0, 1000, "users with fewer events get the popularity fallback"),
    "num_shards": Param(None, int, 1, 256, "generation shards (parallel tasks)"),
    "batch_size": Param("train", int, 1, 65536, "training batch size"),
    "lr": Param("train", float, 1e-6, 1.0, "learning rate"),
    "seed": Param("train", int, 0, 2**31 - 1, "random seed for training"),
    "warm_start": Param("train", str, help="what fine-tuning takes from the encoder", choices=WARM_START),
    "auxiliary": Param("train", str, help="self-supervised objectives kept on while fine-tuning (none: off)", choices=("none", *objective_sets())),
    "auxiliary_weight": Param("train", float, 0.0, 100.0, "weight of the auxiliary objectives' loss"),
    "processes": Param("train", int, 0, 64, "training processes (DDP); 0 = one per GPU when there are several"),
    "sampled_softmax_above": Param("train", int, 0, 10**9, "catalogue size above which fine-tuning samples negatives"),
    "warm_start_from": Param(None, str, help="fine-tuning starts from the pretrained encoder or the production model", choices=("encoder", "production")),
    "holdout_fraction": Param(None, float, 0.0, 0.5, "share of users shown the control list (0: no holdout)"),
    "holdout_control": Param(None, str, help="the holdout's list: popularity, or production (the model being replaced)", choices=("popularity", "production")),
    "event_weights": Param(None, str, help="worth of each event type as a training target, in de-duplication and in weighted hits, e.g. purchase=3,add_to_cart=2 (others 1)"),
    "gate_min_lift": Param(None, float, -1.0, 10.0, "relative margin over the strongest baseline (popularity, EASE or item-kNN)"),
    "gate_max_regression": Param(None, float, 0.0, 1.0, "largest tolerated drop against production"),
    "gate_max_churn": Param(None, float, 0.0, 1.0, "largest share of published top-K items a candidate may replace"),
}


def _coerce(name: str, spec: Param, raw: Any) -> Any:
    if spec.kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in {"true", "1", "yes", "y"}:
            return True
        if text in {"false", "0", "no", "n"}:
            return False
        raise ConfigError(f"param {name!r} must be true or false, got {raw!r}")
    if spec.kind is str:
        value = str(raw).strip()
        if not value:
            raise ConfigError(f"param {name!r} must not be empty")
        if name in ("pretrain_objectives", "auxiliary") and value != "none":
            value = canonical_objectives(value)
        if spec.choices and value not in spec.choices:
            raise ConfigError(f"param {name!r} must be one of {', '.join(spec.choices)}, got {value!r}")
        return value
    try:
        value = spec.kind(raw)
        if spec.kind is int and isinstance(raw, float) and raw != int(raw):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"param {name!r} must be {spec.kind.__name__}, got {raw!r}") from None
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise ConfigError(f"param {name!r}={value} is outside [{spec.low}, {spec.high}]")
    return value


def typed_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params as their declared types (`"20"` -> 20, `"true"` -> True), empty ones dropped;
    unknown names and bad values raise ConfigError naming the param."""
    typed: dict[str, Any] = {}
    for name, raw in params.items():
        if raw is None or raw == "":
            continue  # an empty field in the trigger form means "use the default"
        spec = PARAMS.get(name)
        if spec is None:
            raise ConfigError(f"unknown param {name!r}; known params: {', '.join(sorted(PARAMS))}")
        typed[name] = _coerce(name, spec, raw)
    return typed


def with_params(config: PipelineConfig, params: Mapping[str, Any]) -> PipelineConfig:
    """Apply run-level params; unknown names and bad values raise ConfigError."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {"model": {}, "train": {}, "validation": {}}
    for name, value in typed_params(params).items():
        spec = PARAMS[name]
        (sections[spec.section] if spec.section else top)[name] = value
    resolved = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, **sections["model"]),
        train=dataclasses.replace(config.train, **sections["train"]),
        validation=dataclasses.replace(config.validation, **sections["validation"]),
        **top,
    )
    check_consistency(resolved)
    return resolved


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


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def sql_identifier(name: str) -> str:
    """Table and view names are spliced into DDL, so only plain identifiers are allowed."""
    if not _IDENTIFIER.match(name):
        raise ConfigError(f"{name!r} is not a valid SQL table or view name")
    return name
