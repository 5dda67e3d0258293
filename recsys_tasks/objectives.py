"""Training objectives, kept apart from the encoder and registered by name.

An objective turns a batch of left-padded training sequences into model inputs and targets
(it returns them; nothing is stashed on a module) and computes a loss. Each trains on every
position of each sequence in one pass, not one sample per prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from recsys_tasks.model import PAD, SequenceEncoder


@dataclass(frozen=True)
class Batch:
    inputs: torch.Tensor  # (B, T) tokens fed to the encoder
    targets: torch.Tensor  # (B, T) token to predict at each position; PAD = no target


class Objective(Protocol):
    name: str
    causal: bool

    def make_batch(self, sequences: torch.Tensor, generator: torch.Generator) -> Batch: ...


def full_softmax_loss(model: SequenceEncoder, batch: Batch, causal: bool) -> torch.Tensor:
    """Cross-entropy over the whole catalogue at every position that has a target."""
    hidden = model(batch.inputs, causal=causal)  # (B, T, D)
    has_target = batch.targets != PAD
    logits = model.item_logits(hidden[has_target])  # (N, n_items + 1), N = positions with a target
    return F.cross_entropy(logits, batch.targets[has_target])


@dataclass(frozen=True)
class NextItem:
    """SASRec: at position t predict item t + 1, seeing only the past."""

    name: str = "next_item"
    causal: bool = True

    def make_batch(self, sequences: torch.Tensor, generator: torch.Generator) -> Batch:
        # sequences (B, T + 1): inputs are all but the last item, targets all but the first
        inputs, targets = sequences[:, :-1], sequences[:, 1:].clone()
        targets[inputs == PAD] = PAD
        return Batch(inputs=inputs, targets=targets)


@dataclass(frozen=True)
class MaskedItem:
    """Cloze (BERT4Rec): hide a share of items, predict them from both sides."""

    mask_token: int
    mask_prob: float = 0.2
    name: str = "masked_item"
    causal: bool = False

    def make_batch(self, sequences: torch.Tensor, generator: torch.Generator) -> Batch:
        tokens = sequences[:, 1:]  # (B, T): same window length as NextItem's inputs
        real = tokens != PAD
        hide = (torch.rand(tokens.shape, generator=generator) < self.mask_prob) & real
        # the last item is always hidden too: it matches how the encoder is later used
        last = torch.zeros_like(hide)
        last[:, -1] = real[:, -1]
        hide = hide | last
        inputs = torch.where(hide, torch.full_like(tokens, self.mask_token), tokens)
        targets = torch.where(hide, tokens, torch.zeros_like(tokens))
        return Batch(inputs=inputs, targets=targets)


def make_objective(name: str, model: SequenceEncoder, mask_prob: float) -> Objective:
    if name == "next_item":
        return NextItem()
    if name == "masked_item":
        return MaskedItem(mask_token=model.mask_token, mask_prob=mask_prob)
    raise ValueError(f"unknown objective {name!r}; known: next_item, masked_item")


OBJECTIVE_NAMES = ("next_item", "masked_item")
