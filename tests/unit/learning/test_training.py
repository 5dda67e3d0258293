"""Training as it ships: per-position loss weighting, one fit function, checkpoints loaded weights-only."""

import dataclasses
import io
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recsys_tasks.config import ModelConfig, PipelineConfig, TrainConfig, config_from_env
from recsys_tasks.data.prepare import build_sequences, everything, leave_one_out
from recsys_tasks.data.sources import read_interactions, write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions
from recsys_tasks.errors import ArtifactError
from recsys_tasks.learning.distributed import target_name
from recsys_tasks.learning.fit import FINETUNE, fit
from recsys_tasks.learning.model import PAD, SequenceEncoder
from recsys_tasks.learning.objective_builder import make_objective
from recsys_tasks.learning.objectives import MaskedItem, NextItem, PositionWeights, SampledNextItem
from recsys_tasks.learning.training import length_buckets
from recsys_tasks.ops.bench import BENCH_TRAIN, NIGHTLY_PRETRAINING, pretraining_names, run_benchmark
from recsys_tasks.pipeline import RunContext
from recsys_tasks.pipeline.learn import checkpoints_for, finetune, load_torch, pretrain, save_torch

# --- the loss weighs positions, not batches ---------------------------------------------------


class FixedScores(nn.Module):
    """Scores every position alike: item 4 three times as likely as each of items 1-3, so a
    target 4 costs log 2 and a target 1 costs log 6 (softmax over 1 + 1 + 1 + 3)."""

    n_items = 4

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, tokens: torch.Tensor, causal: bool) -> torch.Tensor:
        return torch.ones(*tokens.shape, 1) + self.anchor  # (B, T, 1)

    def item_weights(self) -> torch.Tensor:  # (4, 1): items 1-4 score 0, 0, 0, log 3
        return torch.tensor([[0.0], [0.0], [0.0], [math.log(3)]]) + self.anchor * 0

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden * 0 + torch.tensor([float("-inf"), 0.0, 0.0, 0.0, math.log(3)])  # (N, 5)


SHORT = torch.tensor([[0, 0, 0, 4, 4], [0, 0, 0, 4, 4]])  # 2 items each: 1 target (4) per row
LONG = torch.tensor([[4, 1, 1, 1, 1], [4, 1, 1, 1, 1]])  # 5 items each: 4 targets (1) per row


def test_a_batch_loss_is_its_positions_summed_over_the_average_batch_so_an_epoch_weighs_every_position_alike():
    weights = PositionWeights(batch_size=2, mean_length=(2 + 2 + 5 + 5) / 4)  # 2.5 targets a row, 5 a batch
    generator = torch.Generator().manual_seed(0)
    short = NextItem().loss(FixedScores(), SHORT, generator, weights)
    long = NextItem().loss(FixedScores(), LONG, generator, weights)
    assert short.item() == pytest.approx(2 * math.log(2) / 5)
    assert long.item() == pytest.approx(8 * math.log(6) / 5)
    per_position = (2 * math.log(2) + 8 * math.log(6)) / 10  # 10 targets, each counted once
    assert (short.item() + long.item()) / 2 == pytest.approx(per_position)
    # a mean per batch gives the 2 short targets the say of the 8 long ones
    batch_means = [NextItem().loss(FixedScores(), b, generator).item() for b in (SHORT, LONG)]
    assert batch_means == pytest.approx([math.log(2), math.log(6)])
    assert sum(batch_means) / 2 != pytest.approx(per_position)


