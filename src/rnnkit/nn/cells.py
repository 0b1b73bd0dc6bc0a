"""From-scratch recurrent cells, written as their equations.

Every cell shares one step signature, ``forward(x_t, state) -> state``, and splits it in two so an
unroller can batch the work that does not depend on time:

    project(x)          the input half of every gate, W_i· x + b_i· (+ b_h· where it only adds), for any
                        leading shape: one matmul for all time steps at once
    recur(xp_t, state)  the recurrence: combines one step's projected input with the previous state
    unroll(xp, state)   ``recur`` over every step of xp (B, T, G·H) -> (out (B, T, H), final state); a cell
                        may run it another way that computes the same (the LSTM's hand-written BPTT)

A cell's state is what ``init_state`` returns: one tensor (B, H), or a tuple of tensors in the order its
registry entry names them (``nn/registry.py``); the layer's output at each step is ``output(state)``, the
first part.

Parameter names and gate orders follow ``torch.nn.RNNCell``/``LSTMCell``/``GRUCell`` (weight_ih, weight_hh,
bias_ih, bias_hh; LSTM gates i, f, g, o; GRU gates r, z, n), so weights copy across unchanged and the
fused layers serve as the numerical reference (tests/nn/test_cells.py, tests/nn/test_recurrent.py).
Shapes: x_t (B, I), h and c (B, H), xp_t (B, G·H) with G the number of gate blocks.

Why the steps look terse: on a CPU with small batches, a step costs what its *number* of tensor operations
costs (each one is a few microseconds of dispatch, forward and backward), not its arithmetic. So the
recurrent matmul and its additions are one ``addmm``, the three LSTM sigmoids are one call, and the GRU's
final mix is one ``lerp``. The equations are unchanged; each line says which one it computes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import bptt


class Cell(nn.Module):
    gates = 1              # how many H-wide blocks the input and recurrent projections produce
    fold_hh_bias = True    # b_hh only ever adds to b_ih, so it joins the input projection (not for GRU)

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        g = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g, input_size))
        self.weight_hh = nn.Parameter(torch.empty(g, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(g)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(g)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same initialisation as torch.nn's recurrent layers: U(-1/sqrt(H), 1/sqrt(H)) everywhere.
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias_ih
        if bias is not None and self.fold_hh_bias:
            bias = bias + self.bias_hh
        return F.linear(x, self.weight_ih, bias)                    # (..., G·H)

    def forward(self, x_t: torch.Tensor, state):
        return self.recur(self.project(x_t), state)

    def recur(self, xp_t: torch.Tensor, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def output(self, state) -> torch.Tensor:
        return state[0] if isinstance(state, tuple) else state     # (B, H): the first part, h

    def unroll(self, xp: torch.Tensor, state):
        outs = []
        for xp_t in xp.unbind(1):                                   # (B, G·H) per step
            state = self.recur(xp_t, state)
            outs.append(self.output(state))
        return torch.stack(outs, dim=1), state                      # (B, T, H)

    def init_state(self, batch_size: int):
        return self.weight_hh.new_zeros(batch_size, self.hidden_size)


class ElmanCell(Cell):
    """Mikolov et al. 2010, "Recurrent neural network based language model", eq. (1)-(2):

        x(t) = [w(t), s(t-1)]        s(t) = sigmoid(V·x(t)) = sigmoid(U·w(t) + W·s(t-1))

    Multiplying the joined vector by one matrix V = [U W] is the same as U·w(t) + W·s(t-1), which is what
    is computed here, biases added as in torch's layers. PyTorch has no sigmoid RNN, so this cell is always
    rnnkit's own.
    """

    def recur(self, xp_t, s):
        return torch.addmm(xp_t, s, self.weight_hh.t()).sigmoid()     # s(t) = σ(U w + b + W s(t-1))


class RNNCell(Cell):
    """The tanh RNN (Elman 1990 with a tanh non-linearity), as torch.nn.RNNCell:

        h' = tanh(W_ih x + b_ih + W_hh h + b_hh)
    """

    def recur(self, xp_t, h):
        return torch.addmm(xp_t, h, self.weight_hh.t()).tanh()        # h' = tanh(W_ih x + b + W_hh h)


class LSTMCell(Cell):
    """Long short-term memory (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000), as
    torch.nn.LSTMCell: with a_· = W_i· x + b_i· + W_h· h + b_h·,

        i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)   c' = f ⊙ c + i ⊙ g   h' = o ⊙ tanh(c')
    """

    gates = 4

    def recur(self, xp_t, state):
        h, c = state
        H = self.hidden_size
        a = torch.addmm(xp_t, h, self.weight_hh.t())                  # (B, 4H): a_i a_f a_g a_o
        s = a.sigmoid()                                               # one call for the three σ gates
        i = s[:, :H]                        # input gate:  how much of the candidate to write
        f = s[:, H:2 * H]                   # forget gate: how much of the old cell to keep
        g = a[:, 2 * H:3 * H].tanh()        # candidate cell content
        o = s[:, 3 * H:]                    # output gate: how much of the cell to expose
        c = torch.addcmul(f * c, i, g)      # c' = f ⊙ c + i ⊙ g
        h = o * c.tanh()                    # h' = o ⊙ tanh(c')
        return h, c

    def unroll(self, xp, state):
        if bptt.usable(xp):                 # the same equations with a hand-written backward (small CPU batches)
            out, h, c = bptt.lstm_layer(xp, self.weight_hh, *state)
            return out, (h, c)
        return super().unroll(xp, state)

    def init_state(self, batch_size: int):
        h = self.weight_hh.new_zeros(batch_size, self.hidden_size)
        return h, h.clone()


class GRUCell(Cell):
    """Gated recurrent unit (Cho et al. 2014), in torch.nn.GRUCell's form (reset applied after W_hn h):

        r = σ(W_ir x + b_ir + W_hr h + b_hr)      z = σ(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))      h' = (1 - z) ⊙ n + z ⊙ h
    """

    gates = 3
    fold_hh_bias = False     # b_hn sits inside r ⊙ (...), so b_hh cannot join the input projection

    def recur(self, xp_t, h):
        H = self.hidden_size
        hp = F.linear(h, self.weight_hh, self.bias_hh)                # (B, 3H): W_h· h + b_h·
        rz = (xp_t[:, :2 * H] + hp[:, :2 * H]).sigmoid()
        r = rz[:, :H]                       # reset gate: how much of the past enters the candidate
        z = rz[:, H:]                       # update gate: how much of the old state to keep
        n = torch.tanh(xp_t[:, 2 * H:] + r * hp[:, 2 * H:])          # candidate state
        return torch.lerp(n, h.to(n.dtype), z)   # h' = n + z ⊙ (h - n); under bf16 autocast n is bf16, h fp32 at first
