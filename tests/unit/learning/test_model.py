import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_tasks.config import ModelConfig, TrainConfig
from recsys_tasks.learning.checkpoints import checkpoint_bytes, read_checkpoint, warm_start
from recsys_tasks.learning.model import PAD, SequenceEncoder
from recsys_tasks.learning.objective_builder import OBJECTIVE_NAMES, finetune_objective, make_objective
from recsys_tasks.learning.objectives import PositionWeights
from recsys_tasks.learning.training import Checkpoints, train

CONFIG = ModelConfig(d_model=16, n_layers=1, n_heads=2, max_len=8, dropout=0.0, frequency_mix=0.0)
# every model option passes the contract tests below
OPTIONS = {
    "plain": CONFIG,
    "frequency": dataclasses.replace(CONFIG, frequency_mix=0.7),
    "sink": dataclasses.replace(CONFIG, attention_sink=True),
    "frequency+sink": dataclasses.replace(CONFIG, frequency_mix=0.7, attention_sink=True),
}
with_options = pytest.mark.parametrize("config", OPTIONS.values(), ids=OPTIONS.keys())


def sequences(n_users=32, n_items=20, length=9, seed=0):
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, n_items + 1, size=(n_users, length))
    rows[: n_users // 2, :3] = PAD  # some short, left-padded histories
    return rows


ITEM_IDS = [f"i{n}" for n in range(1, 21)]
ATTRIBUTES = pd.DataFrame(
    {"item_id": ITEM_IDS * 2, "attribute": [f"brand{n % 3}" for n in range(20)] + [f"cat{n % 4}" for n in range(20)]}
)


def objective_for(name, model):
    if name == "next_item_soft":  # next-item prediction with soft future labels
        return make_objective("next_item", model, mask_prob=0.3, future_decay=0.2)
    return make_objective(name, model, mask_prob=0.3, attributes=ATTRIBUTES, item_ids=ITEM_IDS)


@pytest.mark.parametrize("weights", [None, PositionWeights(batch_size=32, mean_length=7.5)], ids=["batch_mean", "per_position"])
@pytest.mark.parametrize("name", [*OBJECTIVE_NAMES, "next_item_soft", "masked_item+contrastive+attribute"])
@with_options
def test_every_objective_gives_a_finite_loss_with_gradients(name, weights, config):
    model = SequenceEncoder(20, config)
    objective = objective_for(name, model)
    loss = objective.loss(model, torch.as_tensor(sequences()), torch.Generator().manual_seed(0), weights)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.item_embedding.weight.grad is not None


@pytest.mark.parametrize("name", ["next_item", "masked_item"])
def test_token_objectives_target_real_positions_only(name):
    model = SequenceEncoder(20, CONFIG)
    batch = objective_for(name, model).make_batch(torch.as_tensor(sequences()), torch.Generator().manual_seed(0))
    assert batch.inputs.shape == batch.targets.shape == (32, 8)
    assert (batch.targets != PAD).sum() > 0
    assert not ((batch.inputs == PAD) & (batch.targets != PAD)).any()  # padding is never a target position


def test_contrastive_views_keep_every_sequence_non_empty():
    model = SequenceEncoder(20, CONFIG)
    first, second = objective_for("contrastive", model).make_views(torch.as_tensor(sequences()), torch.Generator().manual_seed(1))
    assert first.shape == second.shape == (32, 8)
    assert ((first != PAD).sum(1) >= 1).all() and ((second != PAD).sum(1) >= 1).all()
    assert first[:, -1].ne(PAD).all()  # views stay left-padded: the newest position is real


@with_options
def test_causal_mask_cannot_see_the_future(config):
    model = SequenceEncoder(20, config).eval()
    tokens = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    changed = tokens.clone()
    changed[0, 6:] = torch.tensor([1, 2])  # change only the last two items
    with torch.no_grad():
        before, after = model(tokens, causal=True), model(changed, causal=True)
        assert torch.allclose(before[0, :6], after[0, :6], atol=1e-6)
        assert not torch.allclose(before[0, 6:], after[0, 6:])
        bidirectional = model(tokens, causal=False), model(changed, causal=False)
        assert not torch.allclose(bidirectional[0][0, :6], bidirectional[1][0, :6])


@with_options
def test_padding_rows_stay_finite(config):
    model = SequenceEncoder(20, config).eval()
    with torch.no_grad():
        out = model(torch.tensor([[0, 0, 0, 0, 0, 0, 0, 5]]), causal=True)
    assert torch.isfinite(out).all()


@with_options
def test_checkpoint_round_trip_gives_identical_scores(config):
    model = SequenceEncoder(20, config).eval()
    restored = SequenceEncoder.from_checkpoint(read_checkpoint(checkpoint_bytes(model.checkpoint()), "model.pt")).eval()
    tokens = torch.as_tensor(sequences()[:, 1:])
    with torch.no_grad():
        assert torch.equal(model.item_logits(model.last_hidden(tokens)), restored.item_logits(restored.last_hidden(tokens)))


@pytest.mark.parametrize("name", [*OBJECTIVE_NAMES, "next_item_soft"])
@with_options
def test_a_tiny_run_lowers_the_loss(name, config):
    model = SequenceEncoder(20, config)
    # runs of consecutive items, each row starting elsewhere: learnable, and rows differ
    rows = (np.arange(9)[None, :] + np.arange(64)[:, None]) % 20 + 1
    result = train(model, objective_for(name, model), rows, TrainConfig(batch_size=16, lr=5e-3), epochs=15)
    assert result.history[-1]["loss"] < 0.9 * result.history[0]["loss"]


@with_options
def test_padding_cut_off_a_batch_changes_no_state(config):
    """Training cuts a batch to its longest row; the states of real positions must not move."""
    model = SequenceEncoder(20, config).eval()
    tokens = torch.tensor([[0, 0, 0, 3, 4, 5, 6, 7]])
    with torch.no_grad():
        assert torch.allclose(model(tokens, causal=True)[:, 3:], model(tokens[:, 3:], causal=True), atol=1e-5)


def test_the_frequency_branch_is_bsarecs_low_pass_filter_seen_from_each_prefix():
    """BSARec filters a whole window (rfft along time, lowest frequencies kept, irfft); at the
    last position that is our causal kernel, and each earlier position sees its own prefix."""
    config = dataclasses.replace(CONFIG, max_len=50, frequency_mix=0.7, frequencies=3)
    filter_ = SequenceEncoder(20, config).blocks.layers[0].frequency
    x = torch.randn(4, 50, 16)
    spectrum = torch.fft.rfft(x, dim=1, norm="ortho")
    spectrum[:, 3:] = 0  # BSARec's c = 5 keeps c // 2 + 1 = 3 frequencies
    low = torch.fft.irfft(spectrum, n=50, dim=1, norm="ortho")
    beta = filter_.sqrt_beta.detach() ** 2
    real = torch.ones(4, 50, dtype=torch.bool)
    with torch.no_grad():
        assert torch.allclose(filter_(x, real)[:, -1], low[:, -1] + beta[0] * (x[:, -1] - low[:, -1]), atol=1e-5)
        prefix = torch.cat([torch.zeros(4, 20, 16), x[:, :30]], dim=1)  # the first 30 steps, left-padded
        assert torch.allclose(filter_(x, real)[:, 29], filter_(prefix, real)[:, -1], atol=1e-5)


def test_a_checkpoint_of_torchs_transformer_encoder_loads_and_scores_the_same():
    """The blocks keep torch's parameter names and math: models saved before the options still load."""
    config = dataclasses.replace(CONFIG, n_layers=2)
    model = SequenceEncoder(20, config).eval()
    layer = torch.nn.TransformerEncoderLayer(16, 2, 64, 0.0, activation="gelu", batch_first=True, norm_first=True)
    torch_blocks = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    torch_blocks.load_state_dict({k.removeprefix("blocks."): v for k, v in model.state_dict().items() if k.startswith("blocks.")})
    tokens = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        x = model.item_embedding(tokens) * 4.0 + model.position_embedding(torch.arange(8))  # sqrt(d) = 4
        blocked = ((tokens == PAD)[:, None, :] | torch.ones(8, 8, dtype=torch.bool).triu(1)) & ~torch.eye(8, dtype=torch.bool)
        expected = model.norm(torch_blocks(x, mask=blocked.repeat_interleave(2, dim=0)))
        assert torch.allclose(model(tokens, causal=True), expected, atol=1e-6)


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


@pytest.mark.parametrize("ema_decay", [0.0, 0.9], ids=["weights", "average"])
def test_a_restarted_run_resumes_where_it_stopped_and_matches_an_unbroken_one(ema_decay):
    rows = (np.arange(9)[None, :] + np.arange(64)[:, None]) % 20 + 1
    config = TrainConfig(batch_size=16, lr=5e-3, patience=100, ema_decay=ema_decay)

    def validate(m):
        with torch.no_grad():
            return -float(sum(p.abs().sum() for p in m.parameters()))  # any deterministic score

    def fresh_model():
        torch.manual_seed(0)
        return SequenceEncoder(20, CONFIG)

    unbroken = fresh_model()
    expected = train(unbroken, objective_for("next_item", unbroken), rows, config, epochs=4, validate=validate)

    store: dict = {}  # the state goes through bytes and the weights-only loader, as in the artifact store
    checkpoints = Checkpoints(
        save=lambda state: store.update(state=checkpoint_bytes(state)),
        load=lambda: read_checkpoint(store["state"], "checkpoint") if "state" in store else None,
    )
    first = fresh_model()
    train(first, objective_for("next_item", first), rows, config, epochs=2, validate=validate, checkpoints=checkpoints)
    assert read_checkpoint(store["state"], "checkpoint")["result"]["epochs_run"] == 2  # the task "dies" here

    restarted = fresh_model()
    resumed = train(
        restarted, objective_for("next_item", restarted), rows, config, epochs=4, validate=validate, checkpoints=checkpoints
    )
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert [round(h["loss"], 6) for h in resumed.history] == [round(h["loss"], 6) for h in expected.history]
    for a, b in zip(unbroken.state_dict().values(), restarted.state_dict().values(), strict=True):
        assert torch.allclose(a, b)


def test_with_ema_validation_and_the_kept_model_use_the_average_of_the_weights(monkeypatch):
    rows = (np.arange(9)[None, :] + np.arange(64)[:, None]) % 20 + 1
    seen = []

    def validate(m):  # records what validation saw, and scores the first epoch best
        seen.append({k: v.clone() for k, v in m.state_dict().items()})
        return -len(seen)

    torch.manual_seed(0)
    model = SequenceEncoder(20, CONFIG)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(batch_size=16, lr=5e-3, patience=100, ema_decay=0.5)
    steps = []  # the weights after each step, to average by hand
    original_step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        out = original_step(self, *args, **kwargs)
        steps.append({k: v.clone() for k, v in model.state_dict().items()})
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    train(model, objective_for("next_item", model), rows, config, epochs=2, validate=validate)
    per_epoch = len(steps) // 2
    name = "item_embedding.weight"
    average = start[name]
    for state in steps[:per_epoch]:
        average = 0.5 * average + 0.5 * state[name]
    assert torch.allclose(seen[0][name], average, atol=1e-6)  # validated the average, not the last step
    assert not torch.allclose(seen[0][name], steps[per_epoch - 1][name])
    assert torch.allclose(model.state_dict()[name], seen[0][name])  # the best epoch's average is kept


def test_next_item_switches_to_a_sampled_softmax_above_the_configured_catalogue_size():
    model = SequenceEncoder(20, CONFIG)
    counts = np.arange(21, dtype=float)
    assert make_objective("next_item", model, 0.2, item_counts=counts, sampled_softmax_above=50).name == "next_item"
    sampled = make_objective("next_item", model, 0.2, item_counts=counts, sampled_softmax_above=19, negatives=8)
    assert sampled.name == "next_item_sampled" and sampled.negatives == 8 and sampled.sampler == "popularity"
    assert torch.allclose(sampled.log_frequency.exp()[1:].sum(), torch.tensor(1.0))


def test_sampled_softmax_learns_the_same_ranking_as_the_full_one():
    # runs of consecutive items: the next item is always the current one + 1
    rows = (np.arange(9)[None, :] + np.arange(64)[:, None]) % 20 + 1
    tokens = torch.as_tensor(rows[:, :-1][:, -CONFIG.max_len :])
    for name in ("next_item", "next_item_sampled"):
        model = SequenceEncoder(20, CONFIG)
        objective = make_objective(name, model, 0.2, item_counts=np.bincount(rows.ravel(), minlength=21), negatives=4)
        train(model, objective, rows, TrainConfig(batch_size=16, lr=5e-3), epochs=40)
        with torch.no_grad():
            top = model.item_logits(model.last_hidden(tokens)).argmax(1)
        assert (top == torch.as_tensor(rows[:, -1])).float().mean() > 0.9, name


def test_the_popularity_sampler_draws_in_proportion_to_training_events_and_still_learns_the_ranking():
    counts = np.zeros(21)
    counts[1:] = np.r_[[1000.0] * 2, [1.0] * 18]  # two items hold nearly every event
    model = SequenceEncoder(20, CONFIG)
    objective = make_objective("next_item_sampled", model, 0.2, item_counts=counts, negatives=4000)
    drawn, _ = objective.draw(20, torch.Generator().manual_seed(0))
    assert ((drawn == 1) | (drawn == 2)).float().mean() > 0.9  # uniform would give 0.1
    uniform = make_objective("next_item_sampled", model, 0.2, item_counts=counts, negatives=4000, sampler="uniform")
    assert ((uniform.draw(20, torch.Generator().manual_seed(0))[0] <= 2).float().mean()) < 0.15

    rows = (np.arange(9)[None, :] + np.arange(64)[:, None]) % 20 + 1  # the next item is the current one + 1
    tokens = torch.as_tensor(rows[:, :-1][:, -CONFIG.max_len :])
    skewed = np.bincount(rows.ravel(), minlength=21).astype(float)
    skewed[1:4] *= 50  # a popularity the ranking must not follow: logQ takes the sampler's bias out
    model = SequenceEncoder(20, CONFIG)
    train(model, make_objective("next_item_sampled", model, 0.2, item_counts=skewed, negatives=4), rows,
          TrainConfig(batch_size=16, lr=5e-3), epochs=40)
    with torch.no_grad():
        top = model.item_logits(model.last_hidden(tokens)).argmax(1)
    assert (top == torch.as_tensor(rows[:, -1])).float().mean() > 0.9


def test_fine_tuning_keeps_configured_self_supervised_objectives_as_weighted_auxiliary_losses():
    model = SequenceEncoder(20, CONFIG)
    counts = np.ones(21)
    plain = finetune_objective(model, TrainConfig(), counts)
    assert plain.name == "next_item"
    config = TrainConfig(auxiliary="contrastive+attribute", auxiliary_weight=0.25)
    objective = finetune_objective(model, config, counts, ATTRIBUTES, ITEM_IDS)
    assert objective.name == "next_item+0.25*contrastive+attribute"
    batch, seed = torch.as_tensor(sequences()), 3
    total = objective.loss(model.eval(), batch, torch.Generator().manual_seed(seed))
    main = plain.loss(model, batch, torch.Generator().manual_seed(seed))
    auxiliary = objective.parts[1].loss(model, batch, torch.Generator().manual_seed(seed))  # same draws: main uses none
    assert torch.allclose(total, main + 0.25 * auxiliary)
    result = train(model, objective, sequences(), TrainConfig(batch_size=8, lr=5e-3), epochs=3)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    with pytest.raises(ValueError, match="needs item attributes"):
        finetune_objective(model, TrainConfig(auxiliary="attribute"), counts)


def test_the_attribute_objective_teaches_item_embeddings_their_attributes():
    model = SequenceEncoder(20, CONFIG)
    objective = objective_for("attribute", model)
    train(model, objective, sequences(n_users=64), TrainConfig(batch_size=16, lr=1e-2), epochs=30)
    with torch.no_grad():
        logits = objective.attribute_logits(objective.associate(model.item_embedding.weight[1:21]))  # (20, 7)
    top_two = logits.topk(2, dim=1).indices
    truth = objective.item_attributes[1:21]
    assert truth.gather(1, top_two).mean() > 0.9  # each item's brand and category, read off its embedding


def test_a_checkpoint_saved_before_the_model_options_existed_loads_as_it_was_trained():
    plain = SequenceEncoder(20, CONFIG)
    saved = plain.checkpoint()
    saved["model_config"] = {k: v for k, v in saved["model_config"].items()
                             if k not in ("frequency_mix", "frequencies", "attention_sink")}  # an older release's file
    loaded = SequenceEncoder.from_checkpoint(saved)
    assert loaded.config.frequency_mix == 0.0 and not loaded.config.attention_sink
    assert ModelConfig().frequency_mix > 0  # while today's default has the frequency branch
