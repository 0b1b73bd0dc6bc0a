"""Batches for language modelling: consecutive streams (stateful TBPTT) and random chunks.

Both are resumable iterators: ``state_dict()`` holds plain numbers and the generator state, so a resumed
run draws exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Batch:
    x: torch.Tensor      # (B, T) int64 input ids
    y: torch.Tensor      # (B, T) int64 targets: the inputs shifted one character ahead
    reset: bool          # True when the carried hidden state must start afresh


class CorpusTooShort(ValueError):
    """The text cannot fill a single batch; the message says the numbers and flags that fit."""


def _fitting_flags(n: int, batch_size: int, seq_len: int) -> str:
    """Flags with which one consecutive batch fits in ``n`` characters: fewer streams if a sequence fits,
    else shorter sequences, else both. Needs B*T + T + 1 characters (T + 1 spare for the random offset), or
    B + 1 when T = 1."""
    if n >= (2 * seq_len + 1 if seq_len > 1 else 2):
        return f"--batch-size {(n - 1 - seq_len) // seq_len if seq_len > 1 else n - 1}"
    t = (n - 1) // (batch_size + 1)
    if t > 1 or (t == 1 and batch_size + 1 <= n):
        return f"--seq-len {t}"
    return f"--batch-size 1 --seq-len {max(1, (n - 1) // 2)}"


class ConsecutiveBatches:
    """Stateful truncated BPTT: the text laid out as B parallel streams, read T columns at a time.

    With B = 3 streams, T = 4, and a text of 25 characters ``a..y`` (offset 0)::

        stream 0 │ a b c d │ e f g h │      inputs x: columns [kT, (k+1)T) of the stream matrix
        stream 1 │ i j k l │ m n o p │      targets y: the same columns one character later
        stream 2 │ q r s t │ u v w x │      (y of stream 0, batch 0 = b c d e)
                   batch 0   batch 1

    Row i of batch k+1 continues row i of batch k, so the state the model ends batch k with is the right
    state to start batch k+1 from (detached at the boundary). Each epoch begins at a random offset in
    [0, T) so that the cut points move, and the state is reset there (``Batch.reset``).
    """

    def __init__(self, data: torch.Tensor, batch_size: int, seq_len: int, *, seed: int = 0,
                 random_offset: bool = True):
        self.data, self.batch_size, self.seq_len = data, batch_size, seq_len
        self.random_offset = random_offset and seq_len > 1
        need = batch_size * seq_len + seq_len + 1 if self.random_offset else batch_size * seq_len + 1
        if len(data) < need:
            raise CorpusTooShort(
                f"the training text has {len(data)} characters, fewer than one batch of "
                f"--batch-size {batch_size} x --seq-len {seq_len} needs ({need}); "
                f"lower them (e.g. {_fitting_flags(len(data), batch_size, seq_len)}) or give more text")
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.index = 0, 0
        self._set_layout(0)

    def _set_layout(self, offset: int) -> None:
        self.offset = offset
        length = (len(self.data) - offset - 1) // self.batch_size   # L: characters per stream
        span = self.batch_size * length
        self.xs = self.data[offset:offset + span].view(self.batch_size, length)          # (B, L) views
        self.ys = self.data[offset + 1:offset + 1 + span].view(self.batch_size, length)
        self.steps_in_epoch = length // self.seq_len

    @property
    def steps_per_epoch(self) -> int:
        return (len(self.data) - 1) // self.batch_size // self.seq_len

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        if self.index >= self.steps_in_epoch:
            self.epoch += 1
            self.index = 0
            offset = int(torch.randint(0, self.seq_len, (1,), generator=self.generator)) if self.random_offset else 0
            self._set_layout(offset)
        i = self.index * self.seq_len
        batch = Batch(self.xs[:, i:i + self.seq_len].long(), self.ys[:, i:i + self.seq_len].long(),
                      reset=self.index == 0)
        self.index += 1
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "offset": self.offset,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])
        self._set_layout(int(state["offset"]))
        self.index = int(state["index"])


class RandomBatches:
    """Chunks of T+1 characters, each with a fresh state.

    By default every chunk starts anywhere in the text, drawn uniformly (nanoGPT). ``fixed_grid=True`` does
    what d2l's ``data_iter_random`` (seed 001) does instead: the text is cut once into the non-overlapping
    chunks starting at 0, T, 2T, ...; each epoch shuffles them and serves each at most once (the last
    incomplete batch is dropped). The grid makes the same few chunks come back every epoch, which is
    easier to memorise: training perplexity falls faster and held-out text gains nothing.
    """

    def __init__(self, data: torch.Tensor, batch_size: int, seq_len: int, *, seed: int = 0,
                 fixed_grid: bool = False):
        if len(data) < seq_len + 1:
            raise CorpusTooShort(f"the training text has {len(data)} characters, fewer than --seq-len {seq_len} + 1; "
                                 f"lower --seq-len (e.g. --seq-len {max(1, len(data) - 1)}) or give more text")
        self.batch_size, self.seq_len, self.fixed_grid = batch_size, seq_len, fixed_grid
        self.windows = data.unfold(0, seq_len + 1, 1)               # (N - T, T + 1), a view: no copy
        self.generator = torch.Generator().manual_seed(seed)
        self.drawn = 0
        self.steps_per_epoch = max(1, (len(data) - 1) // (batch_size * seq_len))
        if fixed_grid:
            self.chunks = (len(data) - 1) // seq_len                 # chunk j starts at j * T
            if self.chunks < batch_size:
                raise CorpusTooShort(f"the training text has {self.chunks} chunks of --seq-len {seq_len}, fewer "
                                     f"than --batch-size {batch_size}; lower them or give more text")
            self.steps_per_epoch = self.chunks // batch_size
            self._new_epoch()

    def _new_epoch(self) -> None:
        self.epoch_rng = self.generator.get_state()                 # enough to redraw this epoch's order
        self.order = torch.randperm(self.chunks, generator=self.generator)

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        if self.fixed_grid:
            i = self.drawn % self.steps_per_epoch
            if i == 0 and self.drawn:
                self._new_epoch()
            starts = self.order[i * self.batch_size:(i + 1) * self.batch_size] * self.seq_len
        else:
            starts = torch.randint(0, len(self.windows), (self.batch_size,), generator=self.generator)
        chunk = self.windows[starts].long()                         # (B, T + 1)
        self.drawn += 1
        return Batch(chunk[:, :-1], chunk[:, 1:], reset=True)

    @property
    def epoch(self) -> int:
        return self.drawn // self.steps_per_epoch

    def state_dict(self) -> dict:
        state = {"drawn": self.drawn, "generator": self.generator.get_state()}
        if self.fixed_grid:
            state["epoch_rng"] = self.epoch_rng
        return state

    def load_state_dict(self, state: dict) -> None:
        self.drawn = int(state["drawn"])
        if self.fixed_grid:
            self.generator.set_state(state["epoch_rng"])
            self._new_epoch()                                       # the current epoch's order, again
        self.generator.set_state(state["generator"])


def make_batches(kind: str, data: torch.Tensor, batch_size: int, seq_len: int, *, seed: int,
                 fixed_grid: bool = False):
    if kind == "consecutive":
        return ConsecutiveBatches(data, batch_size, seq_len, seed=seed, random_offset=not fixed_grid)
    if kind == "random":
        return RandomBatches(data, batch_size, seq_len, seed=seed, fixed_grid=fixed_grid)
    raise ValueError(f"unknown batching {kind!r}")
