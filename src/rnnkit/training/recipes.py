"""Recipes: the settings a user left unset, chosen from the budget, the data and the machine.

A character language model's loss after a time budget depends on how many characters each candidate
model trains on per second here (measured by a short probe, or a cost model calibrated on a 2-core CPU)
and on how many passes over the training text those characters make (too many and the model memorises it).
``choose_lm`` picks, for the fields it may choose (``auto``):

- the width: the widest of ``WIDTHS`` (``BLOCK_WIDTHS`` for scan blocks) that still takes at least ``MIN_STEPS`` optimizer steps in the
  budget (a wider model learns more per step, a narrower one takes more steps), and no wider than
  ``MAX_PARAMS_PER_CHAR`` parameters per training character;
- dropout from the passes the chosen model will make over the training text (``DROPOUT``);
- AdamW's weight decay from the same passes (``WEIGHT_DECAY``);
- the learning rate from the alphabet, the width and, for large alphabets, the steps (``lr_for``).

A step or epoch budget fixes the work, not the time, so the width stays ``BASE_WIDTH`` (blocks: ``BLOCK_BASE_WIDTH``) there and only the
regularisation follows the passes. The measurements behind each constant are in docs/benchmarks.md
("Recipes"). ``choose_classifier`` does the same for classifiers from the number and length of the texts.

The choice is a ``Recipe``: the values, the reason in one line, and the rates it used; run.json records it
and a resumed run keeps it.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn.functional as F

from ..config import ClassifierConfig, ModelConfig, TextDataConfig, TrainConfig
from ..nn import registry
from ..nn.device import autocast
from ..nn.models import CharLM
from .trainer import make_optimizer

LM_MODEL_FIELDS = ("hidden_size", "num_layers", "embed_size", "dropout")
LM_TRAIN_FIELDS = ("lr", "weight_decay", "batch_size", "seq_len")
LM_FIELDS = LM_MODEL_FIELDS + LM_TRAIN_FIELDS

WIDTHS = (256, 384, 512, 768, 1024)    # candidate state widths, smallest first
BASE_WIDTH = 256                       # the width for step and epoch budgets, and when nothing wider fits
BLOCK_WIDTHS = (128, 192, 256, 384, 512)   # the same for scan blocks (nn/blocks.py), which hold 2-3x a GRU
BLOCK_BASE_WIDTH = 192                     # layer's parameters at a width: a 2x192 minGRU ~ a 2x256 GRU's time
MIN_STEPS = 1500                       # a wider model is worth it only with at least this many steps
MAX_PARAMS_PER_CHAR = 4.0              # no more parameters than this per training character: on Tiny
                                       # Shakespeare a 2x768 GRU (5.5 per char) was no better than a 2x512
                                       # (2.5) at equal steps; The Mysterious Island's 480 K chars: 2x384 (3.4) led
DROPOUT = ((3.0, 0.0), (8.0, 0.1), (12.0, 0.2), (24.0, 0.3), (math.inf, 0.4))   # passes below N -> dropout
WEIGHT_DECAY = ((3.0, 0.0), (math.inf, 0.1))   # passes below N -> AdamW's decoupled weight decay (Tiny
                                               # Shakespeare, 2x512 GRU, 5.7 passes: 0.1 gained 0.011 nats/char)
LARGE_ALPHABET = 1000                  # symbols; above this the learning rate is lower ...
LARGE_ALPHABET_LR = ((1000, 2e-3), (math.inf, 1e-3))   # ... by the steps: below N steps -> lr

# Cost model (probe off): chars/s = COST_K * (multiply-adds per character) ** -COST_ALPHA, fitted to
# probed 2-layer GRUs 256-768 wide at batches of 64x50, 2 threads, on the 2-core AMD EPYC of
# docs/benchmarks.md (35,800 / 18,600 / 11,100 / 5,350 chars/s). Deterministic, so tests and benchmarks
# that switch the probe off choose the same recipe on any machine.
COST_K, COST_ALPHA = 35_800.0 * 655_616 ** 0.894, 0.894
# Scan blocks run norms, a convolution and an elementwise scan beside their matmuls: probed 2-layer minGRU
# and RG-LRU blocks 128-256 wide (same machine, batches of 64x50) trained at 0.32-0.50x the rate the GRU's
# curve gives for their multiply-adds (minGRU 22,200 / 12,900 / 8,800 chars/s, RG-LRU 13,000 / 7,500 /
# 5,000 at 128 / 192 / 256 wide).
SCAN_COST_FACTOR = 0.4


@dataclass(frozen=True)
class Recipe:
    """What a recipe chose and why; ``to_dict`` is run.json's ``recipe``."""
    auto: tuple[str, ...]                 # the fields it was free to choose
    chosen: dict[str, Any]                # field -> value, for the fields in ``auto``
    reason: str                           # one line
    rates: dict[str, float]               # units/s per candidate it measured or modelled ({} if none)
    rate_source: str                      # "probe", "cost model" or "none"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"auto": list(self.auto)}

    def line(self) -> str:
        return f"recipe: {self.reason}"


