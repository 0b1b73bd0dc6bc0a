"""Models: ``CharLM`` (characters in, next-character logits out). Imports only torch and the layers below.

State is explicit: ``forward(tokens, state=None) -> (logits, state)``; ``init_state(batch_size)`` builds a
zero state on the weights' device and dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .recurrent import Unrolled, make_recurrent


class CharLM(nn.Module):
    """Embedding (or one-hot) -> recurrent stack -> dropout -> linear head over the vocabulary."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.vocab_size < 1:
            raise ValueError("ModelConfig.vocab_size must be set (the number of distinct characters)")
        self.config = config
        v, e, h = config.vocab_size, config.embed_size, config.hidden_size
        self.embed = nn.Embedding(v, e) if e > 0 else None          # e = 0: one-hot inputs (seeds 000, 001)
        self.rnn = make_recurrent(config.cell, e if e > 0 else v, h, config.num_layers,
                                  config.dropout, config.backend)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(h, v)

    def inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        # tokens: (B, T) int64 -> (B, T, E or V)
        if self.embed is not None:
            return self.embed(tokens)
        return F.one_hot(tokens, self.config.vocab_size).to(self.head.weight.dtype)

    def forward(self, tokens: torch.Tensor, state=None):
        out, state = self.rnn(self.inputs(tokens), state)           # (B, T, H)
        return self.head(self.drop(out)), state                     # (B, T, V)

    def init_state(self, batch_size: int):
        if isinstance(self.rnn, Unrolled):
            return self.rnn.init_state(batch_size)
        c = self.config
        h = self.head.weight.new_zeros(c.num_layers, batch_size, c.hidden_size)
        return (h, h.clone()) if c.cell == "lstm" else h

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
