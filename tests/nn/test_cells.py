"""The scratch cells against their references: torch.nn's cells, gradcheck, and Mikolov 2010's equation."""

import pytest
import torch
from torch import nn

from rnnkit.nn import registry
from rnnkit.nn.cells import ElmanCell, GRUCell, LSTMCell, RNNCell

CELLS = {name: registry.get(name).scratch for name in registry.names() if not registry.get(name).scan}   # blocks: test_blocks.py

TORCH_CELLS = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}
B, I, H = 3, 5, 4


def copy_from(ref: nn.Module, cell: nn.Module) -> None:
    with torch.no_grad():
        for name, p in ref.named_parameters():
            getattr(cell, name).copy_(p)


def random_state(cell_name: str):
    h = torch.randn(B, H)
    return (h, torch.randn(B, H)) if cell_name == "lstm" else h


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_matches_torch_cell_outputs_and_gradients(name, bias):
    torch.manual_seed(0)
    ref = TORCH_CELLS[name](I, H, bias=bias)
    cell = CELLS[name](I, H, bias=bias)
    copy_from(ref, cell)
    assert sorted(n for n, _ in cell.named_parameters()) == sorted(n for n, _ in ref.named_parameters())

    x = torch.randn(B, I, requires_grad=True)
    state = random_state(name)
    want = as_tuple(ref(x, state))
    got = as_tuple(cell(x, state))
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)

    # Gradients of an arbitrary scalar of every output, for the input and every parameter.
    weights = [torch.randn(B, H) for _ in want]
    (gx_ref, *gp_ref) = torch.autograd.grad(sum((w * o).sum() for w, o in zip(weights, want)),
                                            [x, *ref.parameters()])
    (gx, *gp) = torch.autograd.grad(sum((w * o).sum() for w, o in zip(weights, got)),
                                    [x, *(dict(cell.named_parameters())[n] for n, _ in ref.named_parameters())])
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(gp, gp_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_gradcheck_float64(name):
    """Analytic gradients (input, state and every parameter) against finite differences."""
    torch.manual_seed(1)
    cell = CELLS[name](3, 2).double()
    names = [n for n, _ in cell.named_parameters()]
    h = torch.randn(2, 2, dtype=torch.float64)
    state = (h, torch.randn(2, 2, dtype=torch.float64)) if name == "lstm" else (h,)
    x = torch.randn(2, 3, dtype=torch.float64)
    params = [p.detach().clone() for p in cell.parameters()]

    def step(x, *rest):
        s, ps = rest[:len(state)], rest[len(state):]
        return torch.func.functional_call(cell, dict(zip(names, ps)), (x, s if name == "lstm" else s[0]))

    inputs = tuple(t.requires_grad_() for t in (x, *state, *params))
    assert torch.autograd.gradcheck(step, inputs)


def test_elman_is_mikolov_2010_equation():
    """s(t) = sigmoid(U·w(t) + W·s(t-1)): one-hot word, previous state, no biases (the paper's form)."""
    torch.manual_seed(2)
    V = 7
    cell = ElmanCell(V, H, bias=False)
    U, W = cell.weight_ih.detach(), cell.weight_hh.detach()
    words = torch.tensor([3, 0, 6])
    s = torch.full((H,), 0.1)                                       # s(0): a small vector, as the paper says
    for w in words:
        onehot = torch.zeros(V)
        onehot[w] = 1.0
        want = 1.0 / (1.0 + torch.exp(-(U @ onehot + W @ s)))       # the equation, written out
        got = cell(onehot[None], s[None])[0]
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
        s = want


def test_elman_equals_one_matrix_on_joined_input():
    """The paper's x(t) = [w(t), s(t-1)] times one matrix (seed 000's nn.Linear on a concatenation)."""
    torch.manual_seed(3)
    V = 6
    joined = nn.Linear(V + H, H)                                    # seed 000 joins w(t) then s(t-1)
    cell = ElmanCell(V, H)
    with torch.no_grad():
        cell.weight_ih.copy_(joined.weight[:, :V])
        cell.weight_hh.copy_(joined.weight[:, V:])
        cell.bias_ih.copy_(joined.bias)
        cell.bias_hh.zero_()
    w = nn.functional.one_hot(torch.tensor([1, 4, 5]), V).float()
    s = torch.rand(3, H)
    torch.testing.assert_close(cell(w, s), torch.sigmoid(joined(torch.cat([w, s], dim=-1))))


def test_elman_is_sigmoid_where_rnn_is_tanh():
    """σ(a) = (1 + tanh(a/2)) / 2: the Elman cell equals a tanh cell with halved weights, rescaled."""
    torch.manual_seed(4)
    elman, rnn = ElmanCell(I, H), RNNCell(I, H)
    with torch.no_grad():
        for name, p in elman.named_parameters():
            getattr(rnn, name).copy_(p / 2)
    x, h = torch.randn(B, I) * 3, torch.rand(B, H)
    s = elman(x, h)
    assert ((s > 0) & (s < 1)).all()
    torch.testing.assert_close(s, (1 + rnn(x, h)) / 2)


def test_init_matches_torch_bounds_and_state_follows_weights():
    cell = LSTMCell(I, 16).double()
    bound = 1 / 16 ** 0.5
    assert all(p.abs().max() <= bound for p in cell.parameters())
    h, c = cell.init_state(2)
    assert h.shape == c.shape == (2, 16) and h.dtype == torch.float64 and not h.abs().any()
    assert h.data_ptr() != c.data_ptr()
    assert GRUCell(I, 8).init_state(3).shape == (3, 8)