def test_event_weights_multiply_each_targets_cross_entropy_and_keep_the_divisor():
    """`event_weights` as stated: a target's cross-entropy counts its event's weight (a purchase
    = 3 views), the divisor stays the positions of an average batch."""
    weights = PositionWeights(batch_size=2, mean_length=5.0)  # 4 targets a row, 8 an average batch
    events = torch.tensor([[1.0, 1.0, 3.0, 1.0, 2.0], [1.0, 1.0, 1.0, 1.0, 1.0]])  # row 0: a purchase, an add-to-cart
    generator = torch.Generator()
    plain = NextItem().loss(FixedScores(), LONG, generator, weights).item()
    weighted = NextItem().loss(FixedScores(), LONG, generator, dataclasses.replace(weights, events=events)).item()
    assert plain == pytest.approx(8 * math.log(6) / 8)
    assert weighted == pytest.approx((3 + 1 + 2 + 1 + 4) * math.log(6) / 8)  # the first item is no target
    # the sampled objective and soft labels weigh targets the same way
    encoder = SequenceEncoder(4, ModelConfig(d_model=8, n_layers=1, n_heads=1, max_len=4, dropout=0.0)).eval()
    doubled = dataclasses.replace(weights, events=torch.full((2, 5), 2.0))
    sampled = [
        SampledNextItem(negatives=3).loss(encoder, LONG, torch.Generator().manual_seed(0), w).item() for w in (weights, doubled)
    ]
    assert sampled[1] == pytest.approx(2 * sampled[0])
    soft = NextItem(future_decay=0.2).loss(FixedScores(), LONG[:1], generator, dataclasses.replace(weights, events=events[:1]))
    soft_plain = NextItem(future_decay=0.2).loss(FixedScores(), LONG[:1], generator, weights)
    assert soft.item() == pytest.approx(soft_plain.item() * (3 + 1 + 2 + 1) / 4)  # all of row 0's targets cost log 6


def test_events_weighted_by_type_change_what_fine_tuning_learns():
    log = generate_interactions(SyntheticSpec(users=120, items=30, topics=3, seed=5))
    seqs = build_sequences(log, keep="strongest", event_weights={"purchase": 3.0})
    assert seqs.weights is not None and set(np.unique(seqs.weights)) == {1.0, 3.0}
    split = leave_one_out(seqs)
    config = TrainConfig(batch_size=32, lr=1e-2, epochs=2, patience=5, device="cpu")
    model = ModelConfig(d_model=16, n_layers=1, n_heads=2, max_len=10, dropout=0.0)
    weighted = fit(seqs, split, model, config).result.history[0]["loss"]
    unweighted = fit(dataclasses.replace(seqs, weights=None), split, model, config).result.history[0]["loss"]
    assert weighted > unweighted  # purchases (weight 3) add twice their cross-entropy again


def test_a_training_budget_stops_after_the_epoch_that_spends_it_and_keeps_the_best_epoch():
    seqs = build_sequences(generate_interactions(SyntheticSpec(users=120, items=30, topics=3, seed=5)))
    split = leave_one_out(seqs)
    model = ModelConfig(d_model=16, n_layers=1, n_heads=2, max_len=10, dropout=0.0)
    unbounded = TrainConfig(batch_size=32, lr=1e-2, epochs=4, patience=10, device="cpu")
    assert fit(seqs, split, model, unbounded).result.epochs_run == 4
    budget = dataclasses.replace(unbounded, train_minutes=1e-6)  # spent by the first epoch
    result = fit(seqs, split, model, budget).result
    assert result.epochs_run == 1 and result.best_epoch == 1 and result.best_score is not None


def test_a_refit_trains_the_chosen_epochs_on_every_event_without_validation():
    seqs = build_sequences(generate_interactions(SyntheticSpec(users=120, items=30, topics=3, seed=5)))
    split = everything(seqs)
    assert (split.train_end == seqs.offsets[1:]).all() and len(split.eval_users) == 0  # the held-out events too
    model = ModelConfig(d_model=16, n_layers=1, n_heads=2, max_len=10, dropout=0.0)
    config = TrainConfig(batch_size=32, lr=1e-2, epochs=50, patience=1, device="cpu")
    refit = fit(seqs, split, model, config, refit_epochs=3).result
    assert refit.epochs_run == 3 and refit.best_score is None and all("val" not in h for h in refit.history)


