"""Beam search: the ``beam`` most probable continuations of a prompt, found together as one batch.

At every step each of the K hypotheses (the rows of the batch) proposes every next character; the
candidates are scored by their summed log-probability (``log_softmax``), the best 2K over all K x V are
taken in order, and the first K that do not end the text become the next beam, with their rows' recurrent
state copied from their parents (``nn/state.py``, ``select_rows``). The search starts from one hypothesis:
the rows begin with scores [0, -inf, ...], so K copies of the prompt's state cannot yield K copies of the
same text.

With a stop string, a candidate whose text ends with it is finished: it leaves the beam and competes on
``log p / L^alpha`` (L: characters generated, the stop string's included; alpha: ``length_penalty``; Wu et
al. 2016 use a smoothed form of the same idea). Without one, every hypothesis runs to ``length`` and all
have the same L. The search ends when ``length`` characters are generated or ``beam`` hypotheses have
finished.

Beam search helps where one continuation is much likelier than the rest (a name, a fixed phrase, a word
being finished) and behaves like a low temperature; on open-ended text it degenerates into the repetitive
loops that the most probable strings of a character model are made of, which sampling avoids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..config import BeamConfig
from ..data.vocab import CharVocab
from ..nn.state import map_state, select_rows
from .sampling import prompt_ids


@dataclass(frozen=True)
class Hypothesis:
    text: str                  # the continuation, the stop string left out
    logprob: float             # summed log-probability (nats) of every generated character, stop string included
    score: float               # logprob / chars^length_penalty: what hypotheses are ranked by
    chars: int                 # characters generated, stop string included
    stopped: bool              # ended by the stop string (rather than by the length)


@torch.inference_mode()
def beam_search(model, vocab: CharVocab, cfg: BeamConfig, *,
                warn: Callable[[str], None] | None = None) -> list[Hypothesis]:
    """``cfg.num_return`` distinct hypotheses, best first."""
    model.eval()
    device = next(model.parameters()).device
    K, V = cfg.beam, len(vocab)
    ids = prompt_ids(vocab, cfg.prompt, warn=warn).to(device)
    stop = vocab.encode(cfg.stop, skip_unknown=True).tolist() if cfg.stop else []
    if cfg.stop and len(stop) < len(cfg.stop):
        raise ValueError(f"the stop string {cfg.stop!r} holds characters the model never saw, so no hypothesis "
                         f"could end with it; give one made of the model's characters")
    logits, state = model(ids[None], None)                          # prime once, on one row
    logp = F.log_softmax(logits[:, -1].float(), dim=-1).expand(K, V)  # (K, V)
    state = map_state(lambda t: t.expand(t.shape[0], K, *t.shape[2:]).contiguous(), state)
    scores = torch.full((K,), -math.inf, device=device)
    scores[0] = 0.0
    tokens = torch.empty(K, 0, dtype=torch.long, device=device)     # (K, t) the beams' characters so far
    finished: list[Hypothesis] = []

    def rank(logprob: float, chars: int) -> float:
        return logprob / chars ** cfg.length_penalty

    for t in range(cfg.length):
        total = (scores[:, None] + logp).flatten()                  # (K·V,) every candidate's log p
        best, flat = total.topk(min(2 * K, total.numel()))
        parents, chars = (flat // V).tolist(), (flat % V).tolist()
        keep, keep_scores = [], []
        for score, parent, char in zip(best.tolist(), parents, chars):
            if score == -math.inf:
                break
            if stop and _ends_with(tokens[parent], char, stop):
                if len(finished) < K:
                    finished.append(Hypothesis(_text(vocab, tokens[parent], char, len(stop)), score,
                                               rank(score, t + 1), t + 1, True))
                continue
            keep.append((parent, char))
            keep_scores.append(score)
            if len(keep) == K:
                break
        if len(finished) >= K or not keep or t + 1 == cfg.length:
            alive = [] if len(finished) >= K else keep
            for (parent, char), score in zip(alive, keep_scores):
                text = vocab.decode(tokens[parent].tolist() + [char])
                finished.append(Hypothesis(text, score, rank(score, t + 1), t + 1, False))
            break
        rows = torch.tensor([p for p, _ in keep], device=device)
        new = torch.tensor([c for _, c in keep], device=device)
        tokens = torch.cat([tokens[rows], new[:, None]], dim=1)
        scores = torch.tensor(keep_scores, device=device)
        state = select_rows(state, rows)
        out, state = model(new[:, None], state)
        logp = F.log_softmax(out[:, -1].float(), dim=-1)
    finished.sort(key=lambda h: h.score, reverse=True)
    return finished[:cfg.num_return]


def _ends_with(prefix: torch.Tensor, char: int, stop: list[int]) -> bool:
    """Whether prefix + [char] ends with ``stop``."""
    if char != stop[-1]:
        return False
    need = len(stop) - 1
    return need == 0 or (len(prefix) >= need and prefix[-need:].tolist() == stop[:-1])


def _text(vocab: CharVocab, prefix: torch.Tensor, char: int, stop_len: int) -> str:
    """prefix + [char] without the trailing stop string."""
    full = prefix.tolist() + [char]
    return vocab.decode(full[:len(full) - stop_len])
