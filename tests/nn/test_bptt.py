"""bptt.py: the hand-written LSTM backward against autograd through LSTMCell, and its workspace's safety."""

from __future__ import annotations

import pytest
import torch

from rnnkit.nn import bptt
from rnnkit.nn.cells import LSTMCell


def cell_loop(xp, weight_hh, h0, c0, H):
    """The reference: LSTMCell.recur step by step, differentiated by autograd."""
    cell = LSTMCell(1, H).to(xp.dtype)
    del cell.weight_hh                                          # recur reads the given tensor instead
    cell.weight_hh = weight_hh
    s, outs = (h0, c0), []
    for xp_t in xp.unbind(1):
        s = cell.recur(xp_t, s)
        outs.append(s[0])
    return torch.stack(outs, 1), s[0], s[1]


def inputs(B=3, T=6, H=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype).requires_grad_()
    return mk(B, T, 4 * H), mk(4 * H, H), mk(B, H), mk(B, H)


@pytest.mark.parametrize("B,T,H", [(3, 6, 4), (1, 1, 5), (1, 7, 4), (2, 9, 3)])
def test_gradcheck_float64(B, T, H):
    assert torch.autograd.gradcheck(bptt.lstm_layer, inputs(B, T, H))


@pytest.mark.parametrize("use", [(True, True, True), (True, False, False), (False, True, False), (False, False, True)])
def test_matches_autograd_through_the_cell(use):
    """Outputs and every gradient equal autograd's through LSTMCell.recur, whichever outputs the loss uses."""
    H = 5
    args = inputs(B=2, T=7, H=H, dtype=torch.float32, seed=1)
    ours, ref = bptt.lstm_layer(*args), cell_loop(*args, H)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    w = [torch.randn_like(r) for r in ref]
    loss = lambda outs: sum((o * wi).sum() for o, wi, u in zip(outs, w, use) if u)
    got = torch.autograd.grad(loss(ours), args)
    want = torch.autograd.grad(loss(ref), args)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_two_graphs_in_flight_each_get_their_own_workspace():
    """Forward twice, then backward both (gradient accumulation): each backward sees its own forward."""
    H = 4
    a, b = inputs(seed=2), inputs(seed=3)
    outs_a, outs_b = bptt.lstm_layer(*a), bptt.lstm_layer(*b)
    grads_a = torch.autograd.grad(outs_a[0].sum(), a)
    grads_b = torch.autograd.grad(outs_b[0].sum(), b)
    for args, grads in ((a, grads_a), (b, grads_b)):
        want = torch.autograd.grad(cell_loop(*args, H)[0].sum(), args)
        for g, w in zip(grads, want):
            torch.testing.assert_close(g, w)


def test_outputs_are_not_overwritten_by_the_next_call():
    a = inputs(seed=4)
    with torch.no_grad():
        first = [t.clone() for t in bptt.lstm_layer(*a)]
        kept = bptt.lstm_layer(*a)
        bptt.lstm_layer(*inputs(seed=5))                          # same shape: reuses the workspace
    for k, f in zip(kept, first):
        assert torch.equal(k, f)


def test_a_workspace_made_under_inference_mode_serves_training():
    """Evaluation (inference_mode) first, then training on the same shape: the kept buffers must be
    normal tensors, and both passes give autograd's numbers."""
    args = inputs(seed=8, dtype=torch.float32)
    bptt.workspaces().clear()
    with torch.inference_mode():
        evaluated = bptt.lstm_layer(*args)[0]
    out = bptt.lstm_layer(*args)[0]
    torch.testing.assert_close(evaluated, out)
    got = torch.autograd.grad(out.sum(), args)
    want = torch.autograd.grad(cell_loop(*args, 4)[0].sum(), args)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_a_second_backward_after_the_workspace_was_reused_fails_loudly():
    """retain_graph=True, then another forward of the same shape, then backward again: autograd's version
    check must refuse, not return gradients computed from the other forward's values."""
    a = inputs(seed=6)
    out = bptt.lstm_layer(*a)[0].sum()
    out.backward(retain_graph=True)
    bptt.lstm_layer(*inputs(seed=7))[0].sum().backward()
    with pytest.raises(RuntimeError, match="ran forward again on this shape before this graph.s backward"):
        out.backward()


def test_workspaces_are_bounded():
    bptt.workspaces().clear()
    for T in range(1, bptt._CACHE_SHAPES + 5):
        with torch.no_grad():
            bptt.lstm_layer(*(t.detach() for t in inputs(B=1, T=T, H=3)))
    assert len(bptt.workspaces()) == bptt._CACHE_SHAPES
    big_T = bptt._CACHE_BYTES // (31 * 8 * 8) + 1                 # B=1, H=8, float64: over the cap
    with torch.no_grad():
        bptt.lstm_layer(*(t.detach() for t in inputs(B=1, T=big_T, H=8)))
    assert all(key[0] != big_T for key in bptt.workspaces())


def test_used_where_it_pays():
    x = torch.zeros(2, 3, 16)
    assert bptt.usable(x) and bptt.usable(x.double())
    assert not bptt.usable(x.half())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not bptt.usable(x)
    assert not bptt.usable(torch.zeros(64, 40, 4 * 512))          # large batches keep autograd's loop
