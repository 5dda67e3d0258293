"""Objectives by name: what a run trains with, as its config and the trigger form spell it.

`make_objective("contrastive+attribute", ...)` builds the objectives of `objectives.py` and
trains several together; `finetune_objective` is next-item prediction as fine-tuning is
configured. The nightly stages and `recsys bench` both take their objectives from here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from recsys_tasks.config import TrainConfig
from recsys_tasks.learning.model import SequenceEncoder
from recsys_tasks.learning.objectives import (
    AttributePrediction,
    Contrastive,
    MaskedItem,
    NextItem,
    Objective,
    PositionWeights,
    SampledNextItem,
    attribute_matrix,
)


class Combined(nn.Module):
    """Several objectives trained together: the weighted sum of their losses (weights 1 by default)."""

    def __init__(self, parts: list[Objective], weights: list[float] | None = None):
        super().__init__()
        self.parts = parts
        self.weights = weights or [1.0] * len(parts)
        self.modules_ = nn.ModuleList([p for p in parts if isinstance(p, nn.Module)])
        self.name = "+".join(p.name if w == 1.0 else f"{w:g}*{p.name}" for p, w in zip(parts, self.weights, strict=True))
        self.unit = "position" if any(p.unit == "position" for p in parts) else "sequence"

    def loss(
        self, model: SequenceEncoder, sequences: torch.Tensor, generator: torch.Generator, weights: PositionWeights | None = None,
    ) -> torch.Tensor:
        return sum(w * part.loss(model, sequences, generator, weights) for part, w in zip(self.parts, self.weights, strict=True))


OBJECTIVE_NAMES = ("next_item", "next_item_sampled", "masked_item", "contrastive", "attribute")


def make_objective(
    name: str, model: SequenceEncoder, mask_prob: float,
    attributes: pd.DataFrame | None = None, item_ids: list[str] | None = None,
    item_counts: np.ndarray | None = None, sampled_softmax_above: int | None = None, negatives: int = 1024,
    future_decay: float = 0.0, future_items: int = 2, sampler: str = "popularity",
) -> Objective:
    """An objective by name; "a+b" trains several together.

    `next_item` becomes `next_item_sampled` when the catalogue has more than
    `sampled_softmax_above` items; `item_counts` (training events per token) feed its logQ correction.
    """
    if "+" in name:
        return Combined([
            make_objective(n, model, mask_prob, attributes, item_ids, item_counts, sampled_softmax_above, negatives,
                           sampler=sampler)
            for n in name.split("+")
        ])
    if name == "next_item" and sampled_softmax_above is not None and model.n_items > sampled_softmax_above:
        name = "next_item_sampled"
    if name == "next_item":
        return NextItem(future_decay=future_decay, future_items=future_items)
    if name == "next_item_sampled":
        log_frequency = None
        if item_counts is not None:
            counts = torch.as_tensor(item_counts, dtype=torch.float64) + 1.0  # every item can be drawn
            log_frequency = (counts / counts[1:].sum()).log().float()
        return SampledNextItem(log_frequency=log_frequency, negatives=negatives, sampler=sampler)
    if name == "masked_item":
        return MaskedItem(mask_token=model.mask_token, mask_prob=mask_prob)
    if name == "contrastive":
        return Contrastive(mask_token=model.mask_token)
    if name == "attribute":
        if attributes is None or item_ids is None:
            raise ValueError("the attribute objective needs item attributes (set RECSYS_ITEMS_URI or --attributes)")
        matrix = attribute_matrix(attributes, item_ids, model.n_items + 2)
        return AttributePrediction(matrix, model.mask_token, mask_prob, model.config.d_model)
    raise ValueError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVE_NAMES)}")


def finetune_objective(
    model: SequenceEncoder, config: TrainConfig, item_counts: np.ndarray,
    attributes: pd.DataFrame | None = None, item_ids: list[str] | None = None,
) -> Objective:
    """Next-item prediction as fine-tuning is configured: a full softmax, or a sampled one above
    `config.sampled_softmax_above` items; plus `config.auxiliary` (self-supervised objectives
    kept on while fine-tuning, weighted by `config.auxiliary_weight`), as in CL4SRec; "auto"
    is the attribute objective when there are `attributes`.
    The DAG and `recsys bench` both take it from here."""
    main = make_objective(
        "next_item", model, config.mask_prob, item_counts=item_counts,
        sampled_softmax_above=config.sampled_softmax_above, negatives=config.negatives, sampler=config.negative_sampler,
        future_decay=config.future_decay, future_items=config.future_items,
    )
    names = config.auxiliary
    if names == "auto":
        names = "attribute" if attributes is not None and len(attributes) else "none"
    if names in ("", "none"):
        return main
    auxiliary = make_objective(names, model, config.mask_prob, attributes, item_ids)
    return Combined([main, auxiliary], [1.0, config.auxiliary_weight])
