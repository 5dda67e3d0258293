"""Checkpoints as bytes, and warm starts from them.

A checkpoint holds only tensors, numbers, strings, lists and dicts, and is read back with
torch's weights-only loader: a planted or altered file is refused (`ArtifactError`), never run.
A warm start copies a pretrained encoder (or yesterday's model) into a fresh one, matching
items by source id, so a grown catalogue keeps what it knew.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np
import torch

from recsys_tasks.config import WARM_START
from recsys_tasks.data.prepare import token_map
from recsys_tasks.errors import ArtifactError
from recsys_tasks.learning.model import SequenceEncoder


def checkpoint_bytes(payload: dict[str, Any]) -> bytes:
    """A checkpoint (tensors, numbers, strings, lists and dicts only) as bytes."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def read_checkpoint(data: bytes, where: str) -> dict[str, Any]:
    """The inverse of `checkpoint_bytes`, through torch's weights-only unpickler: a file holding
    anything else (code to run, objects of other classes) or cut short raises ArtifactError."""
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # a class or callable outside the allowed plain types
        # torch names what it refused ("unsupported GLOBAL posix.system") amid advice to drop weights_only
        refused = next((line for line in str(exc).splitlines() if "GLOBAL" in line or "Unsupported" in line), "")
        raise ArtifactError(
            f"{where} holds objects other than tensors, numbers, strings, lists and dicts, so it was not "
            f"written by this pipeline or was altered; it was refused and nothing in it ran ({refused[:200]}). "
            f"Delete it and retrain, or restore the original."
        ) from exc
    except (RuntimeError, EOFError, KeyError, ValueError) as exc:  # torch's errors for cut or foreign bytes
        raise ArtifactError(f"{where} is not a readable checkpoint (truncated or not a torch file): {exc!s:.300}") from exc
    if not isinstance(payload, dict):
        raise ArtifactError(f"{where} holds a {type(payload).__name__}, not a checkpoint dict")
    return payload


def warm_start(
    model: SequenceEncoder, encoder: dict, item_ids: list[str], encoder_item_ids: list[str], transfer: str = "all",
) -> int:
    """Copy a pretrained encoder into `model`, matching item embeddings by source item id.

    The catalogue may have grown since pretraining: known items keep their pretrained row,
    new items keep their fresh initialisation. `transfer="embeddings"` takes the item and
    position embeddings only and leaves the Transformer blocks fresh. Returns how many items
    were matched.
    """
    if transfer not in WARM_START:
        raise ValueError(f"unknown warm-start transfer {transfer!r}: one of {', '.join(WARM_START)}")
    state = dict(encoder["state_dict"])
    pretrained = state.pop("item_embedding.weight")
    if transfer == "embeddings":
        state = {k: v for k, v in state.items() if k.startswith("position_embedding.")}
    model.load_state_dict(state, strict=False)
    to_encoder = token_map(item_ids, encoder_item_ids)
    matched = [(token, int(to_encoder[token])) for token in np.flatnonzero(to_encoder)]
    with torch.no_grad():
        weight = model.item_embedding.weight
        if matched:
            new, old = (torch.as_tensor(x) for x in zip(*matched, strict=True))
            weight[new] = pretrained[old].to(weight.device)
        weight[model.mask_token] = pretrained[-1].to(weight.device)  # the [MASK] token is last
    return len(matched)
