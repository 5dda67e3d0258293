"""One training loop for pretraining and fine-tuning; the objective decides what is learned.

Straight loop: shuffle, batch, loss, step; progress (loss, sequences/s, ETA) goes to the
log once per epoch. With a `validate` callback it keeps the best state on validation and
stops early after `patience` epochs without improvement. Batches hold rows of similar length,
cut to their longest row (the speed), and about the same number of target positions each, and
every objective weighs each position alike whatever batch it lands in (the quality; see
`length_buckets` and `objectives.PositionWeights`).

Epoch checkpoints (`Checkpoints`) let a retried task resume; `checkpoints.py` writes and reads
them, and warm-starts a model from another.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from recsys_tasks import PROGRESS
from recsys_tasks.config import TrainConfig, environment
from recsys_tasks.interrupt import raise_if_stopped
from recsys_tasks.learning.model import PAD, SequenceEncoder
from recsys_tasks.learning.objectives import Objective, PositionWeights

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 120.0  # the first gap between epoch lines at INFO, doubling after each (first, last, stop: always)


def resolve_device(name: str) -> torch.device:
    """"auto": CUDA when present (this process's GPU under the distributed launcher), else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and (rank := environment.local_rank()) is not None:
        return torch.device("cuda", rank)
    return torch.device(name)


def process_group() -> tuple[int, int]:
    """(rank, world size) of this process under torch's distributed launcher; (0, 1) alone."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def processes_for(config: TrainConfig) -> int:
    """How many training processes to launch: as configured, else one per GPU when there are several."""
    if config.processes:
        return config.processes
    gpus = torch.cuda.device_count() if config.device in ("auto", "cuda") else 0
    return gpus if gpus > 1 else 1


class Replicated(DistributedDataParallel):
    """DDP that still answers the encoder's own attributes (`item_logits`, `n_items`...), so
    objectives take it wherever they take the encoder."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


@dataclass(frozen=True)
class Checkpoints:
    """Where a training run keeps its state between epochs (a file, an S3 object...)."""

    save: Callable[[dict], None]
    load: Callable[[], dict | None]


@dataclass
class TrainResult:
    epochs_run: int = 0
    best_epoch: int = 0
    best_score: float | None = None
    history: list[dict] = field(default_factory=list)  # per epoch: loss, seconds, cpu_seconds, seq_per_s, val
    seconds: float = 0.0


# (lengths, batch size, rng, unit) -> row indices of each batch; unit as `Objective.unit`
Batching = Callable[[torch.Tensor, int, torch.Generator, str], list[torch.Tensor]]


def length_buckets(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator, unit: str = "position",
) -> list[torch.Tensor]:
    """Batches of rows of similar length, in random order, each holding about as many of the
    objective's units as `batch_size` average rows: target positions (more short rows in a
    batch, fewer long ones) or, for per-sequence objectives, rows.

    Most histories are far shorter than max_len: a batch of similar lengths is cut to its
    longest row instead of paying for max_len positions (the speed). Counting positions rather
    than rows keeps every step's loss a sum over about as many positions, so Adam takes steps
    of one size and each position weighs the same (with 256 rows a batch, batches of two-item
    histories held 1/25 of the positions of fifty-item ones, and a mean per batch weighed users).
    """
    shuffled = torch.randperm(len(lengths), generator=generator)
    by_length = shuffled[torch.argsort(lengths[shuffled], stable=True)]  # (U,) shortest first
    # (U,) units of each row: its next-item targets, or 1
    units = (lengths[by_length] - 1).clamp(min=1) if unit == "position" else torch.ones_like(by_length)
    budget = batch_size * float(units.float().mean())
    before = torch.cumsum(units, 0) - units  # (U,) units of the rows before each row
    sizes = torch.bincount((before.double() / budget).long())  # rows per batch; 0 where one row spans a budget
    batches = [b for b in torch.split(by_length, sizes.tolist()) if len(b)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator)]


def random_batches(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator, unit: str = "position",
) -> list[torch.Tensor]:
    """`batch_size` rows drawn at random (any unit): each batch is as long as its longest row, usually max_len."""
    return list(torch.split(torch.randperm(len(lengths), generator=generator), batch_size))


BATCHINGS: dict[str, Batching] = {"length_buckets": length_buckets, "random": random_batches}


class WeightAverage:
    """An exponential moving average of the model's floating-point state, updated after every
    step (decay 0: off, every call a no-op). Validation and the kept state use the average."""

    def __init__(self, model: SequenceEncoder, decay: float, saved: dict | None = None):
        self.model, self.decay = model, decay
        live = model.state_dict()  # tensors sharing the parameters' storage, updated in place
        self.names = [k for k, v in live.items() if v.is_floating_point()] if decay > 0 else []
        self.live = [live[k] for k in self.names]
        self.average = (
            [saved[k].to(v.device) for k, v in zip(self.names, self.live, strict=True)]
            if saved
            else [v.detach().clone() for v in self.live]
        )

    def update(self) -> None:
        if self.names:
            torch._foreach_lerp_(self.average, self.live, 1.0 - self.decay)

    def state(self) -> dict[str, torch.Tensor] | None:
        return dict(zip(self.names, self.average, strict=True)) if self.names else None

    def apply(self) -> None:
        """Put the average into the model for good."""
        if self.names:
            self.model.load_state_dict(self.state(), strict=False)

    @contextlib.contextmanager
    def applied(self):
        """The average in the model inside the block, the trained weights back after it."""
        if not self.names:
            yield
            return
        trained = [v.clone() for v in self.live]
        self.apply()
        try:
            yield
        finally:
            self.model.load_state_dict(dict(zip(self.names, trained, strict=True)), strict=False)


