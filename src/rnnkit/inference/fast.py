"""The fast path of batch-1 generation: a fused ``CharLM``'s recurrent layers computed with ATen's native
CPU kernels, op for op (``nn/steps.py``), without the module calls around them.

What it saves: module dispatch, the embedding call, the batch-first transposes, re-stacking the state; at
batch 1, layer 0's input projection is computed once per character and looked up after that, and
(``pipeline``) each layer's recurrent matmul for the next step starts on a second thread as soon as the
layer's new state exists. The weights are used as torch.nn uses them (joining [W_ih; W_hh] into one
matmul would sum in another order and round differently). At batch 1 the three 2048x512 matmuls of a
2x512 LSTM read 12 MB of weights per character: memory bandwidth, not Python, sets the pace.

A model of scan blocks (minGRU, RG-LRU) takes ``BlockStepper``: each block's single-step form
(``ResidualBlock.stepper``) called directly, and the first block's input part (embedding, projection, norm and,
for RG-LRU, its input matmul) computed once per character and looked up; equal bit for bit to
``model(x, state)``, whose one-character forward runs the same step.

``Stepper.prime`` runs the prompt as ATen's full-layer CPU kernel does (all steps' input projections in one
matmul per layer, then the recurrence), and ``step`` one character as a (1, 1) input; both equal
``model(x, state)`` bit for bit under ``torch.backends.mkldnn.flags(enabled=False)``. Nothing process-wide
is changed: the kernels are chosen by calling them, not by a global switch.
"""

from __future__ import annotations

import queue
import threading
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import registry
from ..nn.recurrent import Unrolled
from ..nn.state import join, layer, stack_layers


def _fast_step(rnn):
    """The registry's ATen step for this fused layer, or None."""
    for name in registry.names():
        spec = registry.get(name)
        if spec.fused is not None and spec.fast_step is not None and isinstance(rnn, spec.fused):
            return spec.fast_step
    return None


def _blocks(rnn) -> bool:
    return isinstance(rnn, Unrolled) and registry.get(rnn.cell).scan


def _cached_row(rows: dict, ids: torch.Tensor, compute):
    """``compute()`` for ids (B,); at batch 1 computed once per id and looked up after that."""
    if ids.shape[0] != 1:
        return compute()
    i = int(ids)
    row = rows.get(i)
    if row is None:
        row = rows[i] = compute()
    return row


def fast_path_supported(model) -> bool:
    """The fast path serves fused LSTM/GRU/tanh-RNN CharLMs and CharLMs of scan blocks, in float32 on the
    CPU."""
    rnn = getattr(model, "rnn", None)
    if not hasattr(model, "head") or not hasattr(model, "inputs"):
        return False
    if not all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters()):
        return False
    if _blocks(rnn):
        return True
    if _fast_step(rnn) is None:
        return False
    if rnn.bidirectional or not rnn.bias or not rnn.batch_first or getattr(rnn, "proj_size", 0):
        return False
    return not (isinstance(rnn, nn.RNN) and rnn.nonlinearity != "tanh")


class _Recurrent(threading.Thread):
    """A second thread that computes W_hh h + b_hh for the next step while the main thread moves on.

    Jobs are done and answered in the order they are given; torch releases the GIL inside each matmul,
    so the two threads read the weights from memory at the same time.
    """

    def __init__(self):
        super().__init__(name="rnnkit-generate", daemon=True)
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.results: queue.SimpleQueue = queue.SimpleQueue()

    def run(self) -> None:
        with torch.inference_mode():
            while (job := self.jobs.get()) is not None:
                h, w, b = job
                try:
                    self.results.put(F.linear(h, w, b))
                except BaseException as e:  # handed to the main thread, which raises it
                    self.results.put(e)

    def result(self) -> torch.Tensor:
        out = self.results.get()
        if isinstance(out, BaseException):
            raise out
        return out

    def stop(self) -> None:
        self.jobs.put(None)
        self.join()


