"""Text generation: prime the state on a prompt, then sample one character at a time carrying state.

Sampling owns its randomness: an explicit ``torch.Generator`` seeded from ``SampleConfig.seed``, so the
same seed gives the same text and nothing else in the process is disturbed. ``temperature=0`` is greedy
argmax. Seed 002's "scale factor" multiplies the logits, so scale factor s is temperature 1/s.

Two paths compute the same numbers:

``reference``  ``model(x, state)`` once per character: simple, works for every model and device.
``fast``       ``Stepper``, for one sample from a fused LSTM/GRU/RNN model on the CPU: the ATen operations torch.nn's
               native CPU kernels run for one time step, on the same operands in the same order, minus
               everything around them (module calls, embedding, the batch-first transposes, re-stacking
               the state); at batch 1, layer 0's input projection is computed once per character and
               looked up after that, and (``pipeline``) each layer's recurrent matmul for the next step
               starts on a second thread as soon as the layer's new state exists. The output is
               bit-for-bit that of the reference path, so the same seed gives the same sample; the first
               step is computed both ways and compared, and any difference sends the rest of the sample
               down the reference path. (Joining [W_ih; W_hh] into one matmul, or keeping transposed
               copies of the weights, would save a little time but sum in another order and round
               differently, so the weights are used as torch.nn uses them. At batch 1 the three 2048x512
               matmuls of a 2x512 LSTM read 12 MB of weights per character; memory bandwidth, not Python,
               sets the pace.)

For one sample from a fused model on the CPU, both paths run with oneDNN switched off for the recurrent
layers (``native_kernels``). On the CPU,
torch.nn.LSTM otherwise hands every call to oneDNN's RNN primitive, which at batch 1 spends most of its
time setting up and repacking the weights (several times slower than ATen's own kernels; see
docs/benchmarks.md) and rounds differently.
"""

from __future__ import annotations

import contextlib
import math
import queue
import sys
import threading
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .config import SampleConfig
from .vocab import CharVocab, describe_unknown


def filter_logits(logits: torch.Tensor, *, top_k: Optional[int] = None,
                  top_p: Optional[float] = None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus. logits: (N, V)."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]    # (N, 1) k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cum - sorted_logits.softmax(-1) >= top_p     # mass before this one already >= p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_ids(logits: torch.Tensor, *, temperature: float, top_k: Optional[int], top_p: Optional[float],
             generator: torch.Generator) -> torch.Tensor:
    """One draw per row of ``logits`` (N, V) -> (N,) int64.

    The draw is ``torch.multinomial(probs, 1, generator=generator)``, made the way torch makes it for one
    sample (argmax of p / q with q ~ Exp(1) from the same generator), so the same seed gives the same
    characters, but without its three reductions and host syncs that check the probabilities: at batch 1
    that check was a tenth of the time per character. Non-finite scores are still caught: they make
    the chosen ratio NaN.
    """
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(-1)
    if temperature != 1.0:                                          # x / 1.0 == x: skip the op
        logits = logits / temperature
    probs = filter_logits(logits, top_k=top_k, top_p=top_p).softmax(-1)
    q = torch.empty_like(probs).exponential_(1, generator=generator)
    best, ids = torch.max(probs / q, -1)                            # argmax; NaN (from inf/nan scores) wins
    if math.isnan(float(best.sum())):
        raise ValueError("the model's scores are not finite numbers (its weights diverged in training); "
                         "retrain with a lower --lr or with --clip")
    return ids


def prompt_ids(vocab: CharVocab, prompt: str, *, warn: Callable[[str], None] | None = None) -> torch.Tensor:
    """The prompt's ids; unknown characters are skipped (with a warning) and an empty prompt falls back
    to a line break (or the first vocabulary character), so sampling always has somewhere to start."""
    warn = warn or (lambda msg: print(f"rnnkit: warning: {msg}", file=sys.stderr))
    unknown = vocab.unknown(prompt)
    if unknown:
        warn("prompt: " + describe_unknown(unknown))
    ids = vocab.encode(prompt, skip_unknown=True).long()
    if len(ids) == 0:
        start = "\n" if "\n" in vocab.index else vocab.chars[0]
        if prompt:
            warn(f"no prompt character is in the vocabulary; starting from {start!r}")
        ids = torch.tensor([vocab.index[start]])
    return ids