def _validate_epoch(model: SequenceEncoder, average: WeightAverage, validate: Callable[[SequenceEncoder], float],
                    epoch_figures: Callable[[SequenceEncoder], dict[str, float]] | None, entry: dict[str, Any],
                    tick: float) -> tuple[dict[str, Any], float]:
    """Score the epoch's model (its weight average, when on) into `entry`; a copy of the
    weights as validated, and the seconds spent on `epoch_figures`."""
    model.eval()
    traced = 0.0
    with average.applied():
        entry["val"] = validate(model)
        state = copy.deepcopy(model.state_dict())
        entry["seconds_with_validation"] = round(time.perf_counter() - tick, 3)
        if epoch_figures is not None:
            watched = time.perf_counter()
            entry.update(epoch_figures(model))
            traced = time.perf_counter() - watched
    return state, traced


class ProgressPace:
    """Which epoch lines go out at INFO: the first, the last, a stop, and otherwise one after 2
    minutes, then 4, 8...: a handful of lines for a short training and a long one alike."""

    def __init__(self) -> None:
        self.said, self.lines = float("-inf"), 0

    def loud(self, always: bool) -> bool:
        now = time.perf_counter()
        if always or now - self.said >= PROGRESS_EVERY_S * 2 ** max(self.lines - 1, 0):
            self.said, self.lines = now, self.lines + 1
            return True
        return False


