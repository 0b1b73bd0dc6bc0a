"""Encoded texts for classifiers: truncation, padded batches with their lengths, and the bucketed,
resumable training batches."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import torch

from ..config import TextDataConfig
from .corpus import CorpusError
from .words import UNK_ID, WordVocab


def truncate(ids: list[int], max_tokens: Optional[int], keep: str) -> list[int]:
    """At most ``max_tokens`` ids: the first ones (head), the last ones (tail), or half of each (both)."""
    if max_tokens is None or len(ids) <= max_tokens:
        return ids
    if keep == "head":
        return ids[:max_tokens]
    if keep == "tail":
        return ids[-max_tokens:]
    head = (max_tokens + 1) // 2
    return ids[:head] + ids[len(ids) - (max_tokens - head):]


def encode_texts(vocab: WordVocab, token_lists: Iterable[list[str]], data: TextDataConfig) -> list[torch.Tensor]:
    """Each text as a 1-D int32 tensor of word ids, truncated; a text with no words reads as ``<unk>``."""
    out = []
    for tokens in token_lists:
        ids = truncate(vocab.ids(tokens), data.max_tokens, data.truncate) or [UNK_ID]
        out.append(torch.tensor(ids, dtype=torch.int32))
    return out


@dataclass(frozen=True)
class PaddedBatch:
    tokens: torch.Tensor     # (B, T) int64 ids, each row's ids then <pad> (0) up to the longest row
    lengths: torch.Tensor    # (B,) int64 number of valid ids per row (>= 1)
    labels: torch.Tensor     # (B,) int64 class indices


# Padded widths are rounded up to a multiple of this. On CPU the fused RNN runs on oneDNN, which builds
# (JIT-compiles) a new primitive for every new sequence length it meets, at a cost of seconds for the
# backward pass; a few dozen widths instead of hundreds keeps that a one-off cost of the first epoch.
PAD_MULTIPLE = 16


def pad_batch(seqs: Sequence[torch.Tensor], labels: torch.Tensor, multiple: int = 1) -> PaddedBatch:
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    width = -(-int(lengths.max()) // multiple) * multiple
    tokens = torch.zeros(len(seqs), width, dtype=torch.int64)
    for row, s in enumerate(seqs):
        tokens[row, :len(s)] = s
    return PaddedBatch(tokens, lengths, labels)


class BucketBatches:
    """Endless, resumable batches of (padded texts, lengths, labels) in a seeded order per epoch.

    Bucketing (``bucket`` > 0): the shuffled examples are cut into pools of ``bucket`` batches, each pool is
    sorted by length and cut into batches, and the batch order is shuffled, so a batch holds texts of
    similar length (little padding) while every epoch still mixes differently. ``bucket`` = 0 gives plain
    shuffled batches, padded to their longest text (seed 002's DataLoader).
    """

    def __init__(self, seqs: list[torch.Tensor], labels: torch.Tensor, batch_size: int, *, bucket: int, seed: int):
        if not seqs:
            raise CorpusError("no training texts to make batches from")
        self.seqs, self.labels, self.batch_size, self.bucket = seqs, labels, batch_size, bucket
        self.lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.index = 0, 0
        self._new_epoch()

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.seqs) / self.batch_size)

    def _new_epoch(self) -> None:
        self.epoch_rng = self.generator.get_state()               # enough to rebuild this epoch's plan
        self.plan = self._plan()

    def _plan(self) -> list[torch.Tensor]:
        order = torch.randperm(len(self.seqs), generator=self.generator)
        b = self.batch_size
        if self.bucket:
            pools = order.split(self.bucket * b)
            order = torch.cat([p[torch.argsort(self.lengths[p], stable=True)] for p in pools])
        batches = list(order.split(b))
        if self.bucket:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]
        return batches

    def __iter__(self):
        return self

    def __next__(self) -> PaddedBatch:
        if self.index >= len(self.plan):
            self.epoch += 1
            self.index = 0
            self._new_epoch()
        idx = self.plan[self.index]
        self.index += 1
        return pad_batch([self.seqs[i] for i in idx.tolist()], self.labels[idx], PAD_MULTIPLE)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "generator": self.epoch_rng}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self.epoch_rng = self.generator.get_state()
        self.plan = self._plan()


def length_batches(seqs: Sequence[torch.Tensor], batch_size: int) -> Iterable[list[int]]:
    """Indices in batches of similar length (inference only: the order does not matter)."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for i in range(0, len(order), batch_size):
        yield order[i:i + batch_size]
