"""Seed 002's check, executable: compute torch.nn.RNN's forward pass by hand, one time step at a time.

    python docs/examples/manual_rnn_forward.py

A one-layer tanh RNN computes, for t = 1..T (PyTorch stores W_ih as (H, I), so x_t·W_ihᵀ):

    h_t = tanh(x_t·W_ihᵀ + b_ih + h_{t-1}·W_hhᵀ + b_hh),    h_0 = 0

The script builds the same layer the seed builds (seed 1, 5 inputs, 2 hidden units, batch first), feeds it
the sequence [1,1,1,1,1], [2,2,2,2,2], [3,3,3,3,3], and asserts that

  1. the hand-written loop gives nn.RNN's outputs and final state,
  2. they are the figures the seed prints (torch.manual_seed(1) still draws the same weights),
  3. rnnkit's own RNNCell, unrolled over the steps, gives them too,
  4. the loop as the seed's text prints it (b_hh added twice, b_ih never) does NOT: its printed "Hidden"
     row is x_t·W_ihᵀ + b_ih, so the book's code used b_ih there and the transcription lost it.

It exits with an AssertionError if any of these stops being true; tests/test_seeds_docs.py runs it.
"""

import torch
from torch import nn

from rnnkit.nn.cells import RNNCell

torch.manual_seed(1)
layer = nn.RNN(input_size=5, hidden_size=2, num_layers=1, batch_first=True)
W_ih, W_hh = layer.weight_ih_l0.detach(), layer.weight_hh_l0.detach()     # (2, 5), (2, 2)
b_ih, b_hh = layer.bias_ih_l0.detach(), layer.bias_hh_l0.detach()         # (2,), (2,)

x = torch.tensor([[1.0] * 5, [2.0] * 5, [3.0] * 5])                       # (T=3, I=5)
with torch.no_grad():
    out, h_n = layer(x[None])                                             # (1, 3, 2), (1, 1, 2)

h = torch.zeros(1, 2)                                                     # h_0
manual = []
for t in range(3):
    x_t = x[t:t + 1]                                                      # (1, 5)
    a_t = x_t @ W_ih.T + b_ih                                             # input part of the pre-activation
    h = torch.tanh(a_t + h @ W_hh.T + b_hh)                               # h_t
    manual.append(h)
    print(f"t={t}  x·W_ihᵀ+b_ih {a_t.numpy().round(7)}  manual h {h.numpy().round(7)}  "
          f"nn.RNN {out[:, t].numpy().round(7)}")
manual = torch.cat(manual)                                                # (3, 2)

# 1. the equation is what nn.RNN computes
torch.testing.assert_close(manual, out[0])
torch.testing.assert_close(h, h_n[0])

# 2. the seed's printed outputs, to the digits it prints
seed_printed = torch.tensor([[-0.3519801, 0.52525216], [-0.68424344, 0.76074266], [-0.8649416, 0.90466356]])
torch.testing.assert_close(manual, seed_printed, rtol=0, atol=1e-6)

# 3. rnnkit's scratch cell with the layer's weights, stepped by hand
cell = RNNCell(5, 2)
with torch.no_grad():
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(cell, name).copy_(getattr(layer, f"{name}_l0"))
    h_cell = cell.init_state(1)
    steps = []
    for t in range(3):
        h_cell = cell(x[t:t + 1], h_cell)
        steps.append(h_cell)
torch.testing.assert_close(torch.cat(steps), out[0])

# 4. the transcribed loop (b_hh where b_ih belongs) gives different numbers
h = torch.zeros(1, 2)
as_transcribed = []
for t in range(3):
    h = torch.tanh(x[t:t + 1] @ W_ih.T + b_hh + h @ W_hh.T + b_hh)
    as_transcribed.append(h)
assert not torch.allclose(torch.cat(as_transcribed), out[0], atol=1e-3)

print("manual forward == nn.RNN == seed 002's printed figures == rnnkit RNNCell: OK")
