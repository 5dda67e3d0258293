"""One way to learn: sequences and settings in, a trained encoder and its history out.

The nightly stages (`stages.learn.pretrain`, `stages.learn.finetune`) and the benchmark
(`bench.run_benchmark`) all train through `fit`; around it they only read data and write
results. `fit` touches no artifact store, launches no process and never looks at a test
target: fine-tuning keeps the epoch that scores best on validation NDCG@10.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from recsys_tasks.config import ModelConfig, TrainConfig
from recsys_tasks.data.prepare import Sequences, Split, item_popularity, left_padded_windows
from recsys_tasks.learning.checkpoints import warm_start
from recsys_tasks.learning.model import SequenceEncoder
from recsys_tasks.learning.objective_builder import finetune_objective, make_objective
from recsys_tasks.learning.training import (
    Batching,
    Checkpoints,
    TrainResult,
    length_buckets,
    resolve_device,
    train,
)
from recsys_tasks.metrics import SELECTION_METRIC
from recsys_tasks.scoring.evaluation import full_ranking_metrics, model_scorer

FINETUNE = "next_item"  # the objective names that fine-tune; any self-supervised set pretrains


@dataclass(frozen=True)
class Fitted:
    model: SequenceEncoder  # fine-tuning: the best state on validation; pretraining: the last one
    objective: str  # what was trained, as named in lineage (e.g. "next_item+0.1*attribute")
    result: TrainResult  # epochs run, best epoch and score, per-epoch history, seconds
    item_ids: list[str]  # token - 1 -> source item id, so a later vocabulary can match items
    warm_started_items: int = 0  # items whose embeddings came from the warm-start checkpoint

    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to rebuild and warm-start from the model; plain types only, so
        it loads with torch's weights-only loader."""
        return {**self.model.cpu().checkpoint(), "item_ids": list(self.item_ids), "objective": self.objective}


def fit(
    seqs: Sequences,
    split: Split,
    model_config: ModelConfig,
    train_config: TrainConfig,
    objectives: str = FINETUNE,
    attributes: pd.DataFrame | None = None,
    encoder: dict[str, Any] | None = None,
    checkpoints: Checkpoints | None = None,
    batches: Batching = length_buckets,
    epoch_figures: Callable[[SequenceEncoder], dict[str, float]] | None = None,
    metric: str = SELECTION_METRIC,
    exclude_history: bool = True,
    refit_epochs: int | None = None,
    train_users: np.ndarray | None = None,
) -> Fitted:
    """Train a fresh encoder on every user's items before `split.train_end`.

    `objectives`: `"next_item"` fine-tunes (next-item prediction plus `train_config.auxiliary`,
    at most `train_config.epochs` epochs, early stopping on the validation `metric`, NDCG@10 by default); a "+"-joined
    self-supervised set (`"contrastive+attribute"`) pretrains for `train_config.pretrain_epochs`.
    `attributes`: `item_id, attribute` rows, for the attribute objective.
    `encoder`: a pretrained checkpoint (`Fitted.checkpoint()`) to warm-start from, its items
    matched to these by id. `checkpoints`: where per-epoch state goes, so a retry resumes.
    `epoch_figures`: fine-tuning only, figures to add to each epoch's history (`training.train`).
    `refit_epochs`: fine-tune exactly that many epochs with no validation (the refit on every
    event, `prepare.everything`, once validation has chosen the epoch count). `train_users`: a
    mask of the users whose sequences are trained on (a warm night's changed users and replay
    sample); validation still ranks every evaluated user.
    """
    torch.manual_seed(train_config.seed)  # one seed, one initialisation, wherever fit is called
    model = SequenceEncoder(seqs.n_items, model_config)
    matched = 0
    if encoder is not None:
        matched = warm_start(model, encoder, seqs.item_ids, encoder["item_ids"], train_config.warm_start)
    # (U, max_len + 1): one extra item so next-item inputs and targets both span max_len
    windows = left_padded_windows(seqs.items, seqs.offsets[:-1], split.train_end, model_config.max_len + 1)
    if objectives == FINETUNE:
        device = resolve_device(train_config.device)

        def validation_ndcg(m: SequenceEncoder) -> float:
            scorer = model_scorer(m, seqs, device)
            return full_ranking_metrics(scorer, seqs, split.eval_users, split.train_end, exclude_history=exclude_history)[metric]

        objective = finetune_objective(model, train_config, item_popularity(seqs, split), attributes, seqs.item_ids)
        event_weights = None  # what each target weighs (`event_weights` of its event's type)
        if seqs.weights is not None:
            event_weights = left_padded_windows(seqs.weights, seqs.offsets[:-1], split.train_end, model_config.max_len + 1)
        if train_users is not None:
            windows = windows[train_users]
            event_weights = event_weights[train_users] if event_weights is not None else None
        if refit_epochs is not None:
            result = train(model, objective, windows, train_config, refit_epochs, None, checkpoints, batches, event_weights)
        else:
            result = train(model, objective, windows, train_config, train_config.epochs, validation_ndcg, checkpoints,
                           batches, event_weights, epoch_figures)
    else:
        objective = make_objective(objectives, model, train_config.mask_prob, attributes, seqs.item_ids)
        result = train(model, objective, windows, train_config, train_config.pretrain_epochs, None, checkpoints, batches)
    return Fitted(model, objective.name, result, list(seqs.item_ids), matched)