def over_budget(minutes: float, seconds: float, device: torch.device, world: int) -> bool:
    """Whether `seconds` of training spent the budget (0: no budget). Under DDP the ranks
    agree (the slowest decides), so all stop after the same epoch."""
    spent = float(minutes > 0 and seconds >= minutes * 60)
    if world > 1:
        flag = torch.tensor([spent], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        spent = float(flag.item())
    return spent > 0


def _resume(saved: dict[str, Any], model: SequenceEncoder, objective: torch.nn.Module | None,
            optimizer: torch.optim.Optimizer, generator: torch.Generator) -> tuple[TrainResult, Any, int]:
    """Restore the state a checkpoint saved after an epoch; (result so far, best weights, stale epochs)."""
    model.load_state_dict(saved["model"])
    if objective is not None:
        objective.load_state_dict(saved["objective"])
    optimizer.load_state_dict(saved["optimizer"])
    generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    return TrainResult(**saved["result"]), saved["best_state"], saved["stale"]


def epoch_batches(batches: Batching, lengths: torch.Tensor, config: TrainConfig, generator: torch.Generator, unit: str,
                  epoch: int, group: tuple[int, int]) -> list[torch.Tensor]:
    """This process's batches of one epoch: all of them alone; under DDP every rank cuts the
    epoch the same way (a generator seeded by the epoch), then takes every world-th batch."""
    rank, world = group
    if world == 1:
        return batches(lengths, config.batch_size, generator, unit)
    shared = torch.Generator().manual_seed(config.seed * 7919 + epoch)
    order = batches(lengths, config.batch_size, shared, unit)
    return order[rank : len(order) - len(order) % world : world]


def _train_epoch(net: torch.nn.Module, model: SequenceEncoder, objective: Objective, optimizer: torch.optim.Optimizer,
                 average: WeightAverage, rows: torch.Tensor, lengths: torch.Tensor, row_weights: torch.Tensor | None,
                 weights: PositionWeights, order: list[torch.Tensor], generator: torch.Generator,
                 device: torch.device) -> tuple[float, int]:
    """One pass over `order`'s batches; the summed loss and the number of steps."""
    total, steps = 0.0, 0
    for index in order:
        raise_if_stopped()  # the operator's Ctrl-C / SIGTERM (interrupt.request_stop), between two steps
        width = int(lengths[index].max())
        window = rows[index][:, -width:]  # (b, L) trimmed to the longest row
        batch_weights = weights if row_weights is None else dataclasses.replace(weights, events=row_weights[index][:, -width:])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = objective.loss(net, window, generator, batch_weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        average.update()
        total += loss.item()
        steps += 1
    return total, steps


def train(
    model: SequenceEncoder,
    objective: Objective,
    sequences: np.ndarray,
    config: TrainConfig,
    epochs: int,
    validate: Callable[[SequenceEncoder], float] | None = None,
    checkpoints: Checkpoints | None = None,
    batches: Batching = length_buckets,
    event_weights: np.ndarray | None = None,
    epoch_figures: Callable[[SequenceEncoder], dict[str, float]] | None = None,
) -> TrainResult:
    """sequences (U, T + 1): left-padded training windows, one row per user; `event_weights`
    (U, T + 1), aligned with them, what each item weighs as a next-item target (None: 1).
    `epoch_figures`: called after each epoch's validation with the model as validated; what it returns
    is added to the epoch's history and never chooses anything (the benchmark's test trace).

    `batches` cuts an epoch into batches of row indices: `length_buckets` (the default) or
    `random_batches` (the slower comparison it is benchmarked against).

    With `checkpoints`, the training state is saved after every epoch and a restarted task
    picks up after the last saved epoch, with the same random streams as an unbroken run.
    Under torch's distributed launcher each process trains on its share of every epoch's
    batches and DDP averages the gradients; only rank 0 logs and saves.
    """
    device = resolve_device(config.device)
    rank, world = process_group()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed + rank)  # masks and augmentations differ per rank
    model.to(device)
    net = model if world == 1 else Replicated(model, device_ids=[device.index] if device.type == "cuda" else None)
    # objectives with parameters of their own (attribute heads) train alongside the encoder
    extra = list(objective.parameters()) if isinstance(objective, torch.nn.Module) else []
    if isinstance(objective, torch.nn.Module):
        objective.to(device)
    optimizer = torch.optim.Adam([*model.parameters(), *extra], lr=config.lr, weight_decay=config.weight_decay)
    usable = (sequences != PAD).sum(1) >= 2  # a row needs an input and a target
    rows = torch.as_tensor(sequences[usable])
    row_weights = torch.as_tensor(event_weights[usable], dtype=torch.float32) if event_weights is not None else None
    lengths = (rows != PAD).sum(1)  # (U,)
    weights = PositionWeights(batch_size=config.batch_size, mean_length=float(lengths.float().mean()))
    result = TrainResult()
    best_state = None
    stale = 0
    first_epoch = 1
    saved = checkpoints.load() if checkpoints else None
    if saved is not None:
        result, best_state, stale = _resume(saved, model, objective if extra else None, optimizer, generator)
        first_epoch = result.epochs_run + 1
        log.info("%s: resuming after epoch %d from a saved checkpoint", objective.name, result.epochs_run)
    average = WeightAverage(model, config.ema_decay, saved.get("ema") if saved else None)
    if world > 1 and rank == 0:
        log.info("%s: %d processes (DDP, %s backend)", objective.name, world, dist.get_backend())
    started = time.perf_counter() - result.seconds
    pace = ProgressPace()
    for epoch in range(first_epoch, epochs + 1):
        model.train()
        tick, cpu_tick = time.perf_counter(), time.process_time()
        order = epoch_batches(batches, lengths, config, generator, objective.unit, epoch, (rank, world))
        total, steps = _train_epoch(net, model, objective, optimizer, average, rows, lengths, row_weights, weights,
                                    order, generator, device)
        seconds = time.perf_counter() - tick
        entry = {
            "epoch": epoch, "loss": total / max(steps, 1), "seconds": round(seconds, 3),
            "cpu_seconds": round(time.process_time() - cpu_tick, 3),  # the work done, on a busy machine too
            "seq_per_s": len(rows) / max(seconds, 1e-9),
        }
        if validate is not None:
            improved, traced = _validate_epoch(model, average, validate, epoch_figures, entry, tick)
            started += traced  # tracing figures is not training time
            if result.best_score is None or entry["val"] > result.best_score:
                result.best_score, result.best_epoch, stale, best_state = entry["val"], epoch, 0, improved
            else:
                stale += 1
        result.history.append(entry)
        result.epochs_run = epoch
        spent = over_budget(config.train_minutes, time.perf_counter() - started, device, world)
        stopping = (validate is not None and stale >= config.patience) or epoch == epochs or spent
        if rank == 0:
            val = f" val={entry['val']:.4f} (best {result.best_score:.4f} at {result.best_epoch})" if "val" in entry else ""
            loud = pace.loud(epoch == first_epoch or stopping)
            log.log(logging.INFO if loud else logging.DEBUG, "%s epoch %d/%d loss=%.4f%s %.0f seq/s eta<=%.0fs",
                    objective.name, epoch, epochs, entry["loss"], val, entry["seq_per_s"], seconds * (epochs - epoch),
                    extra=PROGRESS)
        if checkpoints and rank == 0:
            result.seconds = time.perf_counter() - started
            checkpoints.save({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "objective": objective.state_dict() if extra else None,
                "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                "result": dataclasses.asdict(result), "best_state": best_state, "stale": stale,
                "ema": average.state(),
            })
        if validate is not None and stale >= config.patience:  # every rank validates alike, so all stop together
            log.info("%s: no better validation score for %d epochs; stopping at epoch %d", objective.name, stale, epoch,
                     extra=PROGRESS)
            break
        if spent:
            log.info("%s: the %.1f-minute training budget is spent; stopping at epoch %d (best so far kept)",
                     objective.name, config.train_minutes, epoch, extra=PROGRESS)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        average.apply()  # no validation (pretraining): the averaged weights are the result
    model.eval()
    result.seconds = time.perf_counter() - started
    return result
