"""A corpus made ready for a character language model: cleaned text, its vocabulary, the encoded training
text and the contiguous held-out tail, and a fingerprint that tells a resumed run it reads the same text."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

import torch

from ..config import DataConfig
from .corpus import CorpusError, describe, load_text
from .vocab import CharVocab


def fingerprint(text: str) -> str:
    h = hashlib.sha256()
    for i in range(0, len(text), 1 << 22):
        h.update(text[i:i + (1 << 22)].encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:16]


@dataclass
class LMData:
    vocab: CharVocab
    train: torch.Tensor     # 1-D ids in the vocabulary's compact dtype
    val: torch.Tensor
    chars: int
    fingerprint: str


def prepare_data(cfg: DataConfig, vocab: Optional[CharVocab] = None) -> LMData:
    """Read, clean and encode the corpus; the tail ``val_fraction`` is held out, contiguously."""
    text = load_text(cfg)
    vocab = vocab or CharVocab.from_text(text)
    ids = vocab.encode(text, skip_unknown=True)
    n_val = max(2, int(round(len(ids) * cfg.val_fraction)))
    if len(ids) - n_val < 3:
        raise CorpusError(f"{describe(cfg)} has only {len(ids)} characters: too few to train on "
                          f"and hold out {cfg.val_fraction:.0%} for validation; give more text")
    return LMData(vocab, ids[:-n_val], ids[-n_val:], len(text), fingerprint(text))
