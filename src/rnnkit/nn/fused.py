"""PyTorch's fused recurrent layers (cuDNN on a GPU, oneDNN/ATen kernels on the CPU), with the two things
rnnkit adds: ``init_state`` (zeros in torch.nn's layout, on the weights' device and dtype) and, for the
LSTM, a float32 fallback under CPU bf16 autocast where this CPU has no bf16 LSTM kernel.

Parameters and state-dict keys are torch.nn's own (``weight_ih_l0``, ...), so these load and save exactly
as ``torch.nn.RNN``/``LSTM``/``GRU`` do.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from .device import cpu_has_bf16_lstm


class _ZeroState:
    state_parts = 1            # h; the LSTM has two, (h, c)

    def init_state(self, batch_size: int):
        h = self.weight_hh_l0.new_zeros(self.num_layers * (2 if self.bidirectional else 1), batch_size,
                                        self.hidden_size)           # (L, B, H)
        return h if self.state_parts == 1 else tuple([h] + [h.clone() for _ in range(self.state_parts - 1)])


class RNN(_ZeroState, nn.RNN):
    """torch.nn.RNN (tanh)."""


class GRU(_ZeroState, nn.GRU):
    """torch.nn.GRU."""


class LSTM(_ZeroState, nn.LSTM):
    """torch.nn.LSTM that, under CPU autocast, runs in float32 where this CPU has no bf16 LSTM kernel (see
    ``device.cpu_has_bf16_lstm``), instead of failing. Takes PackedSequences too."""

    state_parts = 2

    def forward(self, x, hx=None):
        data = x.data if isinstance(x, PackedSequence) else x
        if (data.device.type == "cpu" and torch.is_autocast_enabled("cpu")
                and not (torch.get_autocast_dtype("cpu") == torch.bfloat16 and cpu_has_bf16_lstm())):
            with torch.autocast("cpu", enabled=False):
                hx = None if hx is None else tuple(h.float() for h in hx)
                return super().forward(x.float(), hx)
        return super().forward(x, hx)
