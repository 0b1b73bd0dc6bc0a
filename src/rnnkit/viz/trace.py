"""What a character model computes on one text, character by character: the surprisal of each character
and the model's top predictions for it, every layer's activations (the LSTM's tanh(c), other cells' h),
the fraction of steps each gate unit spends saturated, and a ranking of the units whose activation follows
simple features of the text (inside quotes, position in the line, ...).

The text is read as one stream from the zero state, as ``evaluate_stream(..., streams=1)`` scores it: the
first character has no prediction, characters outside the vocabulary are left out of the stream (and
marked), and the mean surprisal is that function's bits/char on the same text.

Torch's fused layers return only each layer's output, so the states and gates are recomputed here from the
layer's weights with the cell's equations (``tests/viz/test_trace.py`` checks them against the fused
layer's outputs and final state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..nn import registry
from ..nn.cells import Cell

MAX_CHARS = 20_000                      # longer texts: one line says how to cut them
TOP = 5                                 # predictions kept per character
SATURATED = (0.1, 0.9)                  # a gate below the first is left-, above the second right-saturated
SIGMOID_GATES = {"lstm": ("i", "f", "o"), "gru": ("r", "z")}      # the gates with a sigmoid (saturation)
QUOTES_OPEN, QUOTES_CLOSE, QUOTES_BOTH = "“«", "”»", '"'   # not ‘ ’: ’ is also the apostrophe
BRACKETS_OPEN, BRACKETS_CLOSE = "([{", ")]}"
FEATURES = ("in quotes", "in brackets", "position in line", "line break", "in a word", "position in word",
            "capital letter")                   # what ``text_features`` measures, in this order


class TextError(ValueError):
    """A text that cannot be traced (empty, too long, nothing the model knows)."""


@dataclass(frozen=True)
class LMTrace:
    text: str                           # the text as given
    positions: torch.Tensor             # (K,) int64: where in ``text`` each character of the stream stands
    ids: torch.Tensor                   # (K,) int64: the stream, the known characters of ``text``
    surprisal: torch.Tensor             # (K,) float64 bits, -log2 p(char | the stream before it); [0] is nan
    top_ids: torch.Tensor               # (K, TOP): the most likely characters where this one stands, best first
    top_probs: torch.Tensor             # (K, TOP)
    activations: list[torch.Tensor]     # per layer, (K, H): tanh(c) for the LSTM, h for other cells
    activation: str                     # "tanh(c)" or "h"
    saturation: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor]]]  # layer -> gate -> (left, right) (H,)
    unknown: int                        # characters of ``text`` outside the vocabulary

    @property
    def scored(self) -> int:
        """Characters with a prediction: every one of the stream but the first."""
        return max(len(self.ids) - 1, 0)

    @property
    def bits_per_char(self) -> float:
        return float(self.surprisal[1:].mean()) if self.scored else math.nan


def check_text(text: str, max_chars: int = MAX_CHARS) -> None:
    if not text:
        raise TextError("the text is empty: give some text to look at")
    if len(text) > max_chars:
        raise TextError(f"the text has {len(text):,} characters, more than the {max_chars:,} a page shows; cut it "
                        f"into pieces (e.g. the first {max_chars:,}: head -c {max_chars} FILE > part.txt, for ASCII text)")


@torch.inference_mode()
def trace_lm(model, vocab, text: str, *, max_chars: int = MAX_CHARS) -> LMTrace:
    """Trace a ``CharLM`` (fused or scratch layers, any registered cell) over ``text``."""
    check_text(text, max_chars)
    positions = torch.tensor([i for i, c in enumerate(text) if c in vocab.index], dtype=torch.int64)
    if len(positions) == 0:
        raise TextError("none of the text's characters is in the model's vocabulary; nothing to show")
    if len(positions) < 2:
        raise TextError("the text has fewer than two characters the model knows: nothing to predict; give more text")
    ids = vocab.encode(text, skip_unknown=True).long()
    model.eval()
    device = next(model.parameters()).device
    cfg = model.config
    x = model.inputs(ids[None].to(device))[0].float()                  # (K, E)
    activations, saturation = [], {}
    for k in range(cfg.num_layers):
        cell = layer_cell(model.rnn, k, cfg.cell, cfg.cell_options)
        x, shown, gates = run_layer(cell, cfg.cell, x)
        activations.append(shown.cpu())
        if gates is not None:
            lo, hi = SATURATED
            saturation[k] = {g: ((gates[:, j] < lo).double().mean(0).cpu(), (gates[:, j] > hi).double().mean(0).cpu())
                             for j, g in enumerate(SIGMOID_GATES[cfg.cell])}
    logp = torch.log_softmax(model.head(x).double(), -1).cpu()        # (K, V): row t predicts character t+1
    surprisal = torch.full((len(ids),), math.nan, dtype=torch.float64)
    surprisal[1:] = -logp[:-1].gather(1, ids[1:, None])[:, 0] / math.log(2)
    top = torch.full((len(ids), min(TOP, logp.shape[1])), -1, dtype=torch.int64)
    probs = torch.zeros(top.shape, dtype=torch.float64)
    if len(ids) > 1:
        p, i = logp[:-1].exp().topk(top.shape[1], dim=-1)
        top[1:], probs[1:] = i, p
    return LMTrace(text, positions, ids, surprisal, top, probs, activations,
                   "tanh(c)" if cfg.cell == "lstm" else "h", saturation, len(text) - len(ids))


def layer_cell(rnn, k: int, cell: str, options=None) -> Cell:
    """Layer ``k`` of a recurrent stack as rnnkit's scratch cell: the stack's own for scratch layers, a copy
    holding the fused layer's weights (torch.nn's names, suffixed ``_l{k}``) otherwise."""
    if hasattr(rnn, "cells"):
        return rnn.cells[k]
    spec = registry.get(cell)
    w_ih = getattr(rnn, f"weight_ih_l{k}")
    c = spec.scratch(w_ih.shape[1], rnn.hidden_size, rnn.bias, **spec.resolve_options(options)).to(w_ih.device)
    c.load_state_dict({name: getattr(rnn, f"{name}_l{k}") for name, _ in c.named_parameters()})
    return c.eval()


def run_layer(cell: Cell, kind: str, x: torch.Tensor):
    """One layer over the stream ``x`` (K, I) from the zero state -> (output h (K, H), shown activation
    (K, H), sigmoid gates (K, G, H) or None). LSTM and GRU steps are written out to keep their gates; other
    cells run their own ``unroll``."""
    H = cell.hidden_size
    if kind not in SIGMOID_GATES:
        out, _ = cell.unroll(cell.project(x[None]), cell.init_state(1))
        return out[0], out[0], None
    w_hh, b_hh = cell.weight_hh, cell.bias_hh
    xp = torch.nn.functional.linear(x, cell.weight_ih, cell.bias_ih)   # (K, G·H): input halves of every gate
    h = x.new_zeros(H)
    outs = x.new_empty(len(x), H)
    if kind == "lstm":
        c = x.new_zeros(H)
        cells = x.new_empty(len(x), H)
        gates = x.new_empty(len(x), 3, H)
        if b_hh is not None:
            xp = xp + b_hh
        for t in range(len(x)):
            a = xp[t] + w_hh @ h                                        # a_i a_f a_g a_o
            s = a.sigmoid().view(4, H)
            g = a[2 * H:3 * H].tanh()
            c = s[1] * c + s[0] * g                                     # c' = f ⊙ c + i ⊙ g
            h = s[3] * c.tanh()                                         # h' = o ⊙ tanh(c')
            outs[t], cells[t] = h, c
            gates[t, 0], gates[t, 1], gates[t, 2] = s[0], s[1], s[3]    # i f o
        return outs, cells.tanh(), gates
    gates = x.new_empty(len(x), 2, H)
    for t in range(len(x)):                                             # GRU, torch's form
        hp = w_hh @ h if b_hh is None else torch.addmv(b_hh, w_hh, h)   # W_h· h + b_h·
        rz = (xp[t, :2 * H] + hp[:2 * H]).sigmoid()
        n = torch.tanh(xp[t, 2 * H:] + rz[:H] * hp[2 * H:])
        h = n + rz[H:] * (h - n)                                        # h' = (1 - z) ⊙ n + z ⊙ h
        outs[t] = h
        gates[t] = rz.view(2, H)
    return outs, outs, gates


# ----------------------------------------------------------------------------- interesting units

def text_features(chars: Sequence[str]) -> dict[str, torch.Tensor]:
    """Simple features of the text at each character, as the model has read up to and including it:
    inside quotes, inside brackets, position in the line, just after a line break, inside a word, position
    in the word, a capital letter. Quotes and brackets close at a blank line (unbalanced marks stop there)."""
    n = len(chars)
    quote, bracket, col, newline, word, word_pos, caps = (torch.zeros(n) for _ in range(7))
    in_quote, depth, column, wpos, prev = False, 0, 0, 0, ""
    for t, ch in enumerate(chars):
        if ch == "\n" and prev == "\n":
            in_quote, depth = False, 0
        was = in_quote
        if ch in QUOTES_OPEN:
            in_quote = True
        elif ch in QUOTES_CLOSE:
            in_quote = False
        elif ch in QUOTES_BOTH:
            in_quote = not in_quote
        quote[t] = float(in_quote or was)                             # the closing mark is still inside
        depth = depth + 1 if ch in BRACKETS_OPEN else max(depth - 1, 0) if ch in BRACKETS_CLOSE else depth
        bracket[t] = float(depth > 0 or ch in BRACKETS_CLOSE)
        column = 0 if ch == "\n" else column + 1
        col[t] = column
        newline[t] = float(ch == "\n")
        wpos = wpos + 1 if ch.isalpha() else 0
        word[t], word_pos[t] = float(wpos > 0), wpos
        caps[t] = float(ch.isupper())
        prev = ch
    return dict(zip(FEATURES, (quote, bracket, col, newline, word, word_pos, caps)))


@dataclass(frozen=True)
class Unit:
    layer: int
    unit: int
    feature: Optional[str]              # the feature it follows best (None: no feature varies in the text)
    r: float                            # its Pearson correlation with that feature

    @property
    def name(self) -> str:
        return f"{self.layer}:{self.unit}"


def correlations(acts: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
    """Pearson correlation (U, F) of each unit's activation (K, U) with each feature (K,); 0 where either
    is constant over the text."""
    a = acts.double() - acts.double().mean(0)
    f = torch.stack([v.double() for v in features.values()], 1)
    f = f - f.mean(0)
    norm = a.norm(dim=0)[:, None] * f.norm(dim=0)[None]
    r = (a.T @ f) / norm.clamp_min(1e-12)
    return torch.where(norm > 1e-9, r, torch.zeros_like(r))


def rank_units(tr: LMTrace) -> list[Unit]:
    """Every unit of every layer, the one most correlated with a feature of the text first."""
    feats = text_features([tr.text[i] for i in tr.positions.tolist()])
    names = list(feats)
    units = []
    for k, acts in enumerate(tr.activations):
        r = correlations(acts, feats)
        best = r.abs().argmax(1)
        for u in range(acts.shape[1]):
            j = int(best[u])
            value = float(r[u, j])
            units.append(Unit(k, u, names[j] if value else None, value))
    return sorted(units, key=lambda u: (-abs(u.r), u.layer, u.unit))


def pick_units(tr: LMTrace, ranked: list[Unit], wanted: int | Sequence[tuple[int, int]]) -> list[Unit]:
    """``wanted`` top-ranked units taken in turn from each feature (the best unit of every feature, then
    the second best of each, ...: one feature followed by hundreds of units does not crowd out the rest),
    or the named ``(layer, unit)`` pairs in the order given."""
    if isinstance(wanted, int):
        by_feature: dict[Optional[str], list[Unit]] = {}
        for u in ranked:
            by_feature.setdefault(u.feature, []).append(u)
        queues = [by_feature[f] for f in by_feature if f is not None] + [by_feature.get(None, [])]
        out: list[Unit] = []
        for i in range(max(map(len, queues), default=0)):
            out += [q[i] for q in queues if i < len(q)]
            if len(out) >= wanted:
                break
        return out[:wanted]
    by_name = {(u.layer, u.unit): u for u in ranked}
    out = []
    for layer, unit in wanted:
        if not (0 <= layer < len(tr.activations) and 0 <= unit < tr.activations[0].shape[1]):
            raise ValueError(f"unit {layer}:{unit} is not in the model: it has layers 0-{len(tr.activations) - 1} "
                             f"of units 0-{tr.activations[0].shape[1] - 1}")
        out.append(by_name[(layer, unit)])
    return out
