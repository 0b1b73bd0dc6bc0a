"""Recurrent state, one home for it.

The state of a recurrent stack is what its cell type declares (``registry.CellSpec.state``): one tensor
for a single part (``h``, as torch.nn has it) or a tuple of tensors, one per named part (``(h, c)`` for the
LSTM, or any number of parts of any shape). Every part has the layers first and the batch second:
``(L, B, ...)``. A cell's own per-layer state is the same without the layer dimension: ``(B, ...)``.

All helpers here work on either form, so no caller needs to know how many parts a cell carries.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

State = Union[torch.Tensor, tuple]


def parts(state: State) -> tuple[torch.Tensor, ...]:
    """The state's tensors, in declaration order."""
    return state if isinstance(state, tuple) else (state,)


def join(tensors: Sequence[torch.Tensor]) -> State:
    """The inverse of ``parts``: one tensor stays bare, several become a tuple."""
    return tensors[0] if len(tensors) == 1 else tuple(tensors)


def map_state(fn: Callable[[torch.Tensor], torch.Tensor], state: Optional[State]) -> Optional[State]:
    if state is None:
        return None
    return join([fn(t) for t in parts(state)])


def detach_state(state: Optional[State]) -> Optional[State]:
    """Cut the graph at a truncated-BPTT boundary: the values stay, the history goes."""
    return map_state(torch.Tensor.detach, state)


def select_rows(state: Optional[State], rows) -> Optional[State]:
    """Rows ``rows`` (a slice, an index tensor or a list) of the batch dimension of every part, contiguous."""
    return map_state(lambda t: t[:, rows].contiguous(), state)


def layer(state: State, k: int) -> State:
    """Layer ``k``'s state, as a cell takes it: every part without its layer dimension, (B, ...)."""
    return join([t[k] for t in parts(state)])


def stack_layers(per_layer: Sequence[State]) -> State:
    """Per-layer cell states (B, ...) into the stack's state (L, B, ...)."""
    return join([torch.stack(ts) for ts in zip(*(parts(s) for s in per_layer))])


def to_plain(state: Optional[State]):
    """For a checkpoint: None, one CPU tensor, or a list of CPU tensors (``weights_only`` loads all three)."""
    if state is None:
        return None
    cpu = [t.detach().cpu() for t in parts(state)]
    return cpu[0] if len(cpu) == 1 else cpu


def from_plain(plain, device: torch.device) -> Optional[State]:
    """The inverse of ``to_plain``, on ``device``."""
    if plain is None:
        return None
    if isinstance(plain, torch.Tensor):
        return plain.to(device)
    return tuple(t.to(device) for t in plain)


def same(a: Optional[State], b: Optional[State]) -> bool:
    """Equal bit for bit, part by part."""
    if a is None or b is None:
        return a is b
    pa, pb = parts(a), parts(b)
    return len(pa) == len(pb) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(pa, pb))
