"""Held-out scoring, from sums divided once (``metrics.py``): a language model over a whole stream with its
state carried through it (``evaluate_stream``, ``score_file``), a classifier over labelled texts (``score``)."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from .data.corpus import CorpusError, read_text
from .data.padded import PAD_MULTIPLE, length_batches, pad_batch
from .data.vocab import CharVocab, describe_unknown
from .metrics import ClassifyScore, LMScore
from .nn.device import autocast
from .nn.state import select_rows


@torch.inference_mode()
def evaluate_stream(model, ids: torch.Tensor, *, streams: int = 32, chunk: int = 512,
                    precision: str = "fp32", max_chars: Optional[int] = None,
                    part: tuple[int, int] = (0, 1)) -> LMScore:
    """Score every character of ``ids`` after the first, each given all the text before it.

    The text is cut into ``streams`` contiguous rows evaluated side by side (for speed), each carrying
    its state from chunk to chunk; the few characters left over continue the last row's state, so all
    ``len(ids) - 1`` predictions are counted and the sum is divided once.

    ``max_chars`` scores about that many characters only (a quick check during training): the beginning of
    every row, so the sample is spread evenly over the whole text rather than taken from its start.

    ``part=(k, n)`` scores only the k-th of n contiguous groups of rows (the group with the last row also
    takes the leftover characters): the n parts' sums add up to the whole (a distributed run sums them over its processes).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    n = len(ids) - 1
    if n < 1:
        raise ValueError("evaluation needs at least two characters")
    streams = max(1, min(streams, n // max(chunk, 1)))
    length = n // streams                                           # L: predictions per row
    x = ids[:streams * length].view(streams, length)
    y = ids[1:streams * length + 1].view(streams, length)
    tail = ids[streams * length:]                                   # leftover: continues the last row
    if max_chars is not None and max_chars < n:
        length = max(1, min(length, max_chars // streams))
        x, y, tail = x[:, :length], y[:, :length], ids[:0]
        n = streams * length
    k, parts = part
    mine = torch.arange(streams).tensor_split(parts)[k] if parts > 1 else None
    if mine is not None:                                            # this part's rows; the tail: the last part's
        x, y = x[mine], y[mine]
        tail = tail if k == min(parts, streams) - 1 else ids[:0]   # the part that holds the last row
        n = len(mine) * length + max(len(tail) - 1, 0)
    total = torch.zeros((), dtype=torch.float64, device=device)
    state = None
    if len(x) == 0:
        model.train(was_training)
        return LMScore(0.0, n)
    try:
        with autocast(device, precision):
            for i in range(0, length, chunk):
                xb = x[:, i:i + chunk].to(device, torch.long, non_blocking=True)
                yb = y[:, i:i + chunk].to(device, torch.long, non_blocking=True)
                logits, state = model(xb, state)
                total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), yb.reshape(-1),
                                         reduction="sum").double()
            if len(tail) > 1:
                last = select_rows(state, slice(len(x) - 1, len(x)))
                for i in range(0, len(tail) - 1, chunk):
                    j = min(i + chunk, len(tail) - 1)
                    xb = tail[i:j][None].to(device, torch.long)
                    yb = tail[i + 1:j + 1][None].to(device, torch.long)
                    logits, last = model(xb, last)
                    total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), yb.reshape(-1),
                                             reduction="sum").double()
    finally:
        model.train(was_training)
    return LMScore(float(total), n)


def score_file(model, vocab: CharVocab, path: str, *, member: Optional[str] = None, encoding: str = "utf-8",
               errors: str = "strict", precision: str = "fp32", warn: Callable[[str], None] | None = None) -> LMScore:
    """Bits/char etc. of a text file under ``model``; unknown characters are skipped with a warning."""
    text = read_text(path, member=member, encoding=encoding, errors=errors)
    unknown = vocab.unknown(text)
    if unknown and warn:
        warn(f"{path}: " + describe_unknown(unknown))
    ids = vocab.encode(text, skip_unknown=True)
    if len(ids) < 2:
        raise CorpusError(f"{path} has fewer than two characters the model knows: nothing to score")
    return evaluate_stream(model, ids, precision=precision)


@torch.inference_mode()
def class_outputs(model, seqs: Sequence[torch.Tensor], *parts: Callable, batch_size: int = 256,
                  precision: str = "fp32") -> list[torch.Tensor]:
    """Run a ``SequenceClassifier`` in evaluation mode over encoded texts, in padded batches of similar
    length: for each of ``parts`` (callables ``(tokens, lengths) -> (B, C)``; none given: the model itself),
    its outputs for the texts in their order, (N, C) float64 on the CPU."""
    parts = parts or (model,)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [torch.empty(len(seqs), model.config.num_classes, dtype=torch.float64) for _ in parts]
    try:
        with autocast(device, precision):
            for idx in length_batches(seqs, batch_size):
                batch = pad_batch([seqs[i] for i in idx], torch.zeros(len(idx), dtype=torch.int64), PAD_MULTIPLE)
                tokens = batch.tokens.to(device)
                for o, part in zip(out, parts):
                    o[idx] = part(tokens, batch.lengths).double().cpu()
    finally:
        model.train(was_training)
    return out


def score_logits(logits: torch.Tensor, labels: torch.Tensor) -> ClassifyScore:
    """Summed cross-entropy and correct argmax predictions of class logits (N, C) for class indices (N,)."""
    nll = F.cross_entropy(logits.double(), labels, reduction="sum")
    return ClassifyScore(float(nll), int((logits.argmax(-1) == labels).sum()), len(labels))


def score(model, seqs: Sequence[torch.Tensor], labels: torch.Tensor, *,
          batch_size: int = 256, precision: str = "fp32") -> ClassifyScore:
    """Loss and accuracy of a ``SequenceClassifier`` on encoded texts with their class indices."""
    return score_logits(class_outputs(model, seqs, batch_size=batch_size, precision=precision)[0], labels)
