"""The sequence encoder: item + position embeddings through a Transformer, one mask flag.

`causal=True` is SASRec (each position sees only the past: next-item prediction);
`causal=False` is BERT4Rec-style (every position sees the whole sequence: masked items).
The encoder returns hidden states; objectives live in `objectives.py` and score items with
`item_logits`, whose output embedding is tied to the input one.

Two options change the blocks (both off by default, see `ModelConfig`): a frequency branch
beside attention (BSARec: a low-pass filter over time plus its high-pass rest scaled by a
learned beta, mixed with attention as alpha * filter + (1 - alpha) * attention), made causal so
every position can be trained; and an attention sink (a learned key/value every query may
attend to, so a query can attend to "nothing"). Parameter names stay those of torch's
`TransformerEncoder`, so checkpoints from before these options still load.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from recsys_tasks.config import ModelConfig

PAD = 0


def low_pass_kernel(max_len: int, frequencies: int) -> torch.Tensor:
    """(max_len,) weights w[j] of the item j steps back, such that sum_j w[j] x[T-1-j] is the last
    position of BSARec's low-pass filter: `irfft` of `rfft(x)` (both "ortho", along time, over a
    window of max_len) with all but the lowest `frequencies` frequencies zeroed.

    That filter is circulant, so its last row is a function of the lag alone; applied to each
    prefix (left-padded to max_len, as BSARec sees a sequence at its last position) it is one
    causal convolution with this kernel, and every position can be trained without seeing the future.
    """
    keep = torch.zeros(max_len // 2 + 1)
    keep[:frequencies] = 1.0
    # irfft of the kept spectrum: the impulse response of the filter, h[lag]
    return torch.fft.irfft(keep, n=max_len)


class FrequencyFilter(nn.Module):
    """BSARec's filter: low-pass (the lowest frequencies over time) + beta^2 x high-pass (the rest)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.sqrt_beta = nn.Parameter(torch.randn(1, 1, config.d_model))  # (1, 1, D), BSARec's initialisation
        self.register_buffer("kernel", low_pass_kernel(config.max_len, config.frequencies), persistent=False)

    def forward(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), real (B, T) True at items -> (B, T, D); position t sees positions <= t only."""
        length = x.shape[1]
        lag = torch.arange(length, device=x.device)[:, None] - torch.arange(length, device=x.device)[None, :]
        weights = torch.where(lag >= 0, self.kernel[lag.clamp(min=0)], 0.0).to(x.dtype)  # (T, T) lower-triangular
        # padding contributes nothing, so a batch cut to its longest row gives the same states as max_len
        low = torch.einsum("ts,bsd->btd", weights, x * real[..., None].to(x.dtype))
        return low + self.sqrt_beta**2 * (x - low)


class Block(nn.TransformerEncoderLayer):
    """A pre-norm Transformer block (torch's, with its parameter names), plus the options."""

    def __init__(self, config: ModelConfig):
        d = config.d_model
        super().__init__(
            d, config.n_heads, dim_feedforward=4 * d, dropout=config.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        if config.attention_sink:  # one learned key and value appended to every sequence
            self.self_attn = nn.MultiheadAttention(d, config.n_heads, dropout=config.dropout, add_bias_kv=True, batch_first=True)
        self.alpha = config.frequency_mix
        self.frequency = FrequencyFilter(config) if config.frequency_mix > 0 else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), mask (B * H, T, T) True = blocked, real (B, T) -> (B, T, D)."""
        y = self.norm1(x)
        mixed = self.dropout1(self.self_attn(y, y, y, attn_mask=mask, need_weights=False)[0])
        if self.frequency is not None:
            mixed = (1 - self.alpha) * mixed + self.alpha * self.dropout1(self.frequency(y, real))
        x = x + mixed
        return x + self._ff_block(self.norm2(x))


class Blocks(nn.Module):
    """The stack of blocks; named as torch's `TransformerEncoder` (`blocks.layers.N...`)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.layers = nn.ModuleList([Block(config) for _ in range(config.n_layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask, real)
        return x


class SequenceEncoder(nn.Module):
    def __init__(self, n_items: int, config: ModelConfig):
        super().__init__()
        self.n_items = n_items
        self.config = config
        d = config.d_model
        # tokens: 0 padding, 1..n_items items, n_items + 1 the [MASK] token of Cloze pretraining
        self.item_embedding = nn.Embedding(n_items + 2, d, padding_idx=PAD)
        self.position_embedding = nn.Embedding(config.max_len, d)
        self.blocks = Blocks(config)
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
        return self.norm(self.blocks(x, mask, tokens != PAD))

    def item_weights(self) -> torch.Tensor:
        """(n_items, D): the output embeddings of items 1..n_items (tied to the input ones);
        training scores against these, so padding is no class at all."""
        return self.item_embedding.weight[1 : self.n_items + 1]

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

    # options a checkpoint saved before they existed was trained without, whatever today's default
    BEFORE_OPTIONS = {"frequency_mix": 0.0, "attention_sink": False}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> SequenceEncoder:
        model = cls(checkpoint["n_items"], ModelConfig(**{**cls.BEFORE_OPTIONS, **checkpoint["model_config"]}))
        model.load_state_dict(checkpoint["state_dict"])
        return model
