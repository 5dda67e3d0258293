"""Training objectives, kept apart from the encoder (`objective_builder` builds them by name).

An objective turns a batch of left-padded training sequences into model inputs and targets
(it returns them; nothing is stashed on a module) and computes a loss. Each trains on every
position of each sequence in one pass, not one sample per prefix.

Weighting: every target position weighs the same, whatever batch it lands in. Training batches
hold rows of one length (`training.length_buckets`), so a batch of 256 rows held 256 positions
of two-item histories or 12,000 of fifty-item ones, and a mean per batch weighed users, not
positions. With `PositionWeights` (which training always passes) a token loss is its sum over
the batch's positions divided by one constant of the epoch, the positions of an average batch;
per-sequence losses (contrastive) are summed over rows and divided by the rows of an average
batch. Each objective's `unit` says which, so training can fill batches with equal amounts of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from recsys_tasks.learning.model import PAD, SequenceEncoder
from recsys_tasks.learning.softmax import catalogue_cross_entropy


@dataclass(frozen=True)
class Batch:
    inputs: torch.Tensor  # (B, T) tokens fed to the encoder
    targets: torch.Tensor  # (B, T) token to predict at each position; PAD = no target

    def to(self, device: torch.device) -> Batch:
        return Batch(inputs=self.inputs.to(device), targets=self.targets.to(device))


@dataclass(frozen=True)
class PositionWeights:
    """What an epoch looks like, so a batch's loss can weigh each position like any other."""

    batch_size: int  # rows of an average batch
    mean_length: float  # real items per training row (the T + 1 window), over the epoch's rows
    # (b, T + 1) this batch's event weights, aligned with its sequences (`event_weights`): a
    # next-item target's cross-entropy is multiplied by its event's weight; None: all weigh 1
    events: torch.Tensor | None = None


def target_scale(weights: PositionWeights | None, batch: Batch) -> torch.Tensor | None:
    """(N,) the event weight of each of the batch's N next-item targets (in `target_states`
    order), or None when events are not weighted. Targets are the window's items from the second on."""
    if weights is None or weights.events is None:
        return None
    return weights.events[:, 1:].to(batch.targets.device)[batch.targets != PAD]


def position_mean(
    total: torch.Tensor, positions: int, weights: PositionWeights | None, targets_per_row: Callable[[float], float],
) -> torch.Tensor:
    """A loss summed over a batch's `positions` -> a per-position mean. With `weights`: divided by
    the target positions an average batch holds (batch size x `targets_per_row` of the mean row),
    one constant for the epoch, so each position weighs the same in every batch. Without: divided
    by this batch's own positions."""
    if weights is None:
        return total / max(positions, 1)
    return total / (weights.batch_size * max(targets_per_row(weights.mean_length), 1e-6))


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class Objective(Protocol):
    name: str
    unit: str  # what its loss is a mean over: "position" (a target token) or "sequence" (a row)

    def loss(
        self, model: SequenceEncoder, sequences: torch.Tensor, generator: torch.Generator,
        weights: PositionWeights | None = None,
    ) -> torch.Tensor:
        """sequences (B, T + 1), left-padded -> scalar loss (a per-position mean, see `position_mean`)."""
        ...