def test_soft_future_labels_are_the_next_items_weighted_by_decay_to_the_power_of_their_distance():
    # inputs (4, 1, 4, 1) -> targets at 3 positions: 1, 4, 1 (the padded first input has none)
    row = torch.tensor([[0, 4, 1, 4, 1]])
    log2, log6 = math.log(2), math.log(6)  # FixedScores: a target 4 costs log 2, a target 1 log 6
    expected = [
        (log6 + 0.2 * log2 + 0.04 * log6) / 1.24,  # targets 1, then 4 and 1 after it
        (log2 + 0.2 * log6) / 1.2,  # 4, then 1; nothing after
        log6,  # the last target alone
    ]
    loss = NextItem(future_decay=0.2, future_items=2).loss(FixedScores(), row, torch.Generator())
    assert loss.item() == pytest.approx(sum(expected) / 3)
    weights = PositionWeights(batch_size=2, mean_length=2.5)  # 1.5 targets a row, 3 an average batch
    assert NextItem(future_decay=0.2).loss(FixedScores(), row, torch.Generator(), weights).item() == pytest.approx(
        sum(expected) / 3
    )
    # decay 0 is plain next-item prediction
    plain = NextItem().loss(FixedScores(), row, torch.Generator()).item()
    assert NextItem(future_decay=0.0).loss(FixedScores(), row, torch.Generator()).item() == pytest.approx(plain)
    assert plain == pytest.approx((log6 + log2 + log6) / 3)


def test_over_an_epoch_of_length_buckets_every_position_counts_once_with_one_weight():
    torch.manual_seed(0)
    model = SequenceEncoder(20, ModelConfig(d_model=16, n_layers=1, n_heads=2, max_len=8, dropout=0.0)).eval()
    rng = np.random.default_rng(1)
    rows = torch.as_tensor(rng.integers(1, 21, size=(48, 9)))
    lengths = torch.as_tensor(rng.choice([2, 3, 9], size=48, p=[0.6, 0.3, 0.1]))
    rows[torch.arange(9)[None, :] < 9 - lengths[:, None]] = PAD  # left-padded histories of 2, 3 or 9 items
    weights = PositionWeights(batch_size=8, mean_length=float(lengths.float().mean()))
    divisor = 8 * NextItem().targets_per_row(weights.mean_length)  # positions of an average batch
    objective, generator = NextItem(), torch.Generator().manual_seed(0)
    with torch.no_grad():
        batches = length_buckets(lengths, 8, generator)
        losses = [objective.loss(model, rows[i][:, -int(lengths[i].max()) :], generator, weights) for i in batches]
        batch = objective.make_batch(rows, generator)
        hidden = model(batch.inputs, causal=True)[batch.targets != PAD]  # (N, D): every target position
        every_position = F.cross_entropy(model.item_logits(hidden), batch.targets[batch.targets != PAD], reduction="sum")
    assert torch.stack(losses).sum().item() == pytest.approx(every_position.item() / divisor, rel=1e-5)


def test_length_buckets_hold_similar_lengths_and_about_the_same_number_of_positions():
    lengths = torch.tensor([3] * 600 + [5] * 300 + [10] * 100 + [50] * 30)  # 4,770 next-item targets
    batches = length_buckets(lengths, 64, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(len(lengths)))  # every row once
    budget = 64 * (lengths - 1).float().mean().item()  # 64 average rows' positions: 296
    positions = [int((lengths[b] - 1).sum()) for b in batches]
    assert len(batches) == round(len(lengths) / 64)  # as many steps as batches of 64 rows
    assert all(budget - 49 <= p <= budget + 49 for p in sorted(positions)[1:])  # within one row; one remainder
    assert sum(int(lengths[b].max() - lengths[b].min()) == 0 for b in batches) >= 12  # most batches: one length
    sizes = sorted(len(b) for b in batches)
    assert sizes[-1] > 64 * 2 and sizes[0] < 64 // 8  # many short rows in a batch, few long ones
    # a per-sequence objective (contrastive pretraining) gets 64 rows a batch, as before
    by_rows = sorted(len(b) for b in length_buckets(lengths, 64, torch.Generator().manual_seed(0), "sequence"))
    assert by_rows[1:] == [64] * (len(by_rows) - 1) and by_rows[0] == len(lengths) % 64


