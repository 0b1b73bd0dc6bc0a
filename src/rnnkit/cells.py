"""From-scratch recurrent cells, written as their equations.

Every cell shares one step signature, ``forward(x_t, state) -> state``, and splits it in two so an
unroller can batch the work that does not depend on time:

    project(x)          the input half of every gate, W_i· x + b_i·, for any leading shape (one matmul
                        for all time steps at once)
    recur(xp_t, state)  the recurrence: combines one step's projected input with the previous state

Parameter names and gate orders follow ``torch.nn.RNNCell``/``LSTMCell``/``GRUCell`` (weight_ih, weight_hh,
bias_ih, bias_hh; LSTM gates i, f, g, o; GRU gates r, z, n), so weights copy across unchanged and the
fused layers serve as the numerical reference. Shapes: x_t (B, I), h and c (B, H).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _Cell(nn.Module):
    gates = 1  # how many H-wide blocks the input and recurrent projections produce

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
        return F.linear(x, self.weight_ih, self.bias_ih)            # (..., G·H)

    def forward(self, x_t: torch.Tensor, state):
        return self.recur(self.project(x_t), state)

    def recur(self, xp_t: torch.Tensor, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def init_state(self, batch_size: int):
        return self.weight_hh.new_zeros(batch_size, self.hidden_size)


class ElmanCell(_Cell):
    """Mikolov et al. 2010, "Recurrent neural network based language model", eq. (2):

        s(t) = sigmoid(U·w(t) + W·s(t-1))

    The paper's input x(t) is the one-hot word w(t) joined with s(t-1); multiplying that joined vector by
    one matrix is the same as U·w(t) + W·s(t-1), which is what is computed here (biases added, as in
    torch's layers). PyTorch has no sigmoid RNN, so this cell is always rnnkit's own.
    """

    def recur(self, xp_t, h):
        return torch.sigmoid(xp_t + F.linear(h, self.weight_hh, self.bias_hh))     # s(t)


class RNNCell(_Cell):
    """The tanh RNN (Elman 1990 with a tanh non-linearity), as torch.nn.RNNCell:

        h' = tanh(W_ih x + b_ih + W_hh h + b_hh)
    """

    def recur(self, xp_t, h):
        return torch.tanh(xp_t + F.linear(h, self.weight_hh, self.bias_hh))


class LSTMCell(_Cell):
    """Long short-term memory (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000)."""

    gates = 4

    def recur(self, xp_t, state):
        h, c = state
        xi, xf, xg, xo = xp_t.chunk(4, dim=-1)
        hi, hf, hg, ho = F.linear(h, self.weight_hh, self.bias_hh).chunk(4, dim=-1)
        i = torch.sigmoid(xi + hi)          # input gate:  how much of the candidate to write
        f = torch.sigmoid(xf + hf)          # forget gate: how much of the old cell to keep
        g = torch.tanh(xg + hg)             # candidate cell content
        o = torch.sigmoid(xo + ho)          # output gate: how much of the cell to expose
        c = f * c + i * g                   # c' = f ⊙ c + i ⊙ g
        h = o * torch.tanh(c)               # h' = o ⊙ tanh(c')
        return h, c

    def init_state(self, batch_size: int):
        h = self.weight_hh.new_zeros(batch_size, self.hidden_size)
        return h, h.clone()


class GRUCell(_Cell):
    """Gated recurrent unit (Cho et al. 2014), in torch.nn.GRUCell's form (reset applied after W_hn h)."""

    gates = 3

    def recur(self, xp_t, h):
        xr, xz, xn = xp_t.chunk(3, dim=-1)
        hr, hz, hn = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)          # reset gate: how much of the past enters the candidate
        z = torch.sigmoid(xz + hz)          # update gate: how much of the old state to keep
        n = torch.tanh(xn + r * hn)         # candidate state
        return (1 - z) * n + z * h          # h' = (1 - z) ⊙ n + z ⊙ h


CELLS = {"elman": ElmanCell, "rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