class Stepper:
    """Next-character logits of a fused ``CharLM``, one step at a time, equal bit for bit to
    ``model(ids[:, None], state)[0][:, -1]`` on ATen's native CPU kernels.

    ``state`` is torch.nn's layout: h of shape (L, B, H), or (h, c) for the LSTM; None: zeros.
    """

    def __init__(self, model, state=None):
        rnn = model.rnn
        self.model, self.cell = model, _fast_step(rnn)
        self.lstm = isinstance(rnn, nn.LSTM)
        if state is None:
            state = model.init_state(1)
        self.layers = rnn.num_layers
        w = lambda name, k: getattr(rnn, f"{name}_l{k}")
        self.w_ih = [w("weight_ih", k) for k in range(self.layers)]
        self.b_ih = [w("bias_ih", k) for k in range(self.layers)]
        self.w_hh = [w("weight_hh", k) for k in range(self.layers)]
        self.b_hh = [w("bias_hh", k) for k in range(self.layers)]
        h, c = state if self.lstm else (state, None)
        self.h = list(h.unbind(0))                                  # L x (B, H)
        self.c = list(c.unbind(0)) if self.lstm else [None] * self.layers
        self.rows: dict[int, torch.Tensor] = {}                     # id -> (1, G·H) layer-0 input projection
        self.worker: Optional[_Recurrent] = None
        self.pending = [False] * self.layers                        # worker is computing layer k's W_hh h

    def pipeline(self) -> None:
        """From the next step on, compute each layer's recurrent matmul on a second thread."""
        if self.worker is None:
            self.worker = _Recurrent()
            self.worker.start()

    def close(self) -> None:
        if self.worker is not None:
            for k in range(self.layers):                            # collect what is still in flight
                if self.pending[k]:
                    self.worker.result()
                    self.pending[k] = False
            self.worker.stop()
            self.worker = None

    def _input_projection(self, ids: torch.Tensor) -> torch.Tensor:
        # W_ih x + b_ih for layer 0, computed as torch.nn computes it for a (B, 1) input. At batch 1 each
        # character's row is computed once, by the same operation, and reused.
        return _cached_row(self.rows, ids, lambda: F.linear(self.model.inputs(ids[:, None]), self.w_ih[0],
                                                            self.b_ih[0])[:, 0])    # (B, G·H)

    def prime(self, ids: torch.Tensor) -> torch.Tensor:
        """Read a prompt, ids (T,) int64, as ATen's CPU layer reads a sequence; logits (1, V) after its
        last character."""
        x = self.model.inputs(ids[None])                             # (1, T, E)
        for k in range(self.layers):
            xw = F.linear(x, self.w_ih[k], self.b_ih[k])             # (1, T, G·H): every step in one matmul
            outs = []
            for xw_t in xw.unbind(1):                                # (1, G·H)
                hh = F.linear(self.h[k], self.w_hh[k], self.b_hh[k])
                self.h[k], self.c[k] = self.cell(hh, xw_t, self.h[k], self.c[k])
                outs.append(self.h[k])
            x = torch.stack(outs, 1)                                 # (1, T, H)
        return F.linear(x, self.model.head.weight, self.model.head.bias)[:, -1]

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B,) int64 -> logits (B, V); advances the state."""
        xw = self._input_projection(ids)
        x = xw
        for k in range(self.layers):
            if k:
                xw = F.linear(x, self.w_ih[k], self.b_ih[k])        # (B, G·H): the layer below's new h
            if self.pending[k]:
                hh = self.worker.result()
                self.pending[k] = False
            else:
                hh = F.linear(self.h[k], self.w_hh[k], self.b_hh[k])
            x, c = self.cell(hh, xw, self.h[k], self.c[k])
            self.h[k], self.c[k] = x, c
            if self.worker is not None:
                self.worker.jobs.put((x, self.w_hh[k], self.b_hh[k]))
                self.pending[k] = True
        return F.linear(x, self.model.head.weight, self.model.head.bias)

    def state(self):
        """The state in torch.nn's layout, as ``model(x, state)`` returns it."""
        return join([torch.stack(self.h)] + ([torch.stack(self.c)] if self.lstm else []))


class BlockStepper:
    """Next-character logits of a ``CharLM`` of scan blocks, one step at a time, equal bit for bit to
    ``model(ids[:, None], state)[0][:, -1]``. ``state`` is the stack's layout (parts of (L, B, ...));
    None: zeros. The same interface as ``Stepper``."""

    def __init__(self, model, state=None):
        self.model, self.blocks = model, list(model.rnn.cells)
        self.steps = [block.stepper() for block in self.blocks]     # each block's step, weights bound
        if state is None:
            state = model.init_state(1)
        self.states = [layer(state, k) for k in range(len(self.blocks))]
        self.rows: dict[int, tuple] = {}                            # id -> first block's (x, front(x))

    def pipeline(self) -> None:
        """Nothing to overlap: a block's step is many small operations, not one large matmul."""

    def close(self) -> None:
        pass

    def prime(self, ids: torch.Tensor) -> torch.Tensor:
        """Read a prompt, ids (T,) int64, with the blocks' parallel forward; logits (1, V) after it."""
        logits, state = self.model(ids[None], self.state())
        self.states = [layer(state, k) for k in range(len(self.blocks))]
        return logits[:, -1]

    def _first(self, ids: torch.Tensor):
        x = self.blocks[0].project(self.model.inputs(ids[:, None]))[:, 0]   # (B, H), as the forward computes it
        return x, self.steps[0].front(x)

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B,) int64 -> logits (B, V); advances the state."""
        x, front = _cached_row(self.rows, ids, lambda: self._first(ids))
        for k, step in enumerate(self.steps):
            x, self.states[k] = step(x, self.states[k], front)
            front = None
        return F.linear(x, self.model.head.weight, self.model.head.bias)

    def state(self):
        return stack_layers(self.states)


def stepper(model, state=None):
    """The fast path's stepper for ``model`` (``fast_path_supported``), starting from ``state``."""
    return (BlockStepper if _blocks(model.rnn) else Stepper)(model, state)