@pytest.mark.parametrize("name, unit", [
    ("next_item", "position"), ("masked_item", "position"), ("contrastive", "sequence"),
    ("contrastive+masked_item", "position"),
])
def test_each_objective_says_what_its_loss_averages_over(name, unit):
    assert make_objective(name, SequenceEncoder(20, TINY_MODEL), 0.2).unit == unit


def test_masked_item_targets_per_row_is_the_expected_count_of_hidden_positions():
    objective = MaskedItem(mask_token=21, mask_prob=0.2)
    rows = [torch.tensor([[3, 4]]), torch.tensor([[5, 6, 7, 8, 9, 1]]), torch.full((1, 9), 2)]  # 2, 6 and 9 items
    generator = torch.Generator().manual_seed(0)
    # each cut to its own length, as training cuts a batch of one length
    hidden = [sum((objective.make_batch(r, generator).targets != PAD).sum().item() for r in rows) / 3 for _ in range(4000)]
    assert np.mean(hidden) == pytest.approx(objective.targets_per_row((2 + 6 + 9) / 3), rel=0.02)


# --- one fit function for the stages and the benchmark ----------------------------------------

TINY_MODEL = ModelConfig(d_model=16, n_layers=1, n_heads=2, max_len=12, dropout=0.2)
TINY_TRAIN = dataclasses.replace(
    TrainConfig(), pretrain_epochs=2, epochs=3, patience=3, batch_size=32, lr=5e-3, device="cpu", processes=1,
)


def test_the_finetune_stage_and_the_benchmark_train_the_same_model_through_fit(recsys_home):
    data = recsys_home / "events.csv"
    write_interactions(generate_interactions(SyntheticSpec(users=150, items=40, topics=4, seed=5)), str(data))
    config = dataclasses.replace(
        config_from_env(), model=TINY_MODEL, train=TINY_TRAIN, pretrain_objectives=NIGHTLY_PRETRAINING,
    )
    run = RunContext("fit-run", config)
    seqs = build_sequences(read_interactions(str(data)))
    sequences = run.path("sequences.npz")  # what `prepare` would have written, from the same file as the benchmark
    run.store.write_bytes(sequences, seqs.to_bytes())

    encoder = pretrain(run, sequences, force=True)
    trained = finetune(run, sequences, encoder["encoder"])
    stage_model = load_torch(run, f"models/{trained['model_version']}/model.pt")
    lineage = run.store.read_json(f"models/{trained['model_version']}/lineage.json")

    figures = run_benchmark(str(data), None, TINY_MODEL, TINY_TRAIN)  # the default: pretraining as the nightly
    assert figures["pretrain_objectives"] == [NIGHTLY_PRETRAINING]
    assert [(h["loss"], h["val"]) for h in figures["history"]] == [(h["loss"], h["val"]) for h in lineage["history"]]
    pretrain_losses = [h["loss"] for h in run.store.read_json("encoders/LATEST.json")["history"]]
    assert [h["loss"] for h in figures["pretrain_history"]] == pretrain_losses

    split = leave_one_out(seqs, min_length=config.min_sequence_length)
    direct = fit(seqs, split, TINY_MODEL, TINY_TRAIN, FINETUNE, None, load_torch(run, encoder["encoder"]))
    for name, weight in direct.model.state_dict().items():
        assert torch.equal(weight, stage_model["state_dict"][name]), name
    assert direct.result.best_epoch == figures["best_epoch"] == trained["best_epoch"]
    # the refit the nightly ships is the one the benchmark scores: the same epochs, one event more per user
    assert figures["refit"]["epochs"] == trained["best_epoch"] and trained["refit_version"]
    refit_lineage = run.store.read_json(f"models/{trained['refit_version']}/lineage.json")
    assert len(refit_lineage["history"]) == figures["refit"]["epochs"]
    assert set(figures["judged_metrics"]) == set(figures["metrics"])
    without = run_benchmark(str(data), None, TINY_MODEL, TINY_TRAIN, refit=False)
    assert without["refit"] is None and without["metrics"] == without["judged_metrics"] == figures["judged_metrics"]


