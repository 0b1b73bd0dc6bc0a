"""Frozen configuration dataclasses: what a run is, as plain data.

Every field has a default and a one-line meaning. The CLI and the server build these from flags, a TOML
file or a request (``settings.py``); the library takes them directly. They round-trip through JSON
(``to_dict``/``from_dict``), which is how a run directory records them. Cell names and a cell's own
options are checked against the cell registry (``nn/registry.py``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields
from typing import Any, Optional, TypeVar

from .nn import registry

BACKENDS = ("fused", "scratch")
BATCHINGS = ("consecutive", "random")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "linear", "plateau")
PRECISIONS = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
ERRORS = ("strict", "replace", "ignore")   # what to do with undecodable bytes


class ConfigError(ValueError):
    """A configuration value is invalid; the message says which and what would fit."""


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 0          # number of symbols; filled in from the training vocabulary
    cell: str = "gru"            # a registered cell: elman (sigmoid, Mikolov 2010) | rnn (tanh) | lstm | gru
                                 # (the GRU learns most per CPU minute: docs/benchmarks.md, recipe sweep)
    embed_size: int = 64         # input embedding width; 0 feeds one-hot vectors (as seeds 000/001 do)
    hidden_size: int = 256       # state width of every layer (384 wins from ~10 CPU minutes on)
    num_layers: int = 2          # stacked recurrent layers
    dropout: float = 0.0         # dropout between layers and before the output head
    backend: str = "fused"       # fused: torch.nn.RNN/LSTM/GRU; scratch: rnnkit's own cells (elman is always scratch)
    init_std: Optional[float] = None  # None: torch.nn's initialisation; s: weights ~ N(0, s²), biases 0 (d2l, seed 001)
    cell_options: Optional[dict] = None  # the cell's own hyperparameters (its registry entry's options); None:
                                      # its defaults. Stored resolved, defaults included

    def __post_init__(self) -> None:
        _choice("cell", self.cell, registry.names())
        _cell_options(self, registry.get(self.cell))
        _choice("backend", self.backend, BACKENDS)
        _at_least("vocab_size", self.vocab_size, 0)
        _at_least("embed_size", self.embed_size, 0)
        _at_least("hidden_size", self.hidden_size, 1)
        _at_least("num_layers", self.num_layers, 1)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.init_std is not None and not (math.isfinite(self.init_std) and self.init_std > 0):
            raise ConfigError(f"init_std must be a positive number (or absent for torch's init), got {self.init_std}")


@dataclass(frozen=True)
class DataConfig:
    path: Optional[str] = None          # text file (.txt, .zip, .gz, .bz2, .xz); None with `corpus`
    corpus: Optional[str] = None        # bundled corpus name: moliere | shakespeare | alphabet
    member: Optional[str] = None        # member to read from a zip holding several files
    encoding: str = "utf-8"             # text encoding of the file
    errors: str = "strict"              # decoding errors: strict | replace | ignore
    strip_gutenberg: bool = False       # keep only the text between Project Gutenberg's START/END markers
    start_marker: Optional[str] = None  # keep text from the first occurrence of this string (inclusive) ...
    end_marker: Optional[str] = None    # ... up to the next occurrence of this one (exclusive)
    limit_chars: Optional[int] = None   # keep only the first N characters (seeds 000 and 004)
    newlines_to_spaces: bool = False    # replace line breaks by spaces (seed 001)
    val_fraction: float = 0.1           # contiguous tail of the text held out for validation
    test_path: Optional[str] = None     # optional separate test file, evaluated at the end

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.limit_chars is not None:
            _at_least("limit_chars", self.limit_chars, 2)
        _choice("errors", self.errors, ERRORS)


@dataclass(frozen=True)
class TrainConfig:
    batching: str = "consecutive"       # consecutive: stateful TBPTT streams; random: fresh-state chunks
    fixed_grid: bool = False            # d2l's chunking (seed 001): chunks at 0, T, 2T, ... and no random offset
    batch_size: int = 64                # parallel sequences per step
    seq_len: int = 50                   # characters per sequence (truncated-BPTT length; in equal time 50 beat
                                        # 25 and 200, and beat or tied 100)
    optimizer: str = "adamw"            # sgd | adam | adamw (Adam with decoupled weight decay; with none, Adam)
    lr: Optional[float] = None          # peak learning rate; None: 5e-3 (the LSTM gains most from 5e-3 over
                                        # 3e-3), or 1e-3 for alphabets of over 1,000 symbols (Chinese text)
    weight_decay: float = 0.0           # L2 (sgd, adam) or decoupled (adamw) weight decay (the LM recipe: 0.1
                                        # from 3 passes over the text, training/recipes.py)
    beta2: float = 0.99                 # Adam's second-moment decay (betas 0.9, beta2): 0.99 never lost to
                                        # torch's 0.999 for the char LM (docs/benchmarks.md, "Recipes")
    momentum: float = 0.0               # SGD momentum
    schedule: str = "cosine"            # constant | cosine or linear (warm-up, then decay to min_lr_ratio) | plateau
    warmup_steps: int = 50              # linear warm-up steps (cosine, linear, plateau)
    min_lr_ratio: float = 0.05          # final learning rate as a fraction of lr (cosine, linear)
    clip: float = 1.0                   # global gradient-norm clip; 0 disables
    ema: float = 8.0                    # evaluate and save a moving average of the weights that spans about the
                                        # last 1/(EMA+1) of the steps (power-function profile); 0 disables
    steps: Optional[int] = None         # budget in optimizer steps
    epochs: Optional[float] = None      # budget in passes over the training text
    time_budget: Optional[float] = None # budget in seconds of training (evaluation time not counted)
    eval_every: Optional[int] = None    # validate every N steps ...
    eval_every_s: Optional[float] = 60.0  # ... or every N seconds of training, and at least once per epoch
                                        # (used when eval_every is None)
    eval_chars: Optional[int] = None    # periodic evaluations score about this many validation characters, spread
                                        # over the whole validation text (the final one scores all)
    seed: int = 1234                    # seeds weights, dropout and data order
    device: str = "auto"                # auto | cpu | cuda
    precision: str = "fp32"             # fp32 | bf16 (autocast)
    threads: Optional[int] = None       # CPU threads for torch; None keeps torch's default
    compile: bool = False               # torch.compile the training step (pays off for the scratch backend)
    recipe_probe: bool = True           # a recipe times a few training steps of each candidate model here;
                                        # False: it uses its cost model (same choice on every machine)
    tensorboard: Optional[str] = None   # also write every evaluation as TensorBoard events to this directory

    def __post_init__(self) -> None:
        _choice("batching", self.batching, BATCHINGS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("seq_len", self.seq_len, 1)
        _at_least("warmup_steps", self.warmup_steps, 0)
        if self.lr is not None:
            _positive_finite("lr", self.lr)
        for name in ("weight_decay", "momentum", "clip"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be >= 0, got {value}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not (math.isfinite(self.ema) and self.ema >= 0):
            raise ConfigError(f"ema must be a number >= 0 (0 disables the weight average), got {self.ema}")
        if not 0.0 <= self.beta2 < 1.0:
            raise ConfigError(f"beta2 must be in [0, 1), got {self.beta2}")
        if self.steps is not None:
            _at_least("steps", self.steps, 1)
        if self.epochs is not None:
            _positive_finite("epochs", self.epochs)
        if self.time_budget is not None:
            _positive_finite("time_budget", self.time_budget)
        if self.eval_every is not None:
            _at_least("eval_every", self.eval_every, 1)
        if self.eval_every_s is not None:
            _positive_finite("eval_every_s", self.eval_every_s)
        if self.eval_chars is not None:
            _at_least("eval_chars", self.eval_chars, 2)
        if self.threads is not None:
            _at_least("threads", self.threads, 1)


MAX_SAMPLES = 100_000
MAX_LENGTH = 1_000_000        # characters per sample: about five minutes of batch-1 generation on a laptop CPU


@dataclass(frozen=True)
class SampleConfig:
    prompt: str = "\n"                  # text the model reads before generating
    length: int = 500                   # characters to generate after the prompt (at least 1)
    temperature: float = 1.0            # softmax temperature; 0 = greedy argmax (seed 002's scale factor = 1/T)
    top_k: Optional[int] = None         # sample only among the k most likely characters
    top_p: Optional[float] = None       # nucleus sampling: smallest set with probability >= p
    num_samples: int = 1                # independent samples, generated together as one batch
    seed: Optional[int] = None          # seed of the sampling generator; None = nondeterministic

    def __post_init__(self) -> None:
        _at_least("length", self.length, 1)
        if self.length > MAX_LENGTH:
            raise ConfigError(f"length must be at most {MAX_LENGTH:,} characters; got {self.length:,} (generate "
                              f"longer texts in pieces, each prompted with the end of the last)")
        _at_least("num_samples", self.num_samples, 1)
        if self.num_samples > MAX_SAMPLES:
            raise ConfigError(f"num_samples must be at most {MAX_SAMPLES:,} (they are generated together as one "
                              f"batch); got {self.num_samples:,}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k is not None:
            _at_least("top_k", self.top_k, 1)
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")


MAX_BEAM = 1024               # beam width: the beam is one batch of this many rows


@dataclass(frozen=True)
class BeamConfig:
    prompt: str = "\n"                  # text the model reads before the search
    length: int = 200                   # characters to generate (at most, when a stop string ends a hypothesis)
    beam: int = 8                       # hypotheses kept at every step (the batch)
    num_return: int = 1                 # distinct hypotheses returned, best first (at most beam)
    stop: Optional[str] = None          # a hypothesis ends where its text ends with this (not included in it)
    length_penalty: float = 1.0         # alpha: hypotheses rank by log p / L^alpha, L = characters generated;
                                        # 0 ranks by log p alone (which favours ending early)

    def __post_init__(self) -> None:
        _at_least("length", self.length, 1)
        if self.length > MAX_LENGTH:
            raise ConfigError(f"length must be at most {MAX_LENGTH:,} characters; got {self.length:,}")
        _at_least("beam", self.beam, 1)
        if self.beam > MAX_BEAM:
            raise ConfigError(f"beam must be at most {MAX_BEAM:,} (the beam is one batch); got {self.beam:,}")
        _at_least("num_return", self.num_return, 1)
        if self.num_return > self.beam:
            raise ConfigError(f"num_return ({self.num_return}) must be at most the beam width ({self.beam}): "
                              f"a beam of {self.beam} holds that many hypotheses")
        if self.stop is not None and not self.stop:
            raise ConfigError("stop must be a non-empty string (or absent)")
        if not (math.isfinite(self.length_penalty) and self.length_penalty >= 0):
            raise ConfigError(f"length_penalty must be a number >= 0, got {self.length_penalty}")


# ----------------------------------------------------------------------------- helpers

def _cell_options(cfg: Any, spec: "registry.CellSpec") -> None:
    try:
        options = spec.resolve_options(cfg.cell_options)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    object.__setattr__(cfg, "cell_options", options)     # frozen: resolved once, here


def _choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(options)}; got {value!r}")


def _at_least(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _positive_finite(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


C = TypeVar("C")


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type[C], data: dict[str, Any], *, source: str = "config") -> C:
    """Build a config dataclass from a mapping, rejecting unknown keys with a clear message."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)} for {cls.__name__}; "
                          f"known: {', '.join(sorted(known))}")
    try:
        return cls(**data)
    except TypeError as e:  # pragma: no cover - dataclass signature mismatch
        raise ConfigError(f"{source}: {e}") from None
    except ConfigError as e:   # say where the bad value came from: a TOML table, a damaged run.json, ...
        raise ConfigError(f"{source}: {e}") from None


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")


