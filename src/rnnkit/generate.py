"""Text generation: prime the state on a prompt, then sample one character at a time carrying state.

Sampling owns its randomness: an explicit ``torch.Generator`` seeded from ``SampleConfig.seed``, so the
same seed gives the same text and nothing else in the process is disturbed. ``temperature=0`` is greedy
argmax. Seed 002's "scale factor" multiplies the logits, so scale factor s is temperature 1/s.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

import torch

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
    """One draw per row of ``logits`` (N, V) -> (N,) int64."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(-1)
    logits = filter_logits(logits / temperature, top_k=top_k, top_p=top_p)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


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


@torch.inference_mode()
def generate(model, vocab: CharVocab, cfg: SampleConfig, *,
             on_chars: Callable[[list[str]], None] | None = None,
             warn: Callable[[str], None] | None = None) -> list[str]:
    """``cfg.num_samples`` continuations of ``cfg.prompt`` (prompt not included), made as one batch.

    ``on_chars`` receives each step's new characters (one per sample) as they are drawn, for streaming.
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
    logits, state = model(ids[None].expand(n, -1), None)           # prime on the whole prompt at once
    logits = logits[:, -1]                                          # (N, V)
    out = torch.empty(n, cfg.length, dtype=torch.long)
    for t in range(cfg.length):
        nxt = next_ids(logits, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                       generator=generator)                         # (N,)
        out[:, t] = nxt.cpu()
        if on_chars is not None:
            on_chars([vocab.chars[i] for i in out[:, t].tolist()])
        if t + 1 < cfg.length:
            logits, state = model(nxt[:, None], state)
            logits = logits[:, -1]
    return [vocab.decode(row) for row in out]
