"""One time step of ATen's CPU recurrent cells (aten/src/ATen/native/RNN.cpp: SimpleCell, LSTMCell,
GRUCell), written with the same operations in the same order, so that a step computed here equals, bit for
bit, a step of torch.nn.RNN/LSTM/GRU on ATen's native CPU kernels. The fast batch-1 generation path
(``inference/fast.py``) runs these.

``hh`` = W_hh h + b_hh (a fresh tensor, updated in place as ATen does), ``xw`` = W_ih x + b_ih (never
modified: it may be a cached row). Each returns ``(h', c')``, with ``c'`` None for cells without a cell state.
"""

from __future__ import annotations

import torch


def rnn_step(hh: torch.Tensor, xw: torch.Tensor, h: torch.Tensor, c=None):
    h = torch.tanh(hh.add_(xw))                                     # h' = tanh(W_ih x + b_ih + W_hh h + b_hh)
    return h, None


def lstm_step(hh: torch.Tensor, xw: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    i, f, g, o = hh.add_(xw).unsafe_chunk(4, 1)                     # (B, H) each: gates i, f, g, o
    i, f, g, o = i.sigmoid_(), f.sigmoid_(), g.tanh_(), o.sigmoid_()
    c = (f * c).add_(i * g)                                         # c' = f ⊙ c + i ⊙ g
    return o * c.tanh(), c                                          # h' = o ⊙ tanh(c')


def gru_step(hh: torch.Tensor, xw: torch.Tensor, h: torch.Tensor, c=None):
    xr, xz, xn = xw.unsafe_chunk(3, 1)
    hr, hz, hn = hh.unsafe_chunk(3, 1)
    r = hr.add_(xr).sigmoid_()                                      # reset gate
    z = hz.add_(xz).sigmoid_()                                      # update gate
    n = xn.add(hn.mul_(r)).tanh_()                                  # candidate: tanh(W_in x + r ⊙ (W_hn h + b_hn))
    return (h - n).mul_(z).add_(n), None                            # h' = z ⊙ h + (1 - z) ⊙ n, as (h - n) z + n
