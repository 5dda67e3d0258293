"""The chunked catalogue cross-entropy gives what `F.cross_entropy` gives: loss and gradients."""

import pytest
import torch
import torch.nn.functional as F

from recsys_tasks.learning.softmax import catalogue_cross_entropy, chunk_rows


def reference(hidden, weight, targets, scale=None):
    """What the objectives computed before: logits over padding + items, padding at -inf."""
    logits = hidden @ torch.cat([weight[:1] * 0, weight]).T
    logits[:, 0] = float("-inf")
    losses = F.cross_entropy(logits, targets + 1, reduction="none")
    return (losses if scale is None else losses * scale).sum()


def inputs(n=11, classes=7, d=5, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g, dtype=dtype).requires_grad_()
    weight = torch.randn(classes, d, generator=g, dtype=dtype).requires_grad_()
    targets = torch.randint(0, classes, (n,), generator=g)
    return hidden, weight, targets


@pytest.mark.parametrize("rows", [1, 3, 4, 11, 50])  # chunks of one, uneven last chunk, one chunk
@pytest.mark.parametrize("weighted", [False, True])
def test_same_loss_and_gradients_as_cross_entropy_whatever_the_chunks(rows, weighted):
    hidden, weight, targets = inputs()
    scale = torch.rand(len(targets)) * 2 if weighted else None
    expected = reference(hidden, weight, targets, scale)
    expected_grads = torch.autograd.grad(expected, (hidden, weight))
    got = catalogue_cross_entropy(hidden, weight, targets, scale, rows=rows)
    got_grads = torch.autograd.grad(got * 1.0, (hidden, weight))
    torch.testing.assert_close(got, expected)
    for g, e in zip(got_grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e)


def test_exact_in_float64_and_backward_runs_once():
    hidden, weight, targets = inputs(n=9, classes=6, d=3, dtype=torch.float64)
    scale = torch.rand(9, dtype=torch.float64)
    expected = torch.autograd.grad(reference(hidden, weight, targets, scale), (hidden, weight))
    loss = catalogue_cross_entropy(hidden, weight, targets, scale, rows=4)
    got = torch.autograd.grad(loss, (hidden, weight), retain_graph=True)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)
    with pytest.raises(RuntimeError, match="backward runs once"):
        torch.autograd.grad(loss, (hidden, weight))


def test_under_bf16_autocast_the_softmax_stays_float32_and_gradients_keep_their_dtype():
    hidden, weight, targets = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = catalogue_cross_entropy(hidden.bfloat16(), weight, targets)
    assert got.dtype == torch.float32
    grad_h, grad_w = torch.autograd.grad(got, (hidden, weight))
    assert grad_h.dtype == torch.float32 and grad_w.dtype == torch.float32
    torch.testing.assert_close(got, reference(hidden, weight, targets), rtol=2e-2, atol=1e-1)


def test_no_positions_is_a_zero_loss_that_still_backpropagates():
    hidden, weight, _ = inputs(n=0)
    loss = catalogue_cross_entropy(hidden, weight, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(weight.grad == 0)


def test_chunks_hold_a_few_megabytes_on_the_cpu_and_everything_on_an_accelerator():
    assert chunk_rows(1500, 12_000, torch.device("cpu")) == 125
    assert chunk_rows(1500, 10_000_000, torch.device("cpu")) == 1
    assert chunk_rows(1500, 12_000, torch.device("cuda")) == 1500
