"""The sequence encoder: item + position embeddings through a Transformer, one mask flag.

`causal=True` is SASRec (each position sees only the past: next-item prediction);
`causal=False` is BERT4Rec-style (every position sees the whole sequence: masked items).
The encoder returns hidden states; objectives live in `objectives.py` and score items with
`item_logits`, whose output embedding is tied to the input one.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from recsys_tasks.config import ModelConfig

PAD = 0


class SequenceEncoder(nn.Module):
    def __init__(self, n_items: int, config: ModelConfig):
        super().__init__()
        self.n_items = n_items
        self.config = config
        d = config.d_model
        # tokens: 0 padding, 1..n_items items, n_items + 1 the [MASK] token of Cloze pretraining
        self.item_embedding = nn.Embedding(n_items + 2, d, padding_idx=PAD)
        self.position_embedding = nn.Embedding(config.max_len, d)
        layer = nn.TransformerEncoderLayer(
            d, config.n_heads, dim_feedforward=4 * d, dropout=config.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.dropout = nn.Dropout(config.dropout)
        self.norm = nn.LayerNorm(d)
        nn.init.normal_(self.item_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)

    @property
    def mask_token(self) -> int:
        return self.n_items + 1

    def forward(self, tokens: torch.Tensor, causal: bool) -> torch.Tensor:
        """tokens (B, T), left-padded with 0 -> hidden states (B, T, D)."""
        batch, length = tokens.shape
        if length > self.config.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len {self.config.max_len}")
        positions = torch.arange(self.config.max_len - length, self.config.max_len, device=tokens.device)
        x = self.item_embedding(tokens) * math.sqrt(self.config.d_model) + self.position_embedding(positions)
        x = self.dropout(x)
        blocked = (tokens == PAD)[:, None, :].expand(batch, length, length)  # (B, T, T) no attending to padding
        if causal:
            future = torch.ones(length, length, dtype=torch.bool, device=tokens.device).triu(1)
            blocked = blocked | future
        # every position may attend to itself, so padded rows never become all -inf (NaN)
        blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=tokens.device)
        mask = blocked.repeat_interleave(self.config.n_heads, dim=0)  # (B * H, T, T)
        return self.norm(self.blocks(x, mask=mask))

    def item_logits(self, hidden: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """hidden (..., D) -> scores over tokens (..., n_items + 1); padding scores -inf.
        `out`: where to write them (inference only: no gradient flows through it)."""
        weight = self.item_embedding.weight[: self.n_items + 1]
        logits = hidden @ weight.T if out is None else torch.matmul(hidden, weight.T, out=out)
        logits[..., PAD] = float("-inf")
        return logits

    def last_hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """The causal state after the most recent item: (B, T) -> (B, D)."""
        return self.forward(tokens, causal=True)[:, -1, :]

    def checkpoint(self) -> dict:
        """Everything needed to rebuild the model: its arguments and its weights."""
        return {"n_items": self.n_items, "model_config": dataclasses.asdict(self.config), "state_dict": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> SequenceEncoder:
        model = cls(checkpoint["n_items"], ModelConfig(**checkpoint["model_config"]))
        model.load_state_dict(checkpoint["state_dict"])
        return model
