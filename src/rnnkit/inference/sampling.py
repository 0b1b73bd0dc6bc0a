"""Text generation: prime the state on a prompt, then sample one character at a time carrying state.

Sampling owns its randomness: an explicit ``torch.Generator`` seeded from ``SampleConfig.seed``, so the
same seed gives the same text and nothing else in the process is disturbed; everything a call touches is
its own (its generator, its state, its fast-path stepper), so calls may run in several threads at once.
``temperature=0`` is greedy argmax. Seed 002's "scale factor" multiplies the logits, so scale factor s is
temperature 1/s.

Two paths:

``reference``  ``model(x, state)`` once per character: simple, works for every model, batch and device.
``fast``       for one sample from a fused model on the CPU (``fast.Stepper``): ATen's native CPU kernels
               for the recurrent layers, op for op, called directly. Equal bit for bit to the reference
               path run on those kernels (``torch.backends.mkldnn.flags(enabled=False)``, which the tests
               use), and several times faster at batch 1 than torch.nn.LSTM's default there, oneDNN's RNN
               primitive, which spends most of its time setting up and repacking weights. A model of
               scan blocks (minGRU, RG-LRU) on the CPU takes ``fast.BlockStepper``: the blocks' own
               single-step form without the module calls, equal bit for bit to the reference path.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable, Optional

import torch

from ..config import SampleConfig
from ..data.vocab import CharVocab, describe_unknown
from .fast import Stepper, fast_path_supported, stepper as make_stepper

PIPELINE_TRIAL = 32      # characters timed each way when generate() chooses whether to pipeline
_clock = time.perf_counter


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


def seeded_generator(device: torch.device, seed: Optional[int]) -> torch.Generator:
    """Sampling's own generator: seeded with ``seed``, or from the OS when it is None."""
    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    return generator


# ----------------------------------------------------------------------------- generate

@torch.inference_mode()
def generate(model, vocab: CharVocab, cfg: SampleConfig, *,
             on_chars: Callable[[list[str]], None] | None = None,
             warn: Callable[[str], None] | None = None, fast: bool = True,
             pipeline: Optional[bool] = None) -> list[str]:
    """``cfg.num_samples`` continuations of ``cfg.prompt`` (prompt not included), made as one batch.

    ``on_chars`` receives each step's new characters (one per sample) as they are drawn, for streaming.
    ``fast=False`` forces the reference path. The fast path is taken for a single sample from a fused
    model on the CPU; batches gain nothing from it (their matmuls are large enough). ``pipeline`` (fast
    path only) runs each layer's recurrent matmul on a second thread: the same text, about twice as fast
    on some CPUs with an idle second core, slower on others and when that core is busy; None (with more
    than one torch thread and more than a few hundred characters to draw) times ``PIPELINE_TRIAL``
    characters each way and keeps the faster.
    """
    model.eval()
    device = next(model.parameters()).device
    generator = seeded_generator(device, cfg.seed)
    ids = prompt_ids(vocab, cfg.prompt, warn=warn).to(device)
    n = cfg.num_samples
    drawn: list[torch.Tensor] = []                                 # one (N,) tensor per step
    stepper = make_stepper(model) if fast and n == 1 and fast_path_supported(model) else None
    choose = False
    try:
        if stepper is not None:
            logits = stepper.prime(ids)                            # (1, V)
            choose = (pipeline is None and isinstance(stepper, Stepper) and torch.get_num_threads() > 1
                      and cfg.length > 8 * PIPELINE_TRIAL)
            if cfg.length > 1 and (pipeline or choose):
                stepper.pipeline()
            step = stepper.step
        else:
            out, state = model(ids[None].expand(n, -1), None)      # prime on the whole prompt at once
            logits = out[:, -1]                                    # (N, V)

            def step(nxt: torch.Tensor) -> torch.Tensor:
                nonlocal state
                out, state = model(nxt[:, None], state)
                return out[:, -1]
        for t in range(cfg.length):
            if choose:                                             # pipelined, then not; keep the faster
                if t == 8:                                         # (after a few steps to warm up)
                    t0 = _clock()
                elif t == 8 + PIPELINE_TRIAL:
                    piped, t0 = _clock() - t0, _clock()
                    stepper.close()
                elif t == 8 + 2 * PIPELINE_TRIAL:
                    choose = False
                    if piped < _clock() - t0:
                        stepper.pipeline()
            nxt = next_ids(logits, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                           generator=generator)                    # (N,)
            drawn.append(nxt)
            if on_chars is not None:
                on_chars([vocab.chars[i] for i in nxt.tolist()])
            if t + 1 < cfg.length:
                logits = step(nxt)
    finally:
        if stepper is not None:
            stepper.close()
    out = torch.stack(drawn, 1).cpu() if drawn else torch.empty(n, 0, dtype=torch.long)   # (N, length)
    return [vocab.decode(row) for row in out]