def parse_duration(text: str | float | int) -> float:
    """'90', '90s', '10m', '1h30m', '2.5m' -> seconds (a positive float)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        m = _DURATION.match(str(text))
        if not m or not any(m.groups()):
            raise ConfigError(f"cannot read duration {text!r}: use seconds or units, e.g. 90, 90s, 10m, 1h30m")
        h, mi, s = (float(g) if g else 0.0 for g in m.groups())
        seconds = h * 3600 + mi * 60 + s
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"duration must be positive, got {text!r}")
    return seconds


# ----------------------------------------------------------------------------- sequence classification

POOLINGS = ("last", "mean", "max", "meanmax")
TEXT_FORMATS = ("auto", "aclimdb", "csv", "tsv", "jsonl")
TRUNCATIONS = ("head", "tail", "both")


@dataclass(frozen=True)
class ClassifierConfig:
    vocab_size: int = 0          # words incl. <pad> = 0 and <unk> = 1; filled in from the training vocabulary
    num_classes: int = 0         # distinct labels; filled in from the training labels
    cell: str = "lstm"           # a registered cell that classifiers may use: rnn (tanh) | lstm | gru (each
                                 # direction its fused torch.nn layer) | mingru | rglru (blocks, parallel scan)
    embed_size: int = 128        # word embedding width (row 0, <pad>, stays zero)
    hidden_size: int = 128       # state width of each direction
    num_layers: int = 1          # stacked recurrent layers
    bidirectional: bool = False  # also read every text backwards; features of both directions concatenated
    pooling: str = "max"         # last: final valid state of each direction | mean | max over the valid steps
                                 # | meanmax: the mean and the max, concatenated
    head_hidden: int = 0         # width of a ReLU layer before the output layer (seed 002: 64); 0 = linear head
    dropout: float = 0.3         # on embeddings, between layers and on the pooled features
    word_dropout: float = 0.0    # in training, each word of a text becomes <unk> with this probability
    packed: bool = False         # run through pack_padded_sequence (same weights, same outputs; ~5x slower on CPU)
    naive_bayes: int = 0         # N > 0: blend the network with a Naive Bayes over the words and the word pairs
                                 # (hashed into N buckets), counted on the training texts; the two weights
                                 # of the blend are fitted on the validation texts at the end. 0: off
    naive_bayes_once: bool = True  # each distinct word and pair counts once per text (binarized Naive Bayes);
                                 # False: every occurrence counts
    cell_options: Optional[dict] = None  # the cell's own hyperparameters, as ModelConfig's; stored resolved

    def __post_init__(self) -> None:
        _choice("cell", self.cell, registry.names(classifier=True))
        _cell_options(self, registry.get(self.cell))
        _choice("pooling", self.pooling, POOLINGS)
        if self.packed and registry.get(self.cell).scan:
            raise ConfigError(f"packed sequences are for the classic cells; {self.cell} blocks read the padded batch "
                              f"as it is (the padding follows the words, and a causal block never reads it back)")
        _at_least("vocab_size", self.vocab_size, 0)
        _at_least("num_classes", self.num_classes, 0)
        _at_least("embed_size", self.embed_size, 1)
        _at_least("hidden_size", self.hidden_size, 1)
        _at_least("num_layers", self.num_layers, 1)
        _at_least("head_hidden", self.head_hidden, 0)
        _at_least("naive_bayes", self.naive_bayes, 0)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.word_dropout < 1.0:
            raise ConfigError(f"word_dropout must be in [0, 1), got {self.word_dropout}")


@dataclass(frozen=True)
class TextDataConfig:
    path: Optional[str] = None          # aclImdb directory or .tar.gz, .csv/.tsv, .jsonl (any of them .gz too)
    format: str = "auto"                # auto (from the name) | aclimdb | csv | tsv | jsonl
    text_column: str = "text"           # CSV/TSV column or JSONL key holding the text
    label_column: str = "label"         # ... and the label (any strings; the label set goes in the checkpoint)
    split: str = "train"                # aclImdb split to train on
    val_fraction: float = 0.2           # seeded random share held out for validation (seed 002: 5,000 of 25,000)
    val_path: Optional[str] = None      # a separate validation file instead (same format and columns)
    encoding: str = "utf-8"             # text encoding of CSV/TSV/JSONL files and aclImdb reviews
    min_freq: int = 2                   # words seen fewer times in training become <unk>
    max_vocab: Optional[int] = 30000    # keep only the most frequent words (not counting <pad>, <unk>); None or 0: all
    max_tokens: Optional[int] = 400     # truncate longer texts to this many words; None or 0 keeps every word
    truncate: str = "both"              # which words a truncated text keeps: head | tail | both (half each end)
    bucket: int = 50                    # sort by length within pools of this many batches (less padding); 0: off

    def __post_init__(self) -> None:
        for name in ("max_vocab", "max_tokens"):
            if getattr(self, name) == 0:
                object.__setattr__(self, name, None)          # 0 = no limit, as on the command line
        _choice("format", self.format, TEXT_FORMATS)
        _choice("truncate", self.truncate, TRUNCATIONS)
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        _at_least("min_freq", self.min_freq, 1)
        _at_least("bucket", self.bucket, 0)
        if self.max_vocab is not None:
            _at_least("max_vocab", self.max_vocab, 1)
        if self.max_tokens is not None:
            _at_least("max_tokens", self.max_tokens, 1)


@dataclass(frozen=True)
class ClassifierTrainConfig(TrainConfig):
    """TrainConfig with the classifier's defaults (the IMDb configuration in docs/classify.md)."""
    optimizer: str = "adam"             # no weight decay (AdamW 0.01 was no better on sentences: docs/benchmarks.md)
    lr: Optional[float] = 3e-3          # peak learning rate
    beta2: float = 0.999                # Adam's second-moment decay (torch's default; not measured against 0.99)
    ema: float = 0.0                    # no weight average (not measured for classifiers)
    warmup_steps: int = 100             # linear warm-up steps (cosine, linear); at most a tenth of a step budget
    eval_every_s: Optional[float] = None  # None with eval_every None: validate at the end of every epoch
    patience: Optional[int] = None      # stop after this many epochs without a better validation accuracy

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.patience is not None:
            _at_least("patience", self.patience, 1)
