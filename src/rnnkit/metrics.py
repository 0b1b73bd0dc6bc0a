"""Scores computed once from sums: total negative log-likelihood in nats and the number of predictions.

    nats/char = NLL / n        perplexity = exp(NLL / n)        bits/char = NLL / (n · ln 2)

and, for classifiers, loss = NLL / examples and accuracy = correct / examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LMScore:
    nats: float        # summed NLL over every predicted character, in nats
    chars: int         # number of predicted characters

    @property
    def nats_per_char(self) -> float:
        return self.nats / self.chars if self.chars else float("nan")

    @property
    def perplexity(self) -> float:
        try:
            return math.exp(self.nats_per_char)
        except OverflowError:
            return float("inf")

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char / math.log(2)

    def __add__(self, other: "LMScore") -> "LMScore":
        return LMScore(self.nats + other.nats, self.chars + other.chars)

    def to_dict(self) -> dict:
        return {"nats_per_char": self.nats_per_char, "perplexity": self.perplexity,
                "bits_per_char": self.bits_per_char, "chars": self.chars}


@dataclass(frozen=True)
class ClassifyScore:
    nll: float          # summed cross-entropy over the examples, in nats
    correct: int        # argmax predictions equal to the label
    examples: int

    @property
    def loss(self) -> float:
        return self.nll / self.examples if self.examples else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.examples if self.examples else float("nan")

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "loss": self.loss, "examples": self.examples, "correct": self.correct}
