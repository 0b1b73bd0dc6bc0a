"""A classifier reading a text word by word: the class probabilities of every prefix of the text (the
classifier applied to the first 1, 2, ... words, so pooling and the backward direction mean for a prefix
what they mean for a whole text), and how much each word moved the probability of the predicted label."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.padded import encode_texts
from ..data.words import token_spans
from ..inference.predict import predict_proba
from ..runs import LoadedClassifier
from .trace import TextError

MAX_WORDS = 2_000                       # prefixes cost words² / 2 tokens


@dataclass(frozen=True)
class Reading:
    text: str
    spans: list[tuple[int, int]]        # where each word stands in ``text``
    words: list[str]                    # the words as the model reads them (lower-cased, tags dropped)
    known: list[bool]                   # whether each word is in the vocabulary (else it reads as <unk>)
    labels: list[str]
    start: torch.Tensor                 # (C,) probabilities with no words read (an empty text reads as <unk>)
    probs: torch.Tensor                 # (N, C) probabilities after each word
    label: int                          # the predicted label of the whole text

    @property
    def moved(self) -> torch.Tensor:
        """(N,) how much each word changed the probability of the predicted label."""
        p = torch.cat([self.start[None], self.probs])[:, self.label]
        return p[1:] - p[:-1]


def read(clf: LoadedClassifier, text: str, *, batch_size: int = 64) -> Reading:
    spans = token_spans(text)
    if not spans:
        raise TextError("the text has no words to classify")
    if len(spans) > MAX_WORDS:
        raise TextError(f"the text has {len(spans):,} words, more than the {MAX_WORDS:,} a page shows; "
                        f"cut it into pieces")
    words = [w for _, _, w in spans]
    prefixes = encode_texts(clf.vocab, [words[:i] for i in range(len(words) + 1)], clf.data)
    probs = predict_proba(clf.model, prefixes, batch_size=batch_size, precision=clf.precision).double()
    return Reading(text, [(a, b) for a, b, _ in spans], words, [w in clf.vocab.index for w in words],
                   list(clf.labels), probs[0], probs[1:], int(probs[-1].argmax()))
