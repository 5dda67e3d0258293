"""Every setting, declared once: a typed, frozen field with its default and why it has it.

A field made with `setting(...)` is also a run-level param: its range, choices and help live
beside it, and the trigger form's schema, `recsys run --param`, `recsys validate --param` and
`recsys bench --set` all derive from the field (`params.py`). Plain fields are fixed per
deployment. The resolved config is saved beside every model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any

from recsys_tasks.metrics import SELECTION_METRIC

WARM_START = ("all", "embeddings")  # the whole encoder, or its item and position embeddings only
SELF_SUPERVISED = ("contrastive", "attribute", "masked_item")  # objectives that need no labels
SPLITS = ("leave_one_out", "time")
DEDUP_KEEP = ("strongest", "first", "last")
REPEATS = ("exclude", "allow")
WARM_START_FROM = ("encoder", "production")
HOLDOUT_CONTROLS = ("popularity", "production")
FRESHNESS_SEVERITIES = ("warning", "error")
SOURCE_FORMATS = ("csv", "parquet", "movielens-100k", "movielens-1m", "movielens-csv", "sequence")
DEFAULT_EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "rating", "interaction")


def objective_sets(names: tuple[str, ...] = SELF_SUPERVISED) -> tuple[str, ...]:
    """Every non-empty "+"-joined combination of `names`, in their order: the allowed values
    of `pretrain_objectives` and `auxiliary` (an enum the trigger form can show)."""
    combos = [[]]
    for name in names:
        combos += [c + [name] for c in combos]
    return tuple("+".join(c) for c in sorted(combos[1:], key=len))


def canonical_objectives(value: str) -> str:
    """`attribute+contrastive` and `contrastive, attribute` both mean `contrastive+attribute`."""
    if value in ("none", "auto"):
        return value
    parts = {p.strip() for p in value.replace(",", "+").split("+") if p.strip()}
    ordered = "+".join(n for n in SELF_SUPERVISED if n in parts)
    return ordered + "".join(f"+{p}" for p in sorted(parts - set(SELF_SUPERVISED)))


@dataclass(frozen=True)
class ParamSpec:
    """What an operator may set a run-level setting to."""

    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    # set by the deployment (RECSYS_* variables): the trigger form shows it empty, and empty keeps it
    deployment: bool = False
    normalise: Callable[[str], str] | None = None  # applied to text before the choices are checked


def setting(default: Any = MISSING, help: str = "", *, low: float | None = None, high: float | None = None,
            choices: tuple[str, ...] = (), deployment: bool = False,
            normalise: Callable[[str], str] | None = None) -> Any:
    """A field that is also a run-level param."""
    return field(default=default, metadata={"param": ParamSpec(help, low, high, choices, deployment, normalise)})


@dataclass(frozen=True)
class ModelConfig:
    d_model: int = 64  # SASRec's width on Amazon-size catalogues; wider overfits short sequences
    n_layers: int = 2  # two blocks capture item-to-item transitions; more adds little at ~10 items/user
    n_heads: int = 2
    max_len: int = 50  # most recent items kept per user; covers >95% of histories here
    dropout: float = 0.5  # short sequences overfit quickly: the plain SASRec reference's 0.5 (recsys bench's recipe)
    # BSARec's frequency branch beside attention: its share alpha in each block (0: off; BSARec
    # 0.7), and how many of the lowest frequencies over max_len its low-pass keeps (BSARec's c = 5
    # keeps c // 2 + 1 = 3). On by default: at 20 epochs it raised validation NDCG@10 on Beauty
    # (seeds 42, 43) and Sports (results/ablation_13.json)
    frequency_mix: float = 0.7
    frequencies: int = 3
    attention_sink: bool = False  # a learned key/value every position may attend to ("attend to nothing")


@dataclass(frozen=True)
class TrainConfig:
    # self-supervised passes when the shared encoder is (re)built
    pretrain_epochs: int = setting(5, "self-supervised pretraining epochs", low=0, high=1000)
    # fine-tuning upper bound; early stopping or the train_minutes budget ends it sooner (the
    # benchmark's recipe: on Beauty its best epochs fell at 29-53)
    epochs: int = setting(200, "fine-tuning epochs (upper bound; early stopping and train_minutes end it sooner)",
                          low=0, high=1000)
    patience: int = 10  # epochs without a better validation score before stopping
    # a wall-clock budget per training stage, in minutes (0: none): training stops after the
    # epoch that spends it, keeping the best epoch so far; epochs and patience still apply. 30: a
    # Beauty-size catalogue converges inside it on 2 cores (8-13 minutes of fine-tuning a seed)
    train_minutes: float = setting(30.0, "training budget per stage in minutes (0: none); the best epoch so far is kept",
                                   low=0.0, high=10000.0)
    batch_size: int = setting(256, "training batch size", low=1, high=65536)
    lr: float = setting(1e-3, "learning rate", low=1e-6, high=1.0)  # the plain SASRec reference's (recsys bench's recipe)
    weight_decay: float = 0.0
    mask_prob: float = 0.2  # Cloze masking rate used by BERT4Rec
    seed: int = setting(42, "random seed for training", low=0, high=2**31 - 1)
    device: str = "auto"  # "auto" takes CUDA when present, else CPU
    # above this many items fine-tuning uses a sampled softmax (in-batch negatives plus
    # `negatives` shared by the batch, drawn by `negative_sampler`, logQ-corrected): a full one
    # costs batch positions x items floats per step
    sampled_softmax_above: int = setting(50_000, "catalogue size above which fine-tuning samples negatives",
                                         low=0, high=10**9)
    negatives: int = 1024  # sampled negatives per batch of the sampled softmax
    negative_sampler: str = "popularity"  # in proportion to training events (Yi et al. 2019), or "uniform"
    warm_start: str = setting("all", "what fine-tuning takes from the encoder", choices=WARM_START)
    # self-supervised objectives kept on as a regulariser while fine-tuning ("+"-joined, "none"
    # off), their loss weighted by auxiliary_weight (CL4SRec's setting: contrastive, 0.1)
    # "auto": the attribute objective when the run has item attributes, else none (validation
    # NDCG@10 with it, one seed: Sports +6.9%, Beauty +5.2%; docs/benchmarks.md)
    auxiliary: str = setting("auto", "self-supervised objectives kept on while fine-tuning (auto: attribute when the "
                             "run has item attributes; none: off)",
                             choices=("auto", "none", *objective_sets()), normalise=canonical_objectives)
    auxiliary_weight: float = setting(0.1, "weight of the auxiliary objectives' loss", low=0.0, high=100.0)
    # soft future labels (FENRec): position t learns the next item with weight 1 and the k-th item
    # after it with future_decay^k, k <= future_items, normalised to sum to 1 (0: the next item only)
    future_decay: float = 0.0
    future_items: int = 2
    # validation, the kept model and what is shipped use an exponential moving average of the
    # weights, updated every step with this decay (0: the weights as trained)
    ema_decay: float = 0.0
    # training processes (DDP through torch's distributed launcher); 0: one per visible GPU
    # when there are several, else one. More than one on CPU uses the gloo backend.
    processes: int = setting(0, "training processes (DDP); 0 = one per GPU when there are several", low=0, high=64)


@dataclass(frozen=True)
class ValidationRules:
    # share of rows repeating an earlier (user, item, ts, event)
    max_duplicate_rate: float = setting(0.01, "share of duplicate events tolerated", low=0.0, high=1.0)
    min_rows: int = setting(1, "fewest interactions accepted", low=0, high=10**10)
    max_rows: int | None = None
    # a one-user log cannot train or evaluate anything
    min_users: int = setting(2, "fewest distinct users accepted", low=0, high=10**9)
    min_items: int = setting(2, "fewest distinct items accepted", low=0, high=10**9)
    event_types: tuple[str, ...] = DEFAULT_EVENT_TYPES
    # the range an event's value (a rating) must lie in, or the log fails validation (None: no bound);
    # not to be confused with `min_value`, below which events are kept but are not positives
    min_valid_value: float | None = None
    max_valid_value: float | None = None
    # older timestamps are almost always unit or parsing mistakes
    ts_floor: str = setting("1990-01-01", "timestamps before this date are refused")
    # fail when rows fall below (1 - this) x the previous run's
    max_volume_drop: float = setting(0.5, "largest relative drop in rows vs the previous good run", low=0.0, high=1.0)
    # fail when rows exceed this x the previous run's
    max_volume_spike: float = setting(3.0, "largest growth factor in rows vs the previous good run", low=1.0, high=1000.0)
    # Jensen-Shannon distance of item shares vs the previous run
    max_popularity_drift: float = setting(0.5, "largest Jensen-Shannon distance of item shares", low=0.0, high=1.0)
    # newest event older than this: stale
    max_staleness_days: float = setting(2.0, "newest event must be younger than this", low=0.0, high=36500.0)
    # "error" stops stale runs; a warning keeps the history valid
    freshness_severity: str = setting("warning", "'warning' (default) or 'error' for a stale log",
                                      choices=FRESHNESS_SEVERITIES)


@dataclass(frozen=True)
class PipelineConfig:
    source_uri: str = setting(help="interaction source for this run only (overrides RECSYS_SOURCE_URI)", deployment=True)
    db_url: str = field()
    artifact_root: str = field()
    # None: detect from the file name (see data/formats.py)
    source_format: str | None = setting(None, "file format; detected from the name when empty",
                                        choices=SOURCE_FORMATS, deployment=True)
    source_columns: str = ""  # column mapping "user_id=uid,ts=created_at"; empty: canonical names
    window_days: int = setting(0, "only events of the last N days (0: all)", low=0, high=36500)
    # which of a user's repeated events of one item is kept: "strongest" (the highest event_weights
    # weight, then value; a purchase after a view of the item is kept), "first" or "last"
    dedup_keep: str = setting("strongest", "which of repeated (user, item) events is kept: the strongest "
                              "(event_weights, then value), the first or the last", choices=DEDUP_KEEP)
    # k-core bounds; 0 keeps everyone (every user still gets recommendations)
    # "exclude": a user's repeated events of an item are one event (dedup_keep) and seen items are
    # never recommended; "allow": repeated consumption stays in the sequences, seen items may be
    # recommended (and are ranked when evaluating), for re-ordering and re-visiting
    repeats: str = setting("exclude", "exclude (seen items never come again) or allow (repeat consumption is learned and "
                           "recommended)", choices=REPEATS)
    min_user_events: int = setting(0, "k-core: drop users with fewer events", low=0, high=1000)
    min_item_events: int = setting(0, "k-core: drop items with fewer events", low=0, high=1000)
    # optional item attributes (JSON item -> [attr], or CSV/Parquet item_id, attribute)
    items_uri: str | None = setting(None, "item attributes for this run (overrides RECSYS_ITEMS_URI)", deployment=True)
    results_table: str = "recommendations"
    current_view: str = "recommendations_current"
    runs_table: str = "recsys_runs"
    reader_role: str = "recsys_reader"  # PostgreSQL role that may only read the view and the run table
    top_k: int = setting(10, "recommendations per user", low=1, high=1000)
    # users with fewer events get popular items (strategy 'popularity'), not the model
    min_history: int = setting(2, "users with fewer events get the popularity fallback", low=0, high=1000)
    # generation tasks per run; bounded so the scheduler sees a handful, not one per user
    # whose lists a night makes: everyone's, or, once lists are published, only those that can
    # have changed (new events, new users, a listed item gone); the rest keep the published
    # run's lists, carried into tonight's run in the same atomic publish (pipeline/lists.py).
    # "all" by default: a new model or a new item reaches every list the night it arrives
    lists: str = setting("all", "whose lists a night makes: all, or changed (users with new events, new users, lists "
                         "holding an item now gone; the rest are carried over)", choices=("all", "changed"))
    # a warm lists=changed night trains on the users with new events plus this share of the others
    replay_share: float = 0.2
    num_shards: int = setting(4, "generation shards (parallel tasks)", low=1, high=256)
    retain_runs: int = 5  # published runs kept in the results table, the current one included
    min_sequence_length: int = 3  # users need train + validation + test items to be evaluated
    # "time": evaluate only users active after time_split_quantile
    split: str = setting("leave_one_out", "leave_one_out, or time (evaluate only recently active users)", choices=SPLITS)
    time_split_quantile: float = 0.8
    # the figure that picks the best epoch, heads the benchmark and reports, and that the gate compares
    selection_metric: str = SELECTION_METRIC
    # the candidate must beat the strongest baseline (popularity, EASE, item-kNN) by this relative margin
    gate_min_lift: float = setting(0.0, "relative margin over the strongest baseline (popularity, EASE or item-kNN)",
                                   low=-1.0, high=10.0)
    # the candidate may trail production by at most this share
    gate_max_regression: float = setting(0.02, "largest tolerated drop against production", low=0.0, high=1.0)
    # share of the published top-K a candidate may replace, over a sample of users (1.0: no bound);
    # replacing nearly all of it at once usually means a broken model or item-id mapping, not a better model
    gate_max_churn: float = setting(0.9, "largest share of published top-K items a candidate may replace", low=0.0, high=1.0)
    churn_sample_users: int = 2000
    # the gate and the report rank the catalogue for a fixed, seeded sample of this many users
    # (0: everyone); with a sample, the gate's comparisons carry a 95% interval
    eval_sample_users: int = setting(50_000, "users every scorer is evaluated on: a fixed seeded sample (0: all)",
                                     low=0, high=10**9)
    ease_max_items: int = 5000  # EASE baseline only below this catalogue size (it inverts an n x n matrix)
    force_pretrain: bool = setting(False, "rebuild the pretrained encoder even if one exists")
    # the candidate is judged on each user's two held-out events; with refit, what is shipped then
    # learns from them too: the same training, from the same start, for the epoch count
    # validation chose, over every event. A refitted production model is judged (and warm-started
    # from) by its twin that did not see the held-out events (storage.registry.judged_version).
    # Beauty through the nightly DAG: NDCG@10 0.0655 with it, 0.0510 without (docs/benchmarks.md)
    # the night's budget: each training stage gets its share of what the night has left once the
    # stages after training (evaluation, generation, similar items, publish; their cost measured
    # at this size) are set aside, never more than train_minutes (pipeline/night.py). 60: a
    # Beauty- or Sports-size night is not cut (26-60 minutes on 2 cores); a 1M-user night is
    # (docs/scaling.md)
    night_minutes: float = setting(60.0, "the night's budget in minutes: training gets what the other stages leave, "
                                   "measured at this size (0: only train_minutes)", low=0.0, high=10000.0)
    refit: bool = setting(True, "ship a refit on every event (the held-out ones too) of the judged candidate")
    # blend an item-transition prior (which item followed which, 1-2 hops) into the model's scores,
    # with the weight that scores best on validation (0, the model alone, when it does not help);
    # scoring/transitions.py, measured in docs/benchmarks.md
    transition_prior: bool = setting(True, "blend item-transition shares into the scores (weight chosen on validation)")
    # "+"-joined: contrastive, attribute (needs items_uri), masked_item. Contrastive is the default:
    # it gave fine-tuning the largest head start on Beauty; masked_item (bidirectional) slowed it down
    pretrain_objectives: str = setting("contrastive", "self-supervised objectives of pretraining (attribute needs items_uri)",
                                       choices=objective_sets(), normalise=canonical_objectives)
    # what the nightly fine-tuning starts from: "production" (the production model when there is
    # one of the same shape, else the encoder), or "encoder" (the pretrained encoder). Production:
    # over 3 seeds and 3 nights, yesterday's model reached about twice the encoder's next-night
    # NDCG@10 on Beauty (0.0367 vs 0.0169) and Sports (0.0133 vs 0.0071) at equal budgets
    # (benchmarks/bench_nightly.py, results/nightly_beauty.json, results/nightly_sports.json)
    warm_start_from: str = setting("production", "fine-tuning starts from the pretrained encoder or the production model",
                                   choices=WARM_START_FROM)
    # share of users (a stable hash of the user id) shown a control list instead of the model's,
    # flagged `variant = 'control'` in the published rows, so outcome tracking can measure uplift
    holdout_fraction: float = setting(0.0, "share of users shown the control list (0: no holdout)", low=0.0, high=0.5)
    # the control list: "popularity", or "production" (the model being replaced)
    holdout_control: str = setting("popularity", "the holdout's list: popularity, or production (the model being replaced)",
                                   choices=HOLDOUT_CONTROLS)
    # what each event type is worth ("type=weight", others 1): as a fine-tuning target (its
    # cross-entropy times the weight), in de-duplication (dedup_keep=strongest) and in outcome
    # tracking's weighted hits
    event_weights: str = setting("purchase=3,add_to_cart=2", "worth of each event type as a training target, in "
                                 "de-duplication and in weighted hits, e.g. purchase=3,add_to_cart=2 (others 1)")
    outcomes_table: str = "recsys_outcomes"
    # the catalogue (items_uri): share of event items missing from it tolerated (a warning up to
    # this, an error above); items marked available = false are never recommended
    catalogue_max_missing: float = setting(0.05, "share of event items missing from the catalogue tolerated",
                                           low=0.0, high=1.0)
    # business rules: items never recommended, and diversity (at most N items of one value of an
    # attribute per list, e.g. "brand=2"); "" for none
    exclude_items: str = setting("", "comma-separated item ids never recommended")
    exclude_attributes: str = setting("", "comma-separated catalogue attributes never recommended, e.g. brand=acme")
    max_per_attribute: str = setting("", "at most N items per value of a catalogue attribute in one list, e.g. brand=2")
    # ratings below this are not positives (dropped before training); None keeps every event.
    # Validation's range check is another setting (validation.min_valid_value)
    min_value: float | None = setting(None, "events with a value (rating) below this are not positives",
                                      low=-1e12, high=1e12)
    similar_k: int = setting(10, "similar items published per item", low=1, high=100)  # similar_items_current
    # the fallback list (recommendations_fallback): most events in the last N days of the log
    trending_days: int = setting(7, "window of the trending fallback list, in days", low=1, high=3650)
    fallback_view: str = "recommendations_fallback"  # the current run's non-personal list, for users without a row
    similar_view: str = "similar_items_current"  # the current run's similar items per item
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validation: ValidationRules = field(default_factory=ValidationRules)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PipelineConfig:
        """The inverse of `to_dict` (JSON lists become the tuples the dataclasses hold); names
        of earlier versions (`gate_metric`, validation's `min_value`) are read as today's."""

        def build(kind: type, raw: Mapping[str, Any]) -> Any:
            return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})

        renamed = {"gate_metric": "selection_metric"}
        nested = {"model": ModelConfig, "train": TrainConfig, "validation": ValidationRules}
        flat = {renamed.get(k, k): v for k, v in values.items() if k not in nested}
        validation = dict(values.get("validation", {}))
        for old in ("min_value", "max_value"):
            if old in validation:
                validation[f"{old[:3]}_valid_value"] = validation.pop(old)
        sections = {k: build(kind, validation if k == "validation" else values.get(k, {})) for k, kind in nested.items()}
        return build(cls, {**flat, **sections})


SECTIONS = {"model": ModelConfig, "train": TrainConfig, "validation": ValidationRules}
