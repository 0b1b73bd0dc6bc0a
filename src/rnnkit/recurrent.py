"""Recurrent layers behind one interface: ``forward(x, state) -> (out, state)``, batch first.

``fused``   torch.nn.RNN / LSTM / GRU (cuDNN on GPU, oneDNN/ATen kernels on CPU).
``scratch`` rnnkit's own cells from ``cells.py``, unrolled over time and layers by ``Unrolled``.

State layout is torch.nn's for both: ``h`` of shape (num_layers, B, H), or ``(h, c)`` for the LSTM.
"""

from __future__ import annotations

import functools
import re

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from . import bptt
from .cells import CELLS


@functools.cache
def cpu_has_bf16_lstm() -> bool:
    """Whether torch.nn.LSTM runs under CPU bf16 autocast here. oneDNN's bf16 LSTM needs AVX-512 (with
    bf16 instructions or AMX for speed); elsewhere creating it fails ("could not create a primitive
    descriptor"). Probed once per process, forward and backward, on a 4-unit layer (about a millisecond)."""
    with torch.inference_mode(False), torch.enable_grad():
        probe = nn.LSTM(4, 4, batch_first=True)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                probe(torch.zeros(1, 2, 4))[0].float().sum().backward()
        except RuntimeError:
            return False
    return True


class LSTM(nn.LSTM):
    """torch.nn.LSTM (same parameters and keys) that, under CPU autocast, runs in float32 where this CPU has
    no bf16 LSTM kernel (see ``cpu_has_bf16_lstm``), instead of failing. Takes PackedSequences too."""

    def forward(self, x, hx=None):
        data = x.data if isinstance(x, PackedSequence) else x
        if (data.device.type == "cpu" and torch.is_autocast_enabled("cpu")
                and not (torch.get_autocast_dtype("cpu") == torch.bfloat16 and cpu_has_bf16_lstm())):
            with torch.autocast("cpu", enabled=False):
                hx = None if hx is None else tuple(h.float() for h in hx)
                return super().forward(x.float(), hx)
        return super().forward(x, hx)


FUSED = {"rnn": nn.RNN, "lstm": LSTM, "gru": nn.GRU}


class Unrolled(nn.Module):
    """Any scratch cell run over time and stacked in layers, with dropout between layers.

    Per layer, the input half of every gate is computed for all T steps in one matmul (``project``);
    only the recurrence itself loops over time, one ``recur`` call per step. Where ``bptt.usable`` says so
    (small batches on the CPU, eager float32/64), the LSTM runs the same equations through
    ``bptt.lstm_layer`` instead: a hand-written backward over the whole sequence, far fewer operations
    per step.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, bias: bool = True):
        super().__init__()
        cls = CELLS[cell]
        self.cell, self.hidden_size, self.num_layers, self.dropout = cell, hidden_size, num_layers, dropout
        self.cells = nn.ModuleList(
            cls(input_size if k == 0 else hidden_size, hidden_size, bias) for k in range(num_layers))

    def init_state(self, batch_size: int):
        h = self.cells[0].weight_hh.new_zeros(self.num_layers, batch_size, self.hidden_size)
        return (h, h.clone()) if self.cell == "lstm" else h

    def forward(self, x: torch.Tensor, state=None):
        # x: (B, T, I), state: (L, B, H) or a pair of them -> out: (B, T, H), state like the input's
        if state is None:
            state = self.init_state(x.shape[0])
        lstm = self.cell == "lstm"
        finals = []
        for k, cell in enumerate(self.cells):
            s = (state[0][k], state[1][k]) if lstm else state[k]       # (B, H) each
            xp = cell.project(x)                                        # (B, T, G·H): all steps in one matmul
            if lstm and bptt.usable(xp):                                # same equations, hand-written backward
                x, *s = bptt.lstm_layer(xp, cell.weight_hh, *s)
            else:
                outs = []
                for xp_t in xp.unbind(1):
                    s = cell.recur(xp_t, s)
                    outs.append(s[0] if lstm else s)
                x = torch.stack(outs, dim=1)                            # (B, T, H)
            if self.dropout and self.training and k < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
            finals.append(s)
        if lstm:
            return x, (torch.stack([h for h, _ in finals]), torch.stack([c for _, c in finals]))
        return x, torch.stack(finals)                                   # (L, B, H)


def make_recurrent(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                   dropout: float = 0.0, backend: str = "fused") -> nn.Module:
    """The recurrent stack for ``cell``; ``elman`` exists only as a scratch cell."""
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; choose from {', '.join(CELLS)}")
    dropout = dropout if num_layers > 1 else 0.0
    if backend == "scratch" or cell == "elman":
        return Unrolled(cell, input_size, hidden_size, num_layers, dropout)
    if backend != "fused":
        raise ValueError(f"unknown backend {backend!r}; choose fused or scratch")
    return FUSED[cell](input_size, hidden_size, num_layers, batch_first=True, dropout=dropout)


def is_fused(module: nn.Module) -> bool:
    return isinstance(module, nn.RNNBase)


_FUSED_KEY = re.compile(r"^(.*?)(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)$")
_SCRATCH_KEY = re.compile(r"^(.*?)cells\.(\d+)\.(weight_ih|weight_hh|bias_ih|bias_hh)$")


def fused_to_scratch_keys(state_dict: dict) -> dict:
    """Rename torch.nn's ``weight_ih_l0`` keys to ``Unrolled``'s ``cells.0.weight_ih`` (values shared)."""
    out = {}
    for key, value in state_dict.items():
        m = _FUSED_KEY.match(key)
        out[f"{m.group(1)}cells.{m.group(3)}.{m.group(2)}" if m else key] = value
    return out


def scratch_to_fused_keys(state_dict: dict) -> dict:
    out = {}
    for key, value in state_dict.items():
        m = _SCRATCH_KEY.match(key)
        out[f"{m.group(1)}{m.group(3)}_l{m.group(2)}" if m else key] = value
    return out


def detach_state(state):
    """Cut the graph at a truncated-BPTT boundary: the values stay, the history goes."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return tuple(detach_state(s) for s in state)
