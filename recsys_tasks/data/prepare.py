"""From the canonical frame to per-user item sequences, a vocabulary and a leave-one-out split.

Item tokens: 0 is padding, 1..n_items are items (token = vocabulary index + 1). Sequences are
kept flat (`items`, with `offsets` of length n_users + 1) so a million users stay one array.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys_tasks.config import PipelineConfig


@dataclass(frozen=True)
class Sequences:
    user_ids: list[str]  # user index -> source id
    item_ids: list[str]  # token - 1 -> source id
    offsets: np.ndarray  # (n_users + 1,) int64
    items: np.ndarray  # (n_events,) int64 tokens in time order per user
    last_ts: np.ndarray | None = None  # (n_users,) int64 seconds of each user's newest event
    # (n_events,) float32 what each kept event weighs as a training target (`event_weights` of
    # its type); None when every event weighs 1
    weights: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        vocab = json.dumps({"users": self.user_ids, "items": self.item_ids}).encode()
        last_ts = self.last_ts if self.last_ts is not None else np.zeros(0, dtype=np.int64)
        weights = self.weights if self.weights is not None else np.zeros(0, dtype=np.float32)
        np.savez_compressed(
            buffer, offsets=self.offsets, items=self.items, last_ts=last_ts, weights=weights,
            vocab=np.frombuffer(vocab, dtype=np.uint8),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Sequences:
        with np.load(io.BytesIO(data)) as arrays:
            vocab = json.loads(arrays["vocab"].tobytes())
            last_ts = arrays["last_ts"] if len(arrays["last_ts"]) else None
            weights = arrays["weights"] if "weights" in arrays and len(arrays["weights"]) else None
            return cls(vocab["users"], vocab["items"], arrays["offsets"], arrays["items"], last_ts, weights)


def rows_fingerprint(frame: pd.DataFrame) -> str:
    """A hash of the rows whatever their order (the sum of per-row hashes), with the count: two
    extracts of the same data, as a replay makes, print the same fingerprint."""
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    return f"{len(frame)}:{int(hashes.sum(dtype=np.uint64)):016x}"


def k_core(events: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    """Drop users and items with too few events, repeatedly, until both bounds hold."""
    while min_user > 1 or min_item > 1:
        users = events["user_id"].map(events["user_id"].value_counts())
        items = events["item_id"].map(events["item_id"].value_counts())
        keep = (users >= min_user) & (items >= min_item)
        if keep.all():
            break
        events = events[keep]
    return events


def build_sequences(
    frame: pd.DataFrame, known_items: list[str] | None = None, keep: str = "first",
    min_user_events: int = 0, min_item_events: int = 0, event_weights: Mapping[str, float] | None = None,
) -> Sequences:
    """De-duplicate events, filter to a k-core, order by time, and index users and items.

    Repeated (user, item) pairs keep one occurrence (`keep`: "first", "last", or "strongest":
    the event whose type weighs most in `event_weights` (types not named weigh 1), then the
    highest value, then the earliest; a purchase after a view of the same item is kept, at the
    purchase's time): the split's targets must be items the user has not seen before, because
    evaluation excludes seen items. Each kept event weighs its type's `event_weights` weight as
    a training target (`Sequences.weights`; None when no event weighs other than 1).
    `known_items` is the vocabulary of earlier runs: those ids keep their tokens and new ids are
    appended after them, so a token means the same item from one run to the next.
    `keep="all"` keeps every event as given, repeats included (the published protocol, and
    `repeats=allow`): a repeated target is then a miss wherever history items are excluded.
    """
    if keep not in {"first", "last", "strongest", "all"}:
        raise ValueError(f"keep must be 'strongest', 'first', 'last' or 'all', got {keep!r}")
    weights = event_weights or {}
    kinds = frame["event_type"] if "event_type" in frame else pd.Series("", index=frame.index)
    events = frame[["user_id", "item_id", "ts"]].assign(_weight=kinds.map(lambda e: weights.get(str(e), 1.0)).astype(float))
    if keep == "strongest":
        values = frame["value"] if "value" in frame else pd.Series(0.0, index=frame.index)
        ranked = events.assign(_value=pd.to_numeric(values, errors="coerce").fillna(-np.inf)).sort_values(
            ["user_id", "item_id", "_weight", "_value", "ts"], ascending=[True, True, False, False, True], kind="stable")
        events = ranked.drop_duplicates(["user_id", "item_id"], keep="first").drop(columns="_value")
        events = events.sort_values(["user_id", "ts", "item_id"], kind="stable")
    else:
        events = events.sort_values(["user_id", "ts", "item_id"], kind="stable")
        if keep != "all":
            events = events.drop_duplicates(["user_id", "item_id"], keep=keep)
    events = k_core(events, min_user_events, min_item_events)
    known = list(known_items or [])
    seen = set(known)
    item_ids = known + sorted(i for i in events["item_id"].unique().tolist() if i not in seen)
    user_ids = sorted(events["user_id"].unique().tolist())
    item_token = pd.Series(np.arange(1, len(item_ids) + 1), index=item_ids)
    user_index = pd.Series(np.arange(len(user_ids)), index=user_ids)
    users = user_index.loc[events["user_id"]].to_numpy()
    tokens = item_token.loc[events["item_id"]].to_numpy().astype(np.int64)
    counts = np.bincount(users, minlength=len(user_ids))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    seconds = events["ts"].astype("int64").to_numpy() // 10**9 if len(events) else np.zeros(0, dtype=np.int64)
    last_ts = seconds[offsets[1:] - 1] if len(user_ids) else np.zeros(0, dtype=np.int64)
    target_weights = events["_weight"].to_numpy(dtype=np.float32)
    return Sequences(
        user_ids=[str(u) for u in user_ids], item_ids=[str(i) for i in item_ids], offsets=offsets, items=tokens,
        last_ts=last_ts, weights=target_weights if (target_weights != 1).any() else None,
    )


@dataclass(frozen=True)
class Split:
    """Leave-one-out views over the same sequences (no copies of the item array)."""

    train_end: np.ndarray  # (n_users,) exclusive end of each user's training items
    eval_users: np.ndarray  # users with a validation and a test item


def everything(seqs: Sequences) -> Split:
    """Every event a training target and nobody evaluated: the refit after validation chose."""
    return Split(train_end=seqs.offsets[1:].copy(), eval_users=np.zeros(0, dtype=np.int64))


def leave_one_out(seqs: Sequences, min_length: int = 3, time_quantile: float | None = None) -> Split:
    """Each evaluated user's last item is the test target, the one before the validation target.

    With `time_quantile` (e.g. 0.8) the split is temporal: only users whose last event comes
    after that quantile of all users' last-event times are evaluated, so no test target is
    older than any training sequence's end; everyone else trains on their whole history.
    """
    lengths = seqs.lengths()
    eval_mask = lengths >= min_length
    if time_quantile is not None:
        if seqs.last_ts is None:
            raise ValueError("a time-based split needs event times (rebuild the sequences)")
        cutoff = np.quantile(seqs.last_ts, time_quantile) if len(seqs.last_ts) else 0
        eval_mask &= seqs.last_ts >= cutoff
    # evaluated users hold back their last two items; the rest train on everything they have
    train_end = seqs.offsets[1:] - np.where(eval_mask, 2, 0)
    return Split(train_end=train_end, eval_users=np.flatnonzero(eval_mask))


def split_for(config: PipelineConfig, seqs: Sequences) -> Split:
    """The split the config asks for: leave-one-out, or its temporal variant."""
    quantile = config.time_split_quantile if config.split == "time" else None
    return leave_one_out(seqs, config.min_sequence_length, quantile)


def item_popularity(seqs: Sequences, split: Split) -> np.ndarray:
    """(n_items + 1,) training counts per token; padding counts zero."""
    owner = np.repeat(np.arange(seqs.n_users), seqs.lengths())  # (n_events,) user of each event
    mask = np.arange(len(seqs.items)) < split.train_end[owner]
    return np.bincount(seqs.items[mask], minlength=seqs.n_items + 1).astype(np.float64)


def history_positions(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [starts[b], ends[b]) of the flat item array: (row b, flat position) pairs."""
    lengths = ends - starts
    rows = np.repeat(np.arange(len(starts)), lengths)
    first = np.cumsum(lengths) - lengths
    positions = np.arange(lengths.sum()) - np.repeat(first, lengths) + np.repeat(starts, lengths)
    return rows, positions


def token_map(item_ids: list[str], other_item_ids: list[str]) -> np.ndarray:
    """(len(item_ids) + 1,) for each token of `item_ids`, the token of the same item id in
    `other_item_ids` (another run's or model's vocabulary); 0 where it has none (and for padding)."""
    index = {item: token for token, item in enumerate(other_item_ids, start=1)}
    return np.asarray([0, *(index.get(item, 0) for item in item_ids)], dtype=np.int64)


def left_padded_windows(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """The last `length` items of each range [starts[b], ends[b]), left-padded with 0: (B, length)."""
    index = ends[:, None] - length + np.arange(length)[None, :]  # (B, length) flat positions
    valid = index >= starts[:, None]
    out = np.zeros(index.shape, dtype=items.dtype)
    out[valid] = items[index[valid]]
    return out
