"""What a stage reads back of its run and of the registry: the run's sequences and split, its
item attributes and business rules, checkpoints (weights-only), and registered models as
scorers or item vectors. Stages share these; they never import each other."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch

from recsys_tasks.config import parse_caps
from recsys_tasks.data.catalogue import (
    Catalogue,
    attribute_groups,
    blocked_tokens,
    excluded_items,
    items_with_attributes,
)
from recsys_tasks.data.prepare import Sequences, Split, split_for, token_map
from recsys_tasks.learning.checkpoints import checkpoint_bytes, read_checkpoint
from recsys_tasks.learning.model import SequenceEncoder
from recsys_tasks.pipeline.context import RunContext
from recsys_tasks.scoring.content import content_features, fill_cold_items
from recsys_tasks.scoring.evaluation import Scorer, baseline_scorer, cooccurrence_vectors, model_scorer, remapped_scorer
from recsys_tasks.scoring.transitions import with_prior
from recsys_tasks.storage.layout import ATTRIBUTES, CATALOGUE, baseline_of, model_file

log = logging.getLogger(__name__)


def save_torch(run: RunContext, key: str, payload: dict[str, Any]) -> str:
    return run.store.write_bytes(key, checkpoint_bytes(payload))


def load_torch(run: RunContext, key: str) -> dict[str, Any]:
    """A checkpoint from the store through torch's weights-only loader: a planted or altered
    file (anything but tensors, numbers, strings, lists, dicts) raises ArtifactError unrun."""
    return read_checkpoint(run.store.read_bytes(key), run.store.uri(key))


def load_data(run: RunContext, sequences: str) -> tuple[Sequences, Split]:
    seqs = Sequences.from_bytes(run.store.read_bytes(sequences))
    return seqs, split_for(run.config, seqs)


def load_attributes(run: RunContext, item_attributes: str | None) -> pd.DataFrame | None:
    """The run's `item_id, attribute` rows, or None when the run has none."""
    return run.store.read_frame(item_attributes) if item_attributes else None


def scorer_for(run: RunContext, model_version: str, seqs: Sequences, device: torch.device, cold_start: bool = False,
               history_end: np.ndarray | None = None) -> Scorer:
    """Scores of a registered model on today's sequences; a model trained on another
    vocabulary (yesterday's production) has its items matched to today's by id.
    `cold_start`: catalogue items without events get content-predicted vectors first.
    A baseline's version (`baseline-ease`) scores with that baseline fitted on all events.
    A model that chose a transition prior blends it in, built from each user's events before
    `history_end` (evaluation: before the test item; default: all of them)."""
    if (baseline := baseline_of(model_version)) is not None:
        return baseline_scorer(baseline, seqs, seqs.offsets[1:])
    checkpoint = load_torch(run, model_file(model_version))
    model = SequenceEncoder.from_checkpoint(checkpoint).eval().to(device)
    if checkpoint["item_ids"] == seqs.item_ids:
        if cold_start:
            fill_new_items(run, model, seqs)
        scorer = model_scorer(model, seqs, device)
    else:
        scorer = remapped_scorer(model, checkpoint["item_ids"], seqs, device)
    return with_prior(scorer, seqs, checkpoint.get("transition_prior"), history_end)


def fill_new_items(run: RunContext, model: SequenceEncoder, seqs: Sequences) -> np.ndarray:
    """Give the run's catalogue items that have no events (new items) the vectors their text
    and attributes predict (`content.fill_cold_items`), in place. Returns their tokens."""
    if not run.store.exists(run.path(CATALOGUE)):
        return np.zeros(0, dtype=np.int64)
    items = run.store.read_frame(run.path(CATALOGUE))
    attributes_key = run.path(ATTRIBUTES)
    attributes = run.store.read_frame(attributes_key) if run.store.exists(attributes_key) else items.iloc[:0]
    features = content_features(seqs.item_ids, items, attributes)
    counts = np.bincount(seqs.items, minlength=seqs.n_items + 1)
    rows = seqs.n_items + 1
    with torch.no_grad():
        weight = model.item_embedding.weight[:rows].detach().cpu().numpy().copy()
        cold = fill_cold_items(weight, counts, features)
        model.item_embedding.weight[:rows] = torch.from_numpy(weight).to(model.item_embedding.weight.device)
    if len(cold):
        log.info("%d new items (in the catalogue, no events yet) scored from their content", len(cold))
    return cold


def business_rules(run: RunContext, seqs: Sequences) -> tuple[np.ndarray | None, list[tuple[np.ndarray, int]]]:
    """This run's rules over tokens: which items are never recommended (unavailable in the
    run's catalogue, `exclude_items`, `exclude_attributes`), and the diversity caps
    (`max_per_attribute`) as (group per token, N) pairs."""
    config = run.config
    items_key, attributes_key = run.path(CATALOGUE), run.path(ATTRIBUTES)
    unavailable = Catalogue(run.store.read_frame(items_key), pd.DataFrame()).unavailable if run.store.exists(items_key) else set()
    attributes = (
        run.store.read_frame(attributes_key)
        if run.store.exists(attributes_key)
        else pd.DataFrame(columns=["item_id", "attribute"])
    )
    excluded = excluded_items(config.exclude_items) | items_with_attributes(attributes, excluded_items(config.exclude_attributes))
    blocked = blocked_tokens(seqs.item_ids, unavailable, excluded)
    if blocked is not None:
        log.info("%d items never recommended (unavailable or excluded)", int(blocked[1:].sum()))
    caps = [
        (attribute_groups(seqs.item_ids, attributes, column), cap) for column, cap in parse_caps(config.max_per_attribute).items()
    ]
    for (groups, cap), column in zip(caps, parse_caps(config.max_per_attribute), strict=True):
        log.info("at most %d items per %s in a list (%d items have one)", cap, column, int((groups >= 0).sum()))
    return blocked, caps


def item_vectors(run: RunContext, model_version: str, seqs: Sequences) -> np.ndarray:
    """(n_items, d): the model's vector of each of today's items (row = token - 1): new
    catalogue items get their content-predicted vectors; items a model of another vocabulary
    never saw (production, when regenerating) get zeros, so they have no similar items. A
    baseline has no item vectors: its night uses which users had which items instead."""
    if baseline_of(model_version) is not None:
        return cooccurrence_vectors(seqs)
    checkpoint = load_torch(run, model_file(model_version))
    model = SequenceEncoder.from_checkpoint(checkpoint).eval()
    if checkpoint["item_ids"] == seqs.item_ids:
        fill_new_items(run, model, seqs)
        return model.item_embedding.weight[1 : seqs.n_items + 1].detach().float().numpy()
    weight = model.item_embedding.weight.detach().float().numpy()
    to_model = token_map(seqs.item_ids, checkpoint["item_ids"])[1:]
    return np.where(to_model[:, None] > 0, weight[to_model], 0.0).astype(np.float32)