# ----------------------------------------------------------------------------- speed

def _gates(cell: str) -> int:
    """Weight blocks per layer: the cell's gates (LSTM 4, GRU 3), 1 for a cell that declares none."""
    return max(1, len(registry.get(cell).gates))


def widths(cell: str) -> tuple[tuple[int, ...], int]:
    """The candidate widths for ``cell``, smallest first, and its width for step and epoch budgets."""
    return (BLOCK_WIDTHS, BLOCK_BASE_WIDTH) if registry.get(cell).scan else (WIDTHS, BASE_WIDTH)


def num_parameters(model: ModelConfig) -> int:
    """The parameter count of ``model``, built on the meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        return CharLM(model).num_parameters()


def cost_per_char(cell: str, layers: int, width: int, embed: int, vocab: int) -> float:
    """Multiply-adds of one character's forward pass: every layer's gate blocks and the output layer (a scan
    block: its weights other than the embedding, each used once per character)."""
    if registry.get(cell).scan:
        model = ModelConfig(vocab_size=vocab, cell=cell, hidden_size=width, num_layers=layers, embed_size=embed)
        return float(num_parameters(model) - vocab * embed)
    gates = _gates(cell)
    inp = embed if embed > 0 else vocab
    macs = gates * (inp + width) * width + (layers - 1) * gates * 2 * width * width
    return float(macs + vocab * width)


def modelled_rate(cell: str, layers: int, width: int, embed: int, vocab: int) -> float:
    rate = COST_K * cost_per_char(cell, layers, width, embed, vocab) ** -COST_ALPHA
    return rate * SCAN_COST_FACTOR if registry.get(cell).scan else rate


def probed_rate(model_cfg: ModelConfig, batch: int, seq: int, device: torch.device, *, steps: int = 3,
                min_time: float = 0.3, warmup: int = 2, precision: str = "fp32") -> float:
    """Characters per second of full training steps (forward, backward, clipping, the trainer's optimizer
    update: ``make_optimizer``) of this model on
    random text, in the ``precision`` training will use: ``warmup`` steps (kernels chosen, memory
    allocated), then the median of at least ``steps`` timed ones lasting ``min_time`` seconds together (at
    most 4x ``steps``). Leaves torch's random state as it found it."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        model = CharLM(model_cfg).to(device)
        opt = make_optimizer(model.parameters(), TrainConfig(lr=1e-3))
        v = model_cfg.vocab_size
        x = torch.randint(v, (batch, seq), device=device)
        y = torch.randint(v, (batch, seq), device=device)
        times: list[float] = []
        i = 0
        while len(times) < steps or (sum(times) < min_time and len(times) < 4 * steps):
            t = time.perf_counter()
            with autocast(device, precision):
                logits, _ = model(x)
                loss = F.cross_entropy(logits.reshape(-1, v), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - t)
            i += 1
        del model, opt
    return batch * seq / statistics.median(times)


# ----------------------------------------------------------------------------- language models

def lr_for(vocab_size: int, width: int, cell: str = "gru", steps: float | None = None) -> float:
    """Adam's peak learning rate. For alphabets of over ``LARGE_ALPHABET`` symbols (most of them rare: Adam
    moves a rare symbol's weights as far as a common one's) 1e-3, or 2e-3 for runs of under 1,000 steps
    (``LARGE_ALPHABET_LR``: on Jay Chou's lyrics 2e-3 led by 0.04-0.06 nats/char at 420 steps and 1e-3 by
    0.04 at 1,800; ``steps`` None counts as a long run). Else 5e-3 for the LSTM (5e-3 and 8e-3 beat 3e-3
    and 2e-3 at 2x256) and for other cells up to 256 wide, 3e-3 above (a 2x384 GRU: 3e-3 beat 2e-3 and
    5e-3)."""
    if vocab_size > LARGE_ALPHABET:
        return _below(LARGE_ALPHABET_LR, math.inf if steps is None else steps)
    return 5e-3 if width <= BASE_WIDTH or cell == "lstm" else 3e-3