def test_tracing_test_scores_changes_nothing_the_benchmark_trains_or_chooses(tmp_path):
    data = tmp_path / "events.csv"
    write_interactions(generate_interactions(SyntheticSpec(users=120, items=40, topics=4, seed=8)), str(data))
    plain = run_benchmark(str(data), None, TINY_MODEL, TINY_TRAIN, ())
    traced = run_benchmark(str(data), None, TINY_MODEL, TINY_TRAIN, (), trace_test=0.99)
    assert [(h["loss"], h["val"]) for h in traced["history"]] == [(h["loss"], h["val"]) for h in plain["history"]]
    assert traced["metrics"] == plain["metrics"] and traced["best_epoch"] == plain["best_epoch"]
    best = traced["history"][traced["best_epoch"] - 1]
    assert best["test"] == traced["model_alone_metrics"]["NDCG@10"]  # the trace scores the same model test scores (no prior)
    assert traced["time_to_target"] == {"target": 0.99, "epoch": None, "train_seconds": None, "seconds_with_validation": None}


def test_the_benchmark_runs_the_nightly_pretraining_unless_told_otherwise():
    defaults = {f.name: f.default for f in dataclasses.fields(PipelineConfig)}
    assert pretraining_names(None) == defaults["pretrain_objectives"] == NIGHTLY_PRETRAINING
    assert BENCH_TRAIN.pretrain_epochs == TrainConfig().pretrain_epochs > 0
    assert pretraining_names(()) == pretraining_names("none") == ""
    assert pretraining_names(("contrastive", "attribute")) == "contrastive+attribute"


def test_the_distributed_launcher_knows_no_stage():
    code = "import json, sys, recsys_tasks.learning.distributed; print(json.dumps([m for m in sys.modules if 'stages' in m]))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(loaded) == []
    assert target_name(fit) == "recsys_tasks.learning.fit:fit"
    with pytest.raises(ValueError, match="module-level"):
        target_name(lambda: None)


# --- checkpoints are loaded weights-only --------------------------------------------------------


class PlantedPayload:
    """What an attacker would plant: unpickling it runs a shell command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def local_run(tmp_path) -> RunContext:
    return RunContext(
        "planted", PipelineConfig(source_uri="unused", db_url="sqlite://", artifact_root=str(tmp_path / "artifacts"))
    )


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_planted_model_file_is_refused_and_never_runs(tmp_path, zip_format):
    run, marker = local_run(tmp_path), tmp_path / "pwned"
    planted = {"n_items": 3, "state_dict": PlantedPayload(f"touch {marker}"), "item_ids": ["a", "b", "c"]}
    buffer = io.BytesIO()  # both formats torch.load reads; with weights_only=False either runs the command
    torch.save(planted, buffer, _use_new_zipfile_serialization=zip_format)
    run.store.write_bytes("models/v-planted/model.pt", buffer.getvalue())
    with pytest.raises(ArtifactError, match="not written by this pipeline or was altered") as caught:
        load_torch(run, "models/v-planted/model.pt")
    assert "models/v-planted/model.pt" in str(caught.value) and not caught.value.retryable
    assert not marker.exists()  # the command never ran


def test_a_truncated_checkpoint_and_a_planted_resume_state_fail_clearly(tmp_path):
    run, marker = local_run(tmp_path), tmp_path / "pwned"
    model = SequenceEncoder(3, TINY_MODEL)
    save_torch(run, "encoders/cut/encoder.pt", {**model.checkpoint(), "item_ids": ["a", "b", "c"]})
    whole = run.store.read_bytes("encoders/cut/encoder.pt")
    assert load_torch(run, "encoders/cut/encoder.pt")["item_ids"] == ["a", "b", "c"]
    run.store.write_bytes("encoders/cut/encoder.pt", whole[: len(whole) // 2])
    with pytest.raises(ArtifactError, match="not a readable checkpoint"):
        load_torch(run, "encoders/cut/encoder.pt")
    buffer = io.BytesIO()
    torch.save({"result": PlantedPayload(f"touch {marker}")}, buffer)
    run.store.write_bytes(run.path("checkpoints/finetune.pt"), buffer.getvalue())
    with pytest.raises(ArtifactError):
        checkpoints_for(run, "finetune").load()  # a retried task would resume from it
    assert not marker.exists()
