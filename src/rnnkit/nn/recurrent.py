"""Recurrent stacks behind one interface: ``forward(x, state) -> (out, state)``, batch first, and
``init_state(batch_size)``.

``fused``   the cell's torch.nn layer (``fused.py``: cuDNN on GPU, oneDNN/ATen kernels on CPU).
``scratch`` rnnkit's own cells (``cells.py``), stacked in layers and run over time by ``Unrolled``.

The state layout is the registry's (``state.py``): h of shape (num_layers, B, H), or a tuple of parts, each
(num_layers, B, ...), as torch.nn has ``(h, c)`` for the LSTM.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import registry
from .state import layer, stack_layers


class Unrolled(nn.Module):
    """Any scratch cell run over time and stacked in layers, with dropout between layers.

    Per layer, the input half of every gate is computed for all T steps in one matmul (``project``);
    only the recurrence itself loops over time (``unroll``: one ``recur`` call per step, or the cell's own
    equivalent, such as the LSTM's hand-written backward through time in ``bptt.py``).
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, bias: bool = True, options: Optional[Mapping[str, Any]] = None,
                 parallel: bool = False):
        super().__init__()
        spec = registry.get(cell)
        cls, options = spec.scratch, spec.resolve_options(options)
        if spec.scan:                                   # a scan cell: parallel over time, or the loop
            options = {**options, "parallel": parallel}
        self.cell, self.hidden_size, self.num_layers, self.dropout = cell, hidden_size, num_layers, dropout
        self.cells = nn.ModuleList(
            cls(input_size if k == 0 else hidden_size, hidden_size, bias, **options) for k in range(num_layers))

    def init_state(self, batch_size: int):
        return stack_layers([c.init_state(batch_size) for c in self.cells])

    def forward(self, x: torch.Tensor, state=None):
        # x: (B, T, I), state: parts of (L, B, ...) -> out: (B, T, H), state like the input's
        if state is None:
            state = self.init_state(x.shape[0])
        finals = []
        for k, cell in enumerate(self.cells):
            x, s = cell.unroll(cell.project(x), layer(state, k))      # project: all steps in one matmul
            if self.dropout and self.training and k < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
            finals.append(s)
        return x, stack_layers(finals)


def make_recurrent(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                   dropout: float = 0.0, backend: str = "fused",
                   options: Optional[Mapping[str, Any]] = None) -> nn.Module:
    """The recurrent stack for ``cell``; a cell with no fused layer is always rnnkit's own."""
    spec = registry.get(cell)
    dropout = dropout if num_layers > 1 else 0.0
    if backend not in ("fused", "scratch"):
        raise ValueError(f"unknown backend {backend!r}; choose fused or scratch")
    if backend == "scratch" or spec.fused is None:
        return Unrolled(cell, input_size, hidden_size, num_layers, dropout, options=options,
                        parallel=spec.scan and backend == "fused")
    return spec.fused(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout)


def effective_backend(cell: str, backend: str) -> str:
    """The backend a model of ``cell`` really runs: ``scratch`` for cells without a fused layer (a scan cell's
    ``fused`` is its parallel scan)."""
    spec = registry.get(cell)
    return "scratch" if spec.fused is None and not spec.scan else backend


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