def target_states(model: SequenceEncoder, batch: Batch, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states (N, D) and targets (N,) of the N positions that have a target."""
    hidden = model(batch.inputs, causal=causal)  # (B, T, D)
    has_target = batch.targets != PAD
    return hidden[has_target], batch.targets[has_target]


def full_softmax_loss(
    model: SequenceEncoder, batch: Batch, causal: bool,
    weights: PositionWeights | None, targets_per_row: Callable[[float], float], scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy over the whole catalogue at every position that has a target; with
    `scale` (N,), each position's cross-entropy times its weight."""
    hidden, targets = target_states(model, batch, causal)
    # items are tokens 1..n_items: padding is no class at all rather than a -inf column
    total = catalogue_cross_entropy(hidden, model.item_weights(), targets - 1, scale)
    return position_mean(total, len(targets), weights, targets_per_row)


def future_targets(targets: torch.Tensor, steps: int) -> torch.Tensor:
    """targets (B, T) -> (B, T, steps + 1): at [b, t, k] the target k positions after t (PAD past the end)."""
    shifted = [F.pad(targets[:, k:], (0, k), value=PAD) for k in range(steps + 1)]
    return torch.stack(shifted, dim=-1)


def soft_future_loss(
    model: SequenceEncoder, batch: Batch, causal: bool, decay: float, steps: int,
    weights: PositionWeights | None, targets_per_row: Callable[[float], float],
) -> torch.Tensor:
    """Full-softmax cross-entropy against soft labels (FENRec): at each position with a target,
    -sum_k w_k log p(item k after the target), k = 0..steps, w_k = decay^k over the items that
    exist, normalised to sum to 1. Positions count as in `full_softmax_loss`."""
    hidden, _ = target_states(model, batch, causal)
    has_target = batch.targets != PAD
    future = future_targets(batch.targets, steps)[has_target]  # (N, K + 1); column 0 is the target
    log_p = F.log_softmax(model.item_logits(hidden).float(), dim=-1)  # (N, n_items + 1)
    present = future != PAD
    w = (decay ** torch.arange(steps + 1, device=future.device, dtype=log_p.dtype)) * present  # (N, K + 1)
    w = w / w.sum(-1, keepdim=True)
    picked = torch.where(present, log_p.gather(1, future), 0.0)  # PAD scores -inf: never multiplied
    per_position = -(w * picked).sum(-1)
    if (scale := target_scale(weights, batch)) is not None:
        per_position = per_position * scale
    return position_mean(per_position.sum(), len(future), weights, targets_per_row)


@dataclass(frozen=True)
class NextItem:
    """SASRec: at position t predict item t + 1, seeing only the past; with `future_decay`, the
    items after it too, as soft labels (`soft_future_loss`)."""

    name: str = "next_item"
    unit: ClassVar[str] = "position"
    causal: bool = True
    future_decay: float = 0.0
    future_items: int = 2

    def make_batch(self, sequences: torch.Tensor, generator: torch.Generator) -> Batch:
        # sequences (B, T + 1): inputs are all but the last item, targets all but the first
        inputs, targets = sequences[:, :-1], sequences[:, 1:].clone()
        targets[inputs == PAD] = PAD
        return Batch(inputs=inputs, targets=targets)

    def targets_per_row(self, mean_length: float) -> float:
        return mean_length - 1  # every real item but the first is a target

    def loss(
        self, model: SequenceEncoder, sequences: torch.Tensor, generator: torch.Generator, weights: PositionWeights | None = None,
    ) -> torch.Tensor:
        batch = self.make_batch(sequences, generator).to(_device(model))
        if self.future_decay > 0:
            return soft_future_loss(
                model, batch, self.causal, self.future_decay, self.future_items, weights, self.targets_per_row
            )
        return full_softmax_loss(model, batch, self.causal, weights, self.targets_per_row, target_scale(weights, batch))


@dataclass(frozen=True)
class SampledNextItem(NextItem):
    """Next-item prediction against a sample of the catalogue, for catalogues too big for a
    full softmax: the batch's own targets (in-batch negatives) plus `negatives` items shared by
    the batch, drawn in proportion to their share of training events (`sampler="popularity"`,
    the default when `log_frequency` is known) or uniformly.

    logQ correction (Yi et al., 2019): each candidate's logit is lowered by the log of the
    number of times it is expected among the candidates, so items drawn often (popular ones,
    in the batch and by the sampler) are not pushed down for being drawn, and the ranking
    stays that of a full softmax.
    """

    log_frequency: torch.Tensor | None = None  # (n_items + 1,) log share of training events per token
    negatives: int = 1024
    sampler: str = "popularity"  # or "uniform"
    name: str = "next_item_sampled"

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`negatives` tokens in 1..n, and each token's share of training events (None: uniform)."""
        share = None if self.log_frequency is None else self.log_frequency.exp()
        if self.sampler == "popularity" and share is not None:
            drawn = torch.multinomial(share[1:], self.negatives, replacement=True, generator=generator) + 1
        else:
            drawn = torch.randint(1, n + 1, (self.negatives,), generator=generator)
        return drawn, share

    def loss(
        self, model: SequenceEncoder, sequences: torch.Tensor, generator: torch.Generator, weights: PositionWeights | None = None,
    ) -> torch.Tensor:
        batch = self.make_batch(sequences, generator).to(_device(model))
        hidden, targets = target_states(model, batch, self.causal)
        n = model.n_items
        in_batch = torch.unique(targets)  # sorted
        sampled, share = self.draw(n, generator)
        sampled = sampled.to(targets.device)
        candidates = torch.cat([in_batch, sampled])
        logits = hidden @ model.item_embedding.weight[candidates].T  # (N, C)
        events = torch.full((len(candidates),), 1.0 / n, device=logits.device) if share is None else (
            share.to(logits.device)[candidates])
        by_sampler = events if self.sampler == "popularity" and share is not None else 1.0 / n
        # expected times each candidate is among the candidates: as some row's target, and by the sampler
        expected = 1.0 - (1.0 - events) ** len(targets) + self.negatives * by_sampler
        logits = logits - torch.log(expected.clamp(min=1e-12)).to(logits.dtype)
        accidental = sampled[None, :] == targets[:, None]  # a draw of the row's own target
        logits[:, len(in_batch) :] = logits[:, len(in_batch) :].masked_fill(accidental, float("-inf"))
        per_position = F.cross_entropy(logits, torch.searchsorted(in_batch, targets), reduction="none")
        if (scale := target_scale(weights, batch)) is not None:
            per_position = per_position * scale
        return position_mean(per_position.sum(), len(targets), weights, self.targets_per_row)


@dataclass(frozen=True)
class MaskedItem:
    """Cloze (BERT4Rec): hide a share of items, predict them from both sides."""

    mask_token: int
    mask_prob: float = 0.2
    name: str = "masked_item"
    unit: ClassVar[str] = "position"
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

    def targets_per_row(self, mean_length: float) -> float:
        # training cuts a batch of one length to that length, so the window drops the row's oldest
        # item: the last real item is always hidden, the other length - 2 each with mask_prob
        # (linear in the length, so exact for the mean row; only a scale where lengths mix)
        return 1 + self.mask_prob * (mean_length - 2)

    def loss(
        self, model: SequenceEncoder, sequences: torch.Tensor, generator: torch.Generator, weights: PositionWeights | None = None,
    ) -> torch.Tensor:
        batch = self.make_batch(sequences, generator).to(_device(model))
        return full_softmax_loss(model, batch, self.causal, weights, self.targets_per_row)


@dataclass(frozen=True)
class Contrastive:
    """CL4SRec-style InfoNCE: two augmented views of a sequence agree, other sequences in the
    batch are the negatives. Augmentations: crop, mask and reorder a random share of items."""

    mask_token: int
    crop_ratio: float = 0.6
    mask_ratio: float = 0.3
    reorder_ratio: float = 0.3
    temperature: float = 0.2
    name: str = "contrastive"
    unit: ClassVar[str] = "sequence"

    def augment(self, row: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One view of one sequence (its real items only, oldest first)."""
        n = len(row)
        choice = int(torch.randint(3, (1,), generator=generator))
        if choice == 0 and n > 1:  # crop
            keep = max(1, int(n * self.crop_ratio))
            start = int(torch.randint(n - keep + 1, (1,), generator=generator))
            return row[start : start + keep]
        if choice == 1:  # mask
            hide = torch.rand(n, generator=generator) < self.mask_ratio
            return torch.where(hide, torch.full_like(row, self.mask_token), row)
        span = max(1, int(n * self.reorder_ratio))  # reorder
        start = int(torch.randint(n - span + 1, (1,), generator=generator))
        out = row.clone()
        out[start : start + span] = row[start : start + span][torch.randperm(span, generator=generator)]
        return out

    def make_views(self, sequences: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T + 1) -> two (B, T) left-padded views."""
        length = sequences.shape[1] - 1
        views = []
        for _ in range(2):
            view = torch.zeros(sequences.shape[0], length, dtype=sequences.dtype)
            for b, row in enumerate(sequences):
                augmented = self.augment(row[row != PAD][-length:], generator)
                view[b, length - len(augmented) :] = augmented
            views.append(view)
        return views[0], views[1]

    def loss(
        self, model: SequenceEncoder, sequences: torch.Tensor, generator: torch.Generator, weights: PositionWeights | None = None,
    ) -> torch.Tensor:
        first, second = (v.to(_device(model)) for v in self.make_views(sequences, generator))
        z1 = F.normalize(model(first, causal=True)[:, -1], dim=-1)  # (B, D)
        z2 = F.normalize(model(second, causal=True)[:, -1], dim=-1)
        logits = z1 @ z2.T / self.temperature  # (B, B): the diagonal pairs are the positives
        labels = torch.arange(len(z1), device=logits.device)
        total = (F.cross_entropy(logits, labels, reduction="sum") + F.cross_entropy(logits.T, labels, reduction="sum")) / 2
        # one term per sequence: a short last batch does not make its rows weigh more
        return total / (weights.batch_size if weights is not None else len(z1))


class AttributePrediction(nn.Module):
    """S3-Rec-style attribute objectives, multi-label over the item's attributes:
    from a masked position, predict the hidden item's attributes (MAP), and from an item's own
    embedding, predict its attributes (AAP; through a bilinear map, as in S3-Rec). The second
    one reaches the item embeddings directly, which score items in every objective, so items
    sharing brand or category move together even when few users saw them.

    Each position's loss is summed over attributes (a mean over ~1,000 mostly-absent attributes
    would leave the objective almost no weight beside the others); attribute embeddings, biases
    and the bilinear map are this objective's own parameters."""

    name = "attribute"
    unit = "position"  # the masked positions; the per-item part rides along

    def __init__(self, item_attributes: torch.Tensor, mask_token: int, mask_prob: float, d_model: int):
        super().__init__()
        self.register_buffer("item_attributes", item_attributes.float())  # (n_items + 2, n_attributes) multi-hot
        self.masking = MaskedItem(mask_token=mask_token, mask_prob=mask_prob)
        n_attributes = item_attributes.shape[1]
        self.attribute_embedding = nn.Embedding(n_attributes, d_model)
        nn.init.normal_(self.attribute_embedding.weight, std=0.02)
        share = self.item_attributes[1:-1].mean(0).clamp(1e-4, 1 - 1e-4)  # start from each attribute's base rate
        self.attribute_bias = nn.Parameter(torch.log(share / (1 - share)))
        self.associate = nn.Linear(d_model, d_model, bias=False)

    def attribute_logits(self, states: torch.Tensor) -> torch.Tensor:
        """(N, D) states -> (N, n_attributes) logits."""
        return states @ self.attribute_embedding.weight.T + self.attribute_bias

    def _bce_sum(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """states (N, D), tokens (N,) -> the BCE summed over the N rows and every attribute."""
        targets = self.item_attributes[tokens]
        return F.binary_cross_entropy_with_logits(self.attribute_logits(states), targets, reduction="sum")

    def loss(
        self, model: SequenceEncoder, sequences: torch.Tensor, generator: torch.Generator, weights: PositionWeights | None = None,
    ) -> torch.Tensor:
        batch = self.masking.make_batch(sequences, generator).to(_device(model))
        hidden = model(batch.inputs, causal=False)  # (B, T, D)
        has_target = batch.targets != PAD
        total = self._bce_sum(hidden[has_target], batch.targets[has_target])
        masked = position_mean(total, int(has_target.sum()), weights, self.masking.targets_per_row)
        items = torch.unique(sequences[sequences != PAD]).to(batch.inputs.device)  # every item of the batch
        associated = self._bce_sum(self.associate(model.item_embedding(items)), items) / max(len(items), 1)  # per item
        return masked + associated


def attribute_matrix(rows: pd.DataFrame, item_ids: list[str], n_tokens: int) -> torch.Tensor:
    """Multi-hot (n_tokens, n_attributes) from `item_id, attribute` rows; token = index + 1."""
    token = {item: i for i, item in enumerate(item_ids, start=1)}
    rows = rows[rows["item_id"].isin(token.keys())]
    attributes = {a: j for j, a in enumerate(sorted(rows["attribute"].unique()))}
    matrix = torch.zeros(n_tokens, max(len(attributes), 1), dtype=torch.bool)
    matrix[rows["item_id"].map(token).to_numpy(), rows["attribute"].map(attributes).to_numpy()] = True
    return matrix
