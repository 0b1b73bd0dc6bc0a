"""Models: ``CharLM`` (characters in, next-character logits out) and ``SequenceClassifier`` (words in, class
logits out). Imports only torch and this layer's modules; a model takes its config dataclass
(``rnnkit.config``) but needs nothing from it beyond the fields.

State is explicit: ``forward(tokens, state=None) -> (logits, state)``; ``init_state(batch_size)`` builds a
zero state on the weights' device and dtype.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .recurrent import make_recurrent

PAIR_HASH = 1_000_003   # a word pair (a, b) falls in bucket (a · PAIR_HASH + b) mod N: a prime, so pairs spread

if TYPE_CHECKING:                      # for the annotations only: config sits in the layer above
    from ..config import ClassifierConfig, ModelConfig


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
                                  config.dropout, config.backend, config.cell_options)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(h, v)
        if config.init_std is not None:
            # d2l's from-scratch models (seed 001): every weight ~ N(0, std²), every bias 0.
            with torch.no_grad():
                for p in self.parameters():
                    if p.dim() > 1:
                        p.normal_(0.0, config.init_std)
                    else:
                        p.zero_()

    def inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        # tokens: (B, T) int64 -> (B, T, E or V)
        if self.embed is not None:
            return self.embed(tokens)
        return F.one_hot(tokens, self.config.vocab_size).to(self.head.weight.dtype)

    def forward(self, tokens: torch.Tensor, state=None):
        out, state = self.rnn(self.inputs(tokens), state)           # (B, T, H)
        return self.head(self.drop(out)), state                     # (B, T, V)

    def init_state(self, batch_size: int):
        return self.rnn.init_state(batch_size)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class SequenceClassifier(nn.Module):
    """Word ids -> embedding -> (bi)directional recurrent layers -> pooled valid steps -> class logits.

    ``forward(tokens, lengths)``: ``tokens`` (B, T) holds each text's ``lengths[b]`` ids followed by
    ``<pad>`` (0). No output is ever read from a padded position. Each direction of each layer is its own
    single-layer torch.nn module run over the whole padded batch (one fused call, fast on CPU); the backward
    direction reads every text reversed *within its length*::

        tokens     a b c _ _        forward reads  a b c | pads after the words: never read back
        reversed   c b a _ _        backward reads c b a | likewise, then flipped back into place

    so a padded step only ever follows the valid ones, and the answer (last valid state, or mean/max over
    valid steps) equals that of running each text alone. ``packed=True`` gets the same numbers through
    ``pack_padded_sequence`` instead (what cuDNN likes; about 5x slower on CPU).

    With ``naive_bayes = N`` the model also holds a multinomial Naive Bayes over the words and the pairs of
    adjacent words (a pair hashed into one of N buckets), as buffers: ``fit_naive_bayes`` counts it on the
    training texts, each distinct word and pair once per text (``naive_bayes_once``, the default) or at
    every occurrence. Outside training the logits are the blend ``a · log_softmax(network) + b ·
    log_softmax(naive Bayes)``, with ``blend = (a, b)``: (1, 0), the network alone, until it is fitted on
    held-out texts (training/classifier.py). Training never reads the Naive Bayes part.
    """

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        if config.vocab_size < 3 or config.num_classes < 2:
            raise ValueError("ClassifierConfig.vocab_size (>= 3) and num_classes (>= 2) must be set")
        self.config = config
        c = config
        d = 2 if c.bidirectional else 1
        self.embed = nn.Embedding(c.vocab_size, c.embed_size, padding_idx=0)
        self.layers = nn.ModuleList(                                # layers[k][0] forward, [k][1] backward
            nn.ModuleList(make_recurrent(c.cell, c.embed_size if k == 0 else d * c.hidden_size, c.hidden_size,
                                           options=c.cell_options)
                          for _ in range(d))
            for k in range(c.num_layers))
        self.drop = nn.Dropout(c.dropout)
        features = d * c.hidden_size * (2 if c.pooling == "meanmax" else 1)
        self.hidden = nn.Linear(features, c.head_hidden) if c.head_hidden else None
        self.head = nn.Linear(c.head_hidden or features, c.num_classes)
        if c.naive_bayes:                   # log p(feature | class), centred over the classes; rows: words, then pairs
            self.register_buffer("nb_table", torch.zeros(c.vocab_size + c.naive_bayes, c.num_classes))
            self.register_buffer("nb_prior", torch.zeros(c.num_classes))     # log p(class)
            self.register_buffer("blend", torch.tensor([1.0, 0.0]))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        logits = self.network(tokens, lengths)                      # (B, C)
        if not self.config.naive_bayes or self.training:
            return logits
        nb = self.naive_bayes(tokens, lengths)
        return self.blend[0] * logits.log_softmax(-1) + self.blend[1] * nb.log_softmax(-1)

    def network(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The recurrent network's class logits, (B, C), without the Naive Bayes part."""
        z = self.drop(self.features(tokens, lengths))              # (B, D·H)
        if self.hidden is not None:
            z = self.drop(F.relu(self.hidden(z)))
        return self.head(z)                                         # (B, C)

    def naive_bayes_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """Row of ``nb_table`` for each word pair: ``pairs[b, t]`` for the words at t and t+1, (B, T-1)."""
        c = self.config
        return c.vocab_size + (tokens[:, :-1] * PAIR_HASH + tokens[:, 1:]) % c.naive_bayes

    def naive_bayes_rows(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The ``nb_table`` rows a text reads, (B, 2T-1): its words, then its word pairs; row 0 (all zeros)
        for padding and, with ``naive_bayes_once``, for every repeat of a word or pair in the same text."""
        valid = torch.arange(tokens.shape[1], device=tokens.device)[None] < lengths.to(tokens.device)[:, None]
        rows = torch.cat([tokens.masked_fill(~valid, 0),
                          self.naive_bayes_features(tokens).masked_fill(~valid[:, 1:], 0)], 1)
        if self.config.naive_bayes_once:            # sorted, a repeat follows its first occurrence
            rows = rows.sort(1).values
            rows = torch.cat([rows[:, :1], rows[:, 1:].masked_fill(rows[:, 1:] == rows[:, :-1], 0)], 1)
        return rows

    def naive_bayes(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The Naive Bayes class scores log p(class) + Σ log p(feature | class) (centred), (B, C)."""
        return self.nb_prior + F.embedding(self.naive_bayes_rows(tokens, lengths), self.nb_table).sum(1)

    @torch.no_grad()
    def fit_naive_bayes(self, seqs: list[torch.Tensor], labels: torch.Tensor, alpha: float = 1.0) -> None:
        """Count the words and word pairs of each class in ``seqs`` (encoded texts) with add-``alpha``
        smoothing; features never seen in them weigh nothing. Resets ``blend`` to the network alone."""
        c, device = self.config, self.nb_table.device
        rows, classes = c.vocab_size + c.naive_bayes, c.num_classes
        counts = torch.zeros(rows * classes, dtype=torch.float64)
        labels = labels.to(torch.int64)
        prior = torch.bincount(labels, minlength=classes).to(torch.float64)
        for start in range(0, len(seqs), 1024):                     # a thousand texts per bincount
            feats = []
            for seq, label in zip(seqs[start:start + 1024], labels[start:start + 1024].tolist()):
                read = self.naive_bayes_rows(seq.to(torch.int64)[None], torch.tensor([len(seq)]))[0]
                feats.append(read * classes + label)                # the rows the text reads when classified
            counts += torch.bincount(torch.cat(feats), minlength=rows * classes).to(torch.float64)
        counts = counts.view(rows, classes)
        counts[0] = 0.0                         # row 0 (<pad>, and a repeat the text reads as no feature)
        seen = counts.sum(1) > 0
        log_p = (counts + alpha).log() - (counts.sum(0) + alpha * seen.sum()).log()
        log_p = torch.where(seen[:, None], log_p - log_p.mean(1, keepdim=True), 0.0)
        self.nb_table.copy_(log_p.to(device))
        self.nb_prior.copy_(((prior + alpha) / (prior.sum() + alpha * classes)).log().to(device))
        self.blend.copy_(torch.tensor([1.0, 0.0]))

    def features(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The pooled text representation, (B, D·H) with D = 2 directions when bidirectional (twice that wide
        for ``meanmax``)."""
        b, t = tokens.shape
        lengths_cpu = lengths.detach().to("cpu", torch.int64)
        if b and not torch.compiler.is_compiling() and (int(lengths_cpu.min()) < 1 or int(lengths_cpu.max()) > t):
            # (checked in eager code only: a traced or exported graph cannot branch on the lengths' values)
            raise ValueError(f"lengths must be in [1, {t}] (the padded width); got {lengths_cpu.tolist()}")
        lengths = lengths_cpu.to(tokens.device)
        steps = torch.arange(t, device=tokens.device)[None]        # (1, T)
        valid = steps < lengths[:, None]                            # (B, T)
        flip = torch.where(valid, lengths[:, None] - 1 - steps, steps)  # (B, T): reverse within each length
        if self.training and self.config.word_dropout:             # a word seen as <unk> (id 1), padding kept
            dropped = (torch.rand(tokens.shape, device=tokens.device) < self.config.word_dropout) & valid
            tokens = tokens.masked_fill(dropped, 1)
        x = self.drop(self.embed(tokens))                           # (B, T, E)
        for k, directions in enumerate(self.layers):
            if k:
                x = self.drop(x)
            outs = [self._run(directions[0], x, lengths_cpu)]       # (B, T, H)
            if len(directions) == 2:
                outs.append(_gather_steps(self._run(directions[1], _gather_steps(x, flip), lengths_cpu), flip))
            x = torch.cat(outs, dim=-1)                             # (B, T, D·H)
        return self._pool(x, lengths, valid)

    def _run(self, rnn: nn.Module, x: torch.Tensor, lengths_cpu: torch.Tensor) -> torch.Tensor:
        if not self.config.packed:
            return rnn(x)[0]
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths_cpu, batch_first=True, enforce_sorted=False)
        return nn.utils.rnn.pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=x.shape[1])[0]

    def _pool(self, x: torch.Tensor, lengths: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D·H) with garbage at the padded steps; lengths (B,); valid (B, T)
        pooling, h = self.config.pooling, self.config.hidden_size
        if pooling == "last":
            rows = torch.arange(x.shape[0], device=x.device)
            last = x[rows, lengths - 1, :h]                         # forward: state after the last word
            if not self.config.bidirectional:
                return last
            return torch.cat([last, x[:, 0, h:]], dim=-1)           # backward: state after the first word
        mask = valid[..., None]                                     # (B, T, 1)
        pooled = []
        if pooling in ("mean", "meanmax"):
            pooled.append(x.masked_fill(~mask, 0.0).sum(1) / lengths[:, None].to(x.dtype))
        if pooling in ("max", "meanmax"):
            pooled.append(x.masked_fill(~mask, float("-inf")).amax(1))
        return pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=-1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _gather_steps(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``out[b, t] = x[b, index[b, t]]`` for x (B, T, F) and index (B, T)."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))