@contextlib.contextmanager
def native_kernels():
    """Run torch.nn's CPU recurrent layers on ATen's own kernels rather than oneDNN's (restored after)."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


# ----------------------------------------------------------------------------- the fast path
#
# Each cell below is ATen's CPU cell for one time step (aten/src/ATen/native/RNN.cpp: SimpleCell,
# LSTMCell, GRUCell), written with the same operations in the same order. ``hh`` = W_hh h + b_hh (a fresh
# tensor, updated in place as ATen does), ``xw`` = W_ih x + b_ih (never modified: it may be a cached row).

def _rnn_cell(hh: torch.Tensor, xw: torch.Tensor, h: torch.Tensor, c=None):
    h = torch.tanh(hh.add_(xw))                                     # h' = tanh(W_ih x + b_ih + W_hh h + b_hh)
    return h, None


def _lstm_cell(hh: torch.Tensor, xw: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    i, f, g, o = hh.add_(xw).unsafe_chunk(4, 1)                     # (B, H) each: gates i, f, g, o
    i, f, g, o = i.sigmoid_(), f.sigmoid_(), g.tanh_(), o.sigmoid_()
    c = (f * c).add_(i * g)                                         # c' = f ⊙ c + i ⊙ g
    return o * c.tanh(), c                                          # h' = o ⊙ tanh(c')


def _gru_cell(hh: torch.Tensor, xw: torch.Tensor, h: torch.Tensor, c=None):
    xr, xz, xn = xw.unsafe_chunk(3, 1)
    hr, hz, hn = hh.unsafe_chunk(3, 1)
    r = hr.add_(xr).sigmoid_()                                      # reset gate
    z = hz.add_(xz).sigmoid_()                                      # update gate
    n = xn.add(hn.mul_(r)).tanh_()                                  # candidate: tanh(W_in x + r ⊙ (W_hn h + b_hn))
    return (h - n).mul_(z).add_(n), None                            # h' = z ⊙ h + (1 - z) ⊙ n, as (h - n) z + n


_CELL_STEP = {nn.LSTM: _lstm_cell, nn.GRU: _gru_cell, nn.RNN: _rnn_cell}


def _cell_step(rnn):
    return next((step for cls, step in _CELL_STEP.items() if isinstance(rnn, cls)), None)


def fast_path_supported(model) -> bool:
    """The fast path serves fused LSTM/GRU/tanh-RNN CharLMs in float32 on the CPU."""
    rnn = getattr(model, "rnn", None)
    if _cell_step(rnn) is None or not hasattr(model, "head") or not hasattr(model, "inputs"):
        return False
    if rnn.bidirectional or not rnn.bias or not rnn.batch_first or getattr(rnn, "proj_size", 0):
        return False
    if isinstance(rnn, nn.RNN) and rnn.nonlinearity != "tanh":
        return False
    return all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())


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
    ``model(ids[:, None], state)[0][:, -1]`` under ``native_kernels()``.

    ``state`` is torch.nn's layout: h of shape (L, B, H), or (h, c) for the LSTM.
    """

    def __init__(self, model, state):
        rnn = model.rnn
        self.model, self.cell = model, _cell_step(rnn)
        self.lstm = isinstance(rnn, nn.LSTM)
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
        if ids.shape[0] == 1:
            i = int(ids)
            row = self.rows.get(i)
            if row is None:
                row = self.rows[i] = F.linear(self.model.inputs(ids[:, None]), self.w_ih[0], self.b_ih[0])[:, 0]
            return row
        return F.linear(self.model.inputs(ids[:, None]), self.w_ih[0], self.b_ih[0])[:, 0]   # (B, G·H)

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B,) int64 -> logits (B, V); advances the state."""
        xw = self._input_projection(ids)
        for k in range(self.layers):
            if k:
                xw = F.linear(x, self.w_ih[k], self.b_ih[k])        # (B, G·H)
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
        h = torch.stack(self.h)
        return (h, torch.stack(self.c)) if self.lstm else h


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))


# ----------------------------------------------------------------------------- generate

@torch.inference_mode()
def generate(model, vocab: CharVocab, cfg: SampleConfig, *,
             on_chars: Callable[[list[str]], None] | None = None,
             warn: Callable[[str], None] | None = None, fast: bool = True,
             pipeline: Optional[bool] = None) -> list[str]:
    """``cfg.num_samples`` continuations of ``cfg.prompt`` (prompt not included), made as one batch.

    ``on_chars`` receives each step's new characters (one per sample) as they are drawn, for streaming.
    ``fast=False`` forces the reference path. The fast path is taken for a single sample from a fused
    model on the CPU, and gives the same text (see the module docstring); batches gain nothing from it
    (their matmuls are large enough) and run ``model(x, state)`` with torch's defaults on both paths.
    ``pipeline`` (fast path only) runs each layer's recurrent matmul on a second thread: the same text,
    about twice as fast with an idle second core, slower when that core is busy; None turns it on when
    torch may use more than one thread.
    """
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    if cfg.seed is not None:
        generator.manual_seed(cfg.seed)
    else:
        generator.seed()
    ids = prompt_ids(vocab, cfg.prompt, warn=warn).to(device)
    n = cfg.num_samples
    draw = lambda logits: next_ids(logits, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                                   generator=generator)              # (N, V) -> (N,)
    drawn: list[torch.Tensor] = []                                 # one (N,) tensor per step
    stepper = None
    # Where the Stepper can run, both paths use the kernels it mirrors, so that they give the same text.
    native = n == 1 and fast_path_supported(model)
    with native_kernels() if native else contextlib.nullcontext():
        logits, state = model(ids[None].expand(n, -1), None)       # prime on the whole prompt at once
        logits = logits[:, -1]                                      # (N, V)
        try:
            for t in range(cfg.length):
                nxt = draw(logits)                                  # (N,)
                drawn.append(nxt)
                if on_chars is not None:
                    on_chars([vocab.chars[i] for i in nxt.tolist()])
                if t + 1 == cfg.length:
                    break
                if stepper is not None:
                    logits = stepper.step(nxt)
                    continue
                before = state
                logits, state = model(nxt[:, None], before)
                logits = logits[:, -1]
                if fast and native and t == 0:
                    # Take the fast path only if its first step reproduces this one exactly.
                    candidate = Stepper(model, before)
                    if _same(candidate.step(nxt), logits) and _same(candidate.state(), state):
                        stepper = candidate
                        if pipeline or (pipeline is None and torch.get_num_threads() > 1):
                            stepper.pipeline()
        finally:
            if stepper is not None:
                stepper.close()
    out = torch.stack(drawn, 1).cpu() if drawn else torch.empty(n, 0, dtype=torch.long)   # (N, length)
    return [vocab.decode(row) for row in out]
