import io

import numpy as np
import pytest
import torch

from recsys_tasks.config import ModelConfig, TrainConfig
from recsys_tasks.model import PAD, SequenceEncoder
from recsys_tasks.objectives import OBJECTIVE_NAMES, full_softmax_loss, make_objective
from recsys_tasks.training import train, warm_start

CONFIG = ModelConfig(d_model=16, n_layers=1, n_heads=2, max_len=8, dropout=0.0)


def sequences(n_users=32, n_items=20, length=9, seed=0):
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, n_items + 1, size=(n_users, length))
    rows[: n_users // 2, :3] = PAD  # some short, left-padded histories
    return rows


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
def test_every_objective_yields_targets_and_a_finite_loss(name):
    model = SequenceEncoder(20, CONFIG)
    objective = make_objective(name, model, mask_prob=0.3)
    batch = objective.make_batch(torch.as_tensor(sequences()), torch.Generator().manual_seed(0))
    assert batch.inputs.shape == batch.targets.shape == (32, 8)
    assert (batch.targets != PAD).sum() > 0
    assert not ((batch.inputs == PAD) & (batch.targets != PAD)).any()  # padding is never a target position
    loss = full_softmax_loss(model, batch, objective.causal)
    assert torch.isfinite(loss)


def test_causal_mask_cannot_see_the_future():
    model = SequenceEncoder(20, CONFIG).eval()
    tokens = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    changed = tokens.clone()
    changed[0, 6:] = torch.tensor([1, 2])  # change only the last two items
    with torch.no_grad():
        before, after = model(tokens, causal=True), model(changed, causal=True)
        assert torch.allclose(before[0, :6], after[0, :6], atol=1e-6)
        assert not torch.allclose(before[0, 6:], after[0, 6:])
        bidirectional = model(tokens, causal=False), model(changed, causal=False)
        assert not torch.allclose(bidirectional[0][0, :6], bidirectional[1][0, :6])


def test_padding_rows_stay_finite():
    model = SequenceEncoder(20, CONFIG).eval()
    with torch.no_grad():
        out = model(torch.tensor([[0, 0, 0, 0, 0, 0, 0, 5]]), causal=True)
    assert torch.isfinite(out).all()


def test_checkpoint_round_trip_gives_identical_scores():
    model = SequenceEncoder(20, CONFIG).eval()
    buffer = io.BytesIO()
    torch.save(model.checkpoint(), buffer)
    restored = SequenceEncoder.from_checkpoint(torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)).eval()
    tokens = torch.as_tensor(sequences()[:, 1:])
    with torch.no_grad():
        assert torch.equal(model.item_logits(model.last_hidden(tokens)), restored.item_logits(restored.last_hidden(tokens)))


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
def test_a_tiny_run_lowers_the_loss(name):
    model = SequenceEncoder(20, CONFIG)
    rows = np.tile(np.arange(1, 10), (64, 1))  # one fixed sequence: easy to learn
    result = train(model, make_objective(name, model, 0.3), rows, TrainConfig(batch_size=16, lr=5e-3), epochs=15)
    assert result.history[-1]["loss"] < 0.7 * result.history[0]["loss"]


def test_warm_start_matches_items_by_id():
    pretrained = SequenceEncoder(3, CONFIG)
    new = SequenceEncoder(4, CONFIG)
    matched = warm_start(new, pretrained.checkpoint(), ["b", "c", "x", "a"], ["a", "b", "c"])
    assert matched == 3
    with torch.no_grad():
        # new token 1 is "b", pretrained token 2; new token 4 is "a", pretrained token 1
        assert torch.equal(new.item_embedding.weight[1], pretrained.item_embedding.weight[2])
        assert torch.equal(new.item_embedding.weight[4], pretrained.item_embedding.weight[1])
        assert torch.equal(new.blocks.layers[0].linear1.weight, pretrained.blocks.layers[0].linear1.weight)