def _below(table: tuple[tuple[float, float], ...], x: float) -> float:
    """The value of the first ``(below, value)`` row with ``x < below``; the last row's for any larger ``x``."""
    return next((value for below, value in table if x < below), table[-1][1])


def dropout_for(passes: float) -> float:
    return _below(DROPOUT, passes)


def weight_decay_for(passes: float) -> float:
    return _below(WEIGHT_DECAY, passes)


def choose_lm(model: ModelConfig, train: TrainConfig, auto: Iterable[str], *, train_chars: int,
              device: torch.device) -> tuple[ModelConfig, TrainConfig, Recipe]:
    """Fill the fields named in ``auto`` (of ``LM_FIELDS``); the others keep the values given. ``model``
    must have its vocab_size; ``train`` its budget (time, steps and/or epochs)."""
    auto = tuple(f for f in LM_FIELDS if f in set(auto))
    vocab = model.vocab_size
    batch = train.batch_size if "batch_size" not in auto else TrainConfig.batch_size
    seq = train.seq_len if "seq_len" not in auto else TrainConfig.seq_len
    layers = model.num_layers if "num_layers" not in auto else ModelConfig.num_layers
    embed = model.embed_size if "embed_size" not in auto else ModelConfig.embed_size
    base = dataclasses.replace(model, num_layers=layers, embed_size=embed)
    per_step = batch * seq
    notes: list[str] = []
    rates: dict[str, float] = {}
    source = "none"
    probe_s = 0.0

    fixed_steps = None
    if train.steps is not None or train.epochs is not None:
        budgets = [train.steps] if train.steps is not None else []
        if train.epochs is not None:
            budgets.append(math.ceil(train.epochs * max(1, train_chars // per_step)))
        fixed_steps = min(budgets)

    def rate(width: int) -> float:
        nonlocal source, probe_s
        if train.recipe_probe:
            source = "probe"
            t0 = time.perf_counter()
            r = probed_rate(dataclasses.replace(base, hidden_size=width, dropout=0.0), batch, seq, device,
                            precision=train.precision)
            probe_s += time.perf_counter() - t0
        else:
            source = "cost model"
            r = modelled_rate(model.cell, layers, width, embed, vocab)
        rates[str(width)] = round(r, 1)     # the training loop runs at the probe's rate (median 0.99x over 11
        return r                            # 10-minute runs, 0.79-1.17x: docs/benchmarks.md, "Recipes")

    def steps_in_time(width: int) -> float:
        return rate(width) * train.time_budget / per_step

    def params(width: int) -> int:
        return num_parameters(dataclasses.replace(base, hidden_size=width))

    if "hidden_size" in auto:
        cap = MAX_PARAMS_PER_CHAR * train_chars
        candidates, base_width = widths(model.cell)
        if fixed_steps is not None:
            width = base_width
            steps = float(fixed_steps)
            notes.append(f"{fixed_steps:,} steps given: {width} wide")
        else:
            width, steps = candidates[0], steps_in_time(candidates[0])
            why = (f"the widest of {'/'.join(map(str, candidates))} with at least {MIN_STEPS:,} steps"
                   if steps >= MIN_STEPS else f"under {MIN_STEPS:,} steps even {candidates[0]} wide: the narrowest")
            for w in candidates[1:] if steps >= MIN_STEPS else ():
                if params(w) > cap:
                    notes.append(f"{w} wide would have over {MAX_PARAMS_PER_CHAR:g} parameters per training char")
                    break
                s = steps_in_time(w)
                if s < MIN_STEPS:
                    break
                width, steps = w, s
            measured = f"probed in {probe_s:.0f}s" if source == "probe" else source
            notes.insert(0, f"{_duration(train.time_budget)} at {rates[str(width)]:,.0f} chars/s ({measured}) is "
                            f"{steps:,.0f} steps: {why}")
        if train.time_budget is not None and fixed_steps is not None:
            steps = min(steps, steps_in_time(width))
    else:
        width = model.hidden_size
        # the steps decide dropout, and the learning rate of a large alphabet
        needs_steps = "dropout" in auto or "weight_decay" in auto or ("lr" in auto and vocab > LARGE_ALPHABET)
        if fixed_steps is not None:
            steps = float(fixed_steps)
            if train.time_budget is not None and needs_steps:
                steps = min(steps, steps_in_time(width))
        elif needs_steps:
            steps = steps_in_time(width)
        else:
            steps = 0.0
    passes = steps * per_step / max(1, train_chars)

    chosen: dict[str, Any] = {}
    if "hidden_size" in auto:
        chosen["hidden_size"] = width
    if "num_layers" in auto:
        chosen["num_layers"] = layers
    if "embed_size" in auto:
        chosen["embed_size"] = embed
    regularised = []
    if "dropout" in auto:
        chosen["dropout"] = dropout_for(passes)
        regularised.append(f"dropout {chosen['dropout']:g}")
    if "weight_decay" in auto:
        # the recipe's decay is AdamW's (decoupled); as L2 through Adam's or SGD's gradient it was not measured
        decoupled = train.optimizer == "adamw"
        chosen["weight_decay"] = weight_decay_for(passes) if decoupled else 0.0
        regularised.append(f"weight decay {chosen['weight_decay']:g}"
                           + ("" if decoupled else f" (with {train.optimizer}: the recipe's is AdamW's)"))
    if regularised:
        notes.append(f"{passes:.1f} passes over {train_chars:,} training chars: {', '.join(regularised)}")
    if "lr" in auto:
        chosen["lr"] = lr_for(vocab, width, model.cell, steps)
        if vocab > LARGE_ALPHABET:
            short = steps < LARGE_ALPHABET_LR[0][0]
            notes.append(f"lr {chosen['lr']:g} for an alphabet of over {LARGE_ALPHABET:,} symbols and "
                         f"{'under' if short else 'at least'} {LARGE_ALPHABET_LR[0][0]:,} steps")
    if "batch_size" in auto:
        chosen["batch_size"] = batch
    if "seq_len" in auto:
        chosen["seq_len"] = seq

    model = dataclasses.replace(model, **{k: v for k, v in chosen.items() if k in LM_MODEL_FIELDS})
    train = dataclasses.replace(train, **{k: v for k, v in chosen.items() if k in LM_TRAIN_FIELDS})
    m = model
    what = (f"{m.num_layers}x{m.hidden_size} {m.cell}, embedding {m.embed_size}, dropout {m.dropout:g}, "
            f"lr {train.lr:g}, {train.optimizer} weight decay {train.weight_decay:g}, "
            f"batches {train.batch_size}x{train.seq_len}")
    given = [f for f in LM_FIELDS if f not in auto]
    reason = what + (f" ({'; '.join(notes)})" if notes else "") + (
        f"; given: {', '.join(given)}" if given and auto else "")
    return model, train, Recipe(auto, chosen, reason if auto else what + " (all given)", rates, source)


def _duration(seconds: float) -> str:
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g}s"


# ----------------------------------------------------------------------------- classifiers

CLASSIFIER_MODEL_FIELDS = ("bidirectional", "pooling", "dropout", "naive_bayes")
CLASSIFIER_DATA_FIELDS = ("min_freq",)
CLASSIFIER_TRAIN_FIELDS = ("epochs", "patience")
CLASSIFIER_FIELDS = CLASSIFIER_MODEL_FIELDS + CLASSIFIER_DATA_FIELDS + CLASSIFIER_TRAIN_FIELDS
SMALL_SET = 20_000                    # training texts; below this: every word kept, more dropout
PASSES_OF_LARGE_SET = 3 * 20_000      # text-passes: IMDb's 20,000 reviews for 3 epochs (88.7 %, docs/classify.md)
MAX_EPOCHS = 30
SHORT_TEXT = 100                      # words per text (mean, after truncation); below this: mean pooling
CLASSIFIER_PATIENCE = 2               # epochs without a better validation accuracy before stopping ...
PATIENCE_STEPS = 100                  # ... and at least this many steps: a network may take a hundred steps to
                                      # leave chance, a few epochs of a small set (800 IMDb reviews: 13 a epoch)
NB_CELLS = 1 << 22                    # at most this many (pair bucket, class) counts: 16 MB of float32
NB_MIN_BUCKETS = 1 << 12


def naive_bayes_buckets(pair_types: int, classes: int) -> int:
    """Buckets for the Naive Bayes word pairs: the power of two at least twice the distinct pairs of the
    training texts (few of them share a bucket), from ``NB_MIN_BUCKETS`` up to ``NB_CELLS / classes``."""
    cap = max(NB_MIN_BUCKETS, 1 << (NB_CELLS // max(1, classes)).bit_length() - 1)
    return min(cap, max(NB_MIN_BUCKETS, 1 << (2 * pair_types - 1).bit_length()))


def pair_types(seqs: Iterable[torch.Tensor]) -> int:
    """Distinct pairs of adjacent words over encoded texts."""
    keys = [s[:-1].to(torch.int64) * (1 << 31) + s[1:] for s in seqs if len(s) > 1]
    return int(torch.cat(keys).unique().numel()) if keys else 0


def min_freq_for(train_texts: int) -> int:
    """Words seen fewer times become <unk>: 1 (keep every word) below ``SMALL_SET`` texts, else 2."""
    return 1 if train_texts < SMALL_SET else 2


def choose_classifier(model: ClassifierConfig, data: TextDataConfig, train: TrainConfig, auto: Iterable[str], *,
                      train_texts: int, mean_words: float, has_budget: bool, pair_types: int = 0,
                      classes: int = 2) -> tuple[ClassifierConfig, TextDataConfig, TrainConfig, Recipe]:
    """Fill the classifier fields named in ``auto`` (of ``CLASSIFIER_FIELDS``) from the number of training
    texts, their mean length in words, their distinct word pairs and the number of classes. ``epochs`` and
    ``patience`` are chosen only when no budget was given (``has_budget`` False)."""
    auto = tuple(f for f in CLASSIFIER_FIELDS if f in set(auto))
    small = train_texts < SMALL_SET
    chosen: dict[str, Any] = {}
    notes: list[str] = []
    if "bidirectional" in auto:
        chosen["bidirectional"] = True
    if "pooling" in auto:
        chosen["pooling"] = "mean" if mean_words < SHORT_TEXT else "max"
        notes.append(f"{mean_words:.0f} words per text: {chosen['pooling']} pooling")
    if "dropout" in auto:
        chosen["dropout"] = 0.5 if small else 0.3
    if "naive_bayes" in auto:
        chosen["naive_bayes"] = naive_bayes_buckets(pair_types, classes)
        notes.append(f"{pair_types:,} distinct word pairs: {chosen['naive_bayes']:,} Naive Bayes buckets")
    if "min_freq" in auto:
        chosen["min_freq"] = min_freq_for(train_texts)
    if (small and {"dropout", "min_freq"} & set(auto)):
        notes.append(f"{train_texts:,} training texts (under {SMALL_SET:,}): "
                     + ", ".join(f"{k.replace('_', ' ')} {chosen[k]:g}" for k in ("dropout", "min_freq") if k in chosen))
    if not has_budget:
        if "epochs" in auto:
            chosen["epochs"] = float(min(MAX_EPOCHS, max(3, math.ceil(PASSES_OF_LARGE_SET / max(1, train_texts)))))
            notes.append(f"{chosen['epochs']:g} epochs for {train_texts:,} texts")
        if "patience" in auto:
            per_epoch = math.ceil(train_texts / train.batch_size)
            chosen["patience"] = max(CLASSIFIER_PATIENCE, math.ceil(PATIENCE_STEPS / max(1, per_epoch)))
            notes.append(f"stop after {chosen['patience']} epochs without a better validation accuracy"
                         + (f" (at least {PATIENCE_STEPS} steps)" if chosen["patience"] > CLASSIFIER_PATIENCE else ""))
    model = dataclasses.replace(model, **{k: v for k, v in chosen.items() if k in CLASSIFIER_MODEL_FIELDS})
    data = dataclasses.replace(data, **{k: v for k, v in chosen.items() if k in CLASSIFIER_DATA_FIELDS})
    train = dataclasses.replace(train, **{k: v for k, v in chosen.items() if k in CLASSIFIER_TRAIN_FIELDS})
    what = (f"{model.num_layers}x{model.hidden_size} {'bidirectional ' if model.bidirectional else ''}{model.cell}, "
            f"{model.pooling} pooling, dropout {model.dropout:g}, min word frequency {data.min_freq}"
            f"{', Naive Bayes blend' if model.naive_bayes else ''}")
    return model, data, train, Recipe(auto, chosen, what + (f" ({'; '.join(notes)})" if notes else ""), {}, "none")
