"""Sequence classification: labelled texts -> words -> padded batches -> SequenceClassifier -> Trainer.

Data: the aclImdb layout (``{split}/{label}/*.txt``) read from its directory or straight from the
``.tar.gz``; CSV/TSV with named columns; JSON Lines. Labels are any strings; their sorted set is stored in
the run directory with the vocabulary, so ``load`` needs nothing but the run.

The run directory is the language model's (checkpoint.py) with ``task: "classifier"`` in run.json; the
loop is the shared Trainer with a ``ClassifyTask``; early stopping runs the Trainer an epoch at a time.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import json
import math
import re
import sys
import tarfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from .config import ClassifierConfig, TextDataConfig, TrainConfig, from_dict, to_dict
from .corpus import CorpusError
from .evaluate import autocast, precision_warning
from .models import SequenceClassifier
from .text import UNK_ID, WordVocab, tokenize
from .metrics import ClassifyScore
from .trainer import Trainer, TrainingStopped, resolve_device

# What `rnnkit classify train` uses where TrainConfig's language-model defaults do not fit: validation at
# each epoch's end (the IMDb configuration in docs/classify.md).
TRAIN_DEFAULTS = {"batch_size": 64, "lr": 3e-3, "warmup_steps": 100, "eval_every_s": None}
# With no budget given: DEFAULT_EPOCHS, but at least DEFAULT_MIN_STEPS steps (a small data set needs more
# passes; the best validation weights are kept, so extra epochs cost time, not accuracy).
DEFAULT_EPOCHS, DEFAULT_MIN_STEPS = 3, 200
RESUMABLE_FIELDS = ("steps", "epochs", "time_budget", "device", "threads")


# ----------------------------------------------------------------------------- reading labelled text

@dataclass
class Examples:
    texts: list[str]
    labels: list[str]
    source: str                 # for messages: "aclImdb_v1.tar.gz (train)", "data.csv"

    def __len__(self) -> int:
        return len(self.texts)


def detect_format(path: str | Path) -> str:
    p = Path(path)
    name = p.name.lower()
    if p.is_dir() or name.endswith((".tar.gz", ".tgz", ".tar")):
        return "aclimdb"
    name = name[:-3] if name.endswith(".gz") else name
    for suffixes, fmt in (((".csv",), "csv"), ((".tsv", ".tab"), "tsv"), ((".jsonl", ".ndjson"), "jsonl")):
        if name.endswith(suffixes):
            return fmt
    raise CorpusError(f"cannot tell the format of {path} from its name: pass --format aclimdb, csv, tsv or jsonl")


def read_examples(path: str | Path, *, format: str = "auto", split: str = "train", text_column: str = "text",
                  label_column: str = "label", encoding: str = "utf-8") -> Examples:
    """Labelled texts from ``path``; ``split`` picks the aclImdb split, the columns pick CSV/JSONL fields."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: no such file or directory")
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "aclimdb":
        ex = read_aclimdb(path, split, encoding=encoding)
    elif fmt == "jsonl":
        ex = _read_jsonl(path, text_column, label_column, encoding)
    else:
        ex = _read_table(path, "\t" if fmt == "tsv" else ",", text_column, label_column, encoding)
    if not ex.texts:
        raise CorpusError(f"{ex.source} holds no labelled texts")
    return ex


_ACL_MEMBER = re.compile(r"^(?:[^/]+/)?([^/]+)/([^/]+)/([^/]+\.txt)$")   # [root/]split/label/ID_RATING.txt


def read_aclimdb(path: Path, split: str, *, encoding: str = "utf-8") -> Examples:
    """The aclImdb layout ``[aclImdb/]{split}/{label}/*.txt`` from a directory or a tar archive (read as a
    stream, never unpacked). ``unsup`` (unlabelled reviews) is skipped. Order: by label, then file name."""
    found: list[tuple[str, str, str]] = []                       # (label, file name, text)
    if path.is_dir():
        root = path if (path / split).is_dir() else path / "aclImdb"
        base = root / split
        if base.is_dir():
            for label_dir in base.iterdir():
                if label_dir.is_dir() and label_dir.name != "unsup":
                    found += [(label_dir.name, f.name, _decode(f.read_bytes(), encoding, f))
                              for f in label_dir.glob("*.txt")]
    else:
        try:
            with tarfile.open(path, "r|*") as archive:
                for member in archive:
                    m = _ACL_MEMBER.match(member.name)
                    if member.isfile() and m and m.group(1) == split and m.group(2) != "unsup":
                        data = archive.extractfile(member).read()
                        found.append((m.group(2), m.group(3), _decode(data, encoding, f"{path}:{member.name}")))
        except (tarfile.TarError, EOFError, OSError) as e:
            raise CorpusError(f"{path}: not a readable tar archive ({e})") from None
    if not found:
        raise CorpusError(f"{path}: no reviews for split {split!r} (expected {split}/<label>/*.txt, "
                          f"e.g. {split}/pos/0_9.txt, as in aclImdb)")
    found.sort(key=lambda r: (r[0], _natural(r[1])))
    return Examples([r[2] for r in found], [r[0] for r in found], f"{path.name} ({split})")


def _natural(name: str) -> tuple:
    return tuple(int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name))


def _decode(data: bytes, encoding: str, where) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise CorpusError(f"{where}: not {encoding} text ({e.reason} at byte {e.start}); pass --encoding") from None


def _open_text(path: Path, encoding: str):
    raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding=encoding, newline="")


def _read_table(path: Path, delimiter: str, text_column: str, label_column: str, encoding: str) -> Examples:
    csv.field_size_limit(1 << 30)                                 # reviews can be long
    texts, labels = [], []
    try:
        with _open_text(path, encoding) as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            columns = reader.fieldnames or []
            for col, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
                if col not in columns:
                    raise CorpusError(f"{path} has no column {col!r} (its columns: {', '.join(map(repr, columns))}); "
                                      f"name the right one with {flag}")
            for row in reader:
                text, label = row[text_column], row[label_column]
                if text is None or label is None or not label.strip():
                    missing = text_column if text is None else label_column
                    raise CorpusError(f"{path}, line {reader.line_num}: no {missing!r} value")
                texts.append(text)
                labels.append(label.strip())
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not {encoding} text ({e.reason}); pass --encoding") from None
    except csv.Error as e:
        raise CorpusError(f"{path}: not valid {'TSV' if delimiter == chr(9) else 'CSV'} ({e})") from None
    return Examples(texts, labels, path.name)


def _read_jsonl(path: Path, text_column: str, label_column: str, encoding: str) -> Examples:
    texts, labels = [], []
    try:
        with _open_text(path, encoding) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise CorpusError(f"{path}, line {n}: not JSON ({e.msg})") from None
                if not isinstance(obj, dict):
                    raise CorpusError(f"{path}, line {n}: expected a JSON object per line")
                for key, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
                    if key not in obj:
                        raise CorpusError(f"{path}, line {n}: no key {key!r} (its keys: {', '.join(map(repr, obj))}); "
                                          f"name the right one with {flag}")
                if not isinstance(obj[text_column], str):
                    raise CorpusError(f"{path}, line {n}: {text_column!r} is not a string")
                label = obj[label_column]
                if label is None or isinstance(label, (dict, list)):
                    raise CorpusError(f"{path}, line {n}: {label_column!r} must be a string or a number")
                texts.append(obj[text_column])
                labels.append(json.dumps(label) if isinstance(label, bool) else str(label))
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not {encoding} text ({e.reason}); pass --encoding") from None
    return Examples(texts, labels, path.name)


def fingerprint(ex: Examples) -> str:
    h = hashlib.sha256()
    for text, label in zip(ex.texts, ex.labels):
        h.update(label.encode("utf-8", "surrogatepass") + b"\0" + text.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- encoding and batches

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


# ----------------------------------------------------------------------------- scores and the task

def _length_batches(seqs: Sequence[torch.Tensor], batch_size: int) -> Iterable[list[int]]:
    """Indices in batches of similar length (inference only: the order does not matter)."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for i in range(0, len(order), batch_size):
        yield order[i:i + batch_size]


@torch.inference_mode()
def predict_proba(model: SequenceClassifier, seqs: Sequence[torch.Tensor], *, batch_size: int = 256,
                  precision: str = "fp32") -> torch.Tensor:
    """Class probabilities (N, C) for encoded texts, in their order."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    probs = torch.empty(len(seqs), model.config.num_classes)
    try:
        with autocast(device, precision):
            for idx in _length_batches(seqs, batch_size):
                batch = pad_batch([seqs[i] for i in idx], torch.zeros(len(idx), dtype=torch.int64), PAD_MULTIPLE)
                logits = model(batch.tokens.to(device), batch.lengths)
                probs[idx] = logits.float().softmax(-1).cpu()
    finally:
        model.train(was_training)
    return probs


@torch.inference_mode()
def score(model: SequenceClassifier, seqs: Sequence[torch.Tensor], labels: torch.Tensor, *,
          batch_size: int = 256, precision: str = "fp32") -> ClassifyScore:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    nll = torch.zeros((), dtype=torch.float64)
    correct = 0
    try:
        with autocast(device, precision):
            for idx in _length_batches(seqs, batch_size):
                batch = pad_batch([seqs[i] for i in idx], labels[idx], PAD_MULTIPLE)
                logits = model(batch.tokens.to(device), batch.lengths).float().cpu()
                nll += F.cross_entropy(logits, batch.labels, reduction="sum").double()
                correct += int((logits.argmax(-1) == batch.labels).sum())
    finally:
        model.train(was_training)
    return ClassifyScore(float(nll), correct, len(seqs))


class ClassifyTask:
    """Cross-entropy of the class logits; validation accuracy and loss over the whole held-out set."""

    unit = "tokens"
    command = "rnnkit classify train"          # in the "continue with: ... --resume RUN" hint of a stopped run

    def __init__(self, val_seqs: list[torch.Tensor], val_labels: torch.Tensor, device: torch.device, precision: str):
        self.val_seqs, self.val_labels, self.device, self.precision = val_seqs, val_labels, device, precision

    def loss(self, model, batch: PaddedBatch) -> torch.Tensor:
        logits = model(batch.tokens.to(self.device, non_blocking=True), batch.lengths)   # (B, C)
        return F.cross_entropy(logits.float(), batch.labels.to(self.device, non_blocking=True))

    def units(self, batch: PaddedBatch) -> int:
        return int(batch.lengths.sum())

    def evaluate(self, model) -> dict:
        s = score(model, self.val_seqs, self.val_labels, precision=self.precision)
        return {"val_loss": s.loss, "val_accuracy": s.accuracy}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


# ----------------------------------------------------------------------------- preparing a run's data

@dataclass
class ClassifyData:
    vocab: WordVocab
    labels: list[str]                  # class index -> label
    train_seqs: list[torch.Tensor]
    train_labels: torch.Tensor         # (N,) int64
    val_seqs: list[torch.Tensor]
    val_labels: torch.Tensor
    source: str
    fingerprint: str


def _read(cfg: TextDataConfig, path: str, split: str) -> Examples:
    return read_examples(path, format=cfg.format, split=split, text_column=cfg.text_column,
                         label_column=cfg.label_column, encoding=cfg.encoding)


def label_indices(labels: Sequence[str], label_set: Sequence[str], source: str) -> torch.Tensor:
    index = {label: i for i, label in enumerate(label_set)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise CorpusError(f"{source} has label(s) the model was not trained on: "
                          f"{', '.join(map(repr, unknown[:10]))}; its labels are {', '.join(map(repr, label_set))}")
    return torch.tensor([index[label] for label in labels], dtype=torch.int64)


def prepare_data(cfg: TextDataConfig, seed: int, *, vocab: Optional[WordVocab] = None,
                 labels: Optional[list[str]] = None) -> ClassifyData:
    """Read, split (seeded), build the vocabulary from the training part only, encode and truncate."""
    if cfg.path is None:
        raise CorpusError("give labelled data to train on: an aclImdb directory or .tar.gz, a CSV/TSV or a JSONL file")
    ex = _read(cfg, cfg.path, cfg.split)
    if cfg.val_path is not None:
        val = _read(cfg, cfg.val_path, cfg.split)
        train_idx, val_idx = list(range(len(ex))), None
    else:
        n_val = int(round(len(ex) * cfg.val_fraction))
        if n_val < 1 or len(ex) - n_val < 2:
            raise CorpusError(f"{ex.source} has {len(ex)} texts: too few to hold out {cfg.val_fraction:.0%} for "
                              f"validation and train on the rest; give more data or --val FILE")
        perm = torch.randperm(len(ex), generator=torch.Generator().manual_seed(seed)).tolist()
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        val = Examples([ex.texts[i] for i in val_idx], [ex.labels[i] for i in val_idx], f"{ex.source} validation")
    train_texts = [ex.texts[i] for i in train_idx]
    train_labels = [ex.labels[i] for i in train_idx]
    if labels is None:
        labels = sorted(set(train_labels))
        if len(labels) < 2:
            raise CorpusError(f"{ex.source}: every training text has the label {labels[0]!r}; a classifier needs "
                              f"at least two labels (is --label-column {cfg.label_column!r} the right column?)")
    y_train = label_indices(train_labels, labels, ex.source)
    y_val = label_indices(val.labels, labels, val.source)
    train_tokens = [tokenize(t) for t in train_texts]
    if vocab is None:
        counts: Counter = Counter()
        for tokens in train_tokens:
            counts.update(tokens)
        vocab = WordVocab.from_counts(counts, min_freq=cfg.min_freq, max_vocab=cfg.max_vocab)
    return ClassifyData(vocab, labels, encode_texts(vocab, train_tokens, cfg), y_train,
                        encode_texts(vocab, (tokenize(t) for t in val.texts), cfg), y_val,
                        ex.source, fingerprint(ex))


# ----------------------------------------------------------------------------- training

def train(data: TextDataConfig, model: ClassifierConfig, train: TrainConfig, out: str | Path, *,
          patience: Optional[int] = None, overwrite: bool = False, quiet: bool = False,
          pause_at: Optional[int] = None, log: Callable[[str], None] | None = None) -> dict:
    """Train a classifier in the new run directory ``out``; returns the final summary.

    Validation happens at every epoch's end when ``train.eval_every`` and ``eval_every_s`` are both None
    (``TrainConfig(**TRAIN_DEFAULTS)``); with no steps, epochs or time budget, the budget is
    ``DEFAULT_EPOCHS`` epochs or ``DEFAULT_MIN_STEPS`` steps, whichever is more. ``patience`` stops after
    that many epochs without a better validation loss.
    """
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be at least 1 epoch, got {patience}")
    ckpt.check_run_dir(out, overwrite=overwrite)   # refuse early; replace an old run only once the data is good
    with ckpt.run_lock(out):
        return _run(Path(out), data, model, train, patience, None, quiet=quiet, log=log, pause_at=pause_at,
                    overwrite=overwrite)


def resume(out: str | Path, *, overrides: Optional[dict] = None, data_path: Optional[str] = None,
           quiet: bool = False, pause_at: Optional[int] = None, log: Callable[[str], None] | None = None) -> dict:
    """Continue the classifier run in ``out`` where its last checkpoint left it (same data, same order)."""
    run = ckpt.read_run(out)
    if run.get("task") != "classifier":
        raise ckpt.CheckpointError(f"{out} is a {run.get('task')} run; resume it with its own command")
    bad = sorted(set(overrides or {}) - set(RESUMABLE_FIELDS))
    if bad:
        raise ValueError(f"cannot change {', '.join(bad)} when resuming (the run would not continue exactly); "
                         f"start a new run with --out instead")
    data = from_dict(TextDataConfig, run["data"], source=f"{out}/run.json data")
    if data_path is not None:
        data = dataclasses.replace(data, path=data_path)      # a moved file: fine if the texts are the same
    model = from_dict(ClassifierConfig, run["model"], source=f"{out}/run.json model")
    cfg = dataclasses.replace(from_dict(TrainConfig, run["train"], source=f"{out}/run.json train"), **(overrides or {}))
    with ckpt.run_lock(out):
        state = ckpt.load_state(Path(out) / ckpt.STATE)
        resumed = (run, WordVocab.from_dict(run["vocab"]), state)
        return _run(Path(out), data, model, cfg, run.get("patience"), resumed, quiet=quiet, log=log,
                    pause_at=pause_at)


def _run(run_dir: Path, data_cfg: TextDataConfig, model_cfg: ClassifierConfig, cfg: TrainConfig,
         patience: Optional[int], resumed, *, quiet: bool, log, pause_at: Optional[int],
         overwrite: bool = False) -> dict:
    say = log or (lambda msg: print(msg, file=sys.stderr))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    t_read = time.perf_counter()
    data = prepare_data(data_cfg, cfg.seed, vocab=resumed[1] if resumed else None,
                        labels=resumed[0]["labels"] if resumed else None)
    t_read = time.perf_counter() - t_read
    if resumed and data.fingerprint != resumed[0].get("data_fingerprint"):
        raise ValueError(f"the texts of {data.source} differ from those this run was trained on; "
                         f"resume with the same data, or start a new run with --out")
    model_cfg = dataclasses.replace(model_cfg, vocab_size=len(data.vocab), num_classes=len(data.labels))
    torch.manual_seed(cfg.seed)
    model = SequenceClassifier(model_cfg).to(device)
    batches = BucketBatches(data.train_seqs, data.train_labels, cfg.batch_size, bucket=data_cfg.bucket, seed=cfg.seed)
    spe = batches.steps_per_epoch
    if cfg.eval_every is None and cfg.eval_every_s is None:
        cfg = dataclasses.replace(cfg, eval_every=spe)             # validate at each epoch's end
    if cfg.lr is None:
        cfg = dataclasses.replace(cfg, lr=TRAIN_DEFAULTS["lr"])
    if cfg.steps is None and cfg.epochs is None and cfg.time_budget is None:
        cfg = dataclasses.replace(cfg, steps=max(DEFAULT_EPOCHS * spe, DEFAULT_MIN_STEPS))
    budgets = [b for b in (cfg.steps, math.ceil(cfg.epochs * spe) if cfg.epochs else None) if b is not None]
    if budgets and not resumed and cfg.schedule != "constant" and cfg.warmup_steps > min(budgets) // 10:
        cfg = dataclasses.replace(cfg, warmup_steps=min(budgets) // 10)   # small data: warm up a tenth at most
    task = ClassifyTask(data.val_seqs, data.val_labels, device, cfg.precision)
    trainer = Trainer(model, task, batches, cfg, run_dir, device, total_steps=min(budgets) if budgets else None,
                      quiet=quiet)
    if resumed:
        trainer.load_state_dict(resumed[2])
        ckpt.truncate_metrics(run_dir, trainer.progress.step)
        if trainer.done() or _stalled(trainer, patience, spe):
            raise ValueError(f"{run_dir} already finished at step {trainer.progress.step}"
                             f"{' (early stop)' if _stalled(trainer, patience, spe) else ''}; give a larger "
                             f"--epochs, --steps or --time-budget to train on")
        say(f"resuming {run_dir} at step {trainer.progress.step} ({trainer.progress.train_time:.0f}s trained)")
    else:
        ckpt.prepare_run_dir(run_dir, overwrite=overwrite)
        ckpt.write_run(run_dir, {
            "task": "classifier", "model": to_dict(model_cfg), "data": to_dict(data_cfg), "train": to_dict(cfg),
            "patience": patience, "labels": data.labels, "vocab": data.vocab.to_dict(),
            "data_fingerprint": data.fingerprint,
            "examples": {"train": len(data.train_seqs), "val": len(data.val_seqs)},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rnnkit_version": _version(),
            "torch_version": torch.__version__})
    tokens = sum(len(s) for s in data.train_seqs)
    say(f"{data.source}: {len(data.train_seqs):,} training / {len(data.val_seqs):,} validation texts, labels "
        f"{', '.join(data.labels)}; vocabulary {len(data.vocab):,} words; {tokens / len(data.train_seqs):.0f} words "
        f"per text after truncation (read in {t_read:.1f}s)")
    say(f"model: {model_cfg.num_layers}x{model_cfg.hidden_size} {'bidirectional ' if model_cfg.bidirectional else ''}"
        f"{model_cfg.cell}, embedding {model_cfg.embed_size}, {model_cfg.pooling} pooling, "
        f"{model.num_parameters():,} parameters on {device}")
    say(f"training: batches of {cfg.batch_size} ({spe} per epoch{', bucketed' if data_cfg.bucket else ''}), "
        f"{cfg.optimizer} lr {cfg.lr:g} ({cfg.schedule}); budget "
        f"{trainer.total_steps or '-'} steps{f', {cfg.time_budget:g}s' if cfg.time_budget else ''}"
        f"{f', patience {patience} epochs' if patience else ''}; run directory {run_dir}")
    if note := precision_warning(device, cfg.precision):
        say(note)

    stopped_early = False
    try:
        while not trainer.done():
            # One epoch at a time, so that early stopping can look at each epoch's validation.
            stop = (trainer.progress.step // spe + 1) * spe
            if pause_at is not None and pause_at < stop:
                trainer.fit(pause_at=pause_at)
                break
            trainer.fit(pause_at=stop)
            if _stalled(trainer, patience, spe):
                stopped_early = True
                say(f"early stop: no better validation loss for {patience} epoch(s) "
                    f"(best at step {trainer.progress.best_step})")
                break
    except TrainingStopped as e:  # the Trainer names the language model's command; point to ours
        raise TrainingStopped(str(e).replace("rnnkit train --resume", "rnnkit classify train --resume"),
                              e.exit_code) from None
    if not trainer.done() and not stopped_early:
        return {"step": trainer.progress.step, "paused": True, "train_time_s": round(trainer.progress.train_time, 1)}

    model.load_state_dict(ckpt.load_weights(ckpt.weights_path(run_dir, "best"), device))
    val = score(model, data.val_seqs, data.val_labels, precision=cfg.precision)
    p = trainer.progress
    return {"step": p.step, "best_step": p.best_step, "epochs": round(p.step / spe, 3), "stopped_early": stopped_early,
            "train_time_s": round(p.train_time, 1), "tokens_per_s": round(p.units / max(p.train_time, 1e-9), 1),
            **{f"val_{k}": v for k, v in val.to_dict().items()}}


def _stalled(trainer: Trainer, patience: Optional[int], spe: int) -> bool:
    p = trainer.progress
    return bool(patience) and p.best_step >= 0 and p.step - p.best_step >= patience * spe


def _version() -> str:
    from . import __version__
    return __version__


# ----------------------------------------------------------------------------- using a trained run

@dataclass
class LoadedClassifier:
    model: SequenceClassifier
    vocab: WordVocab
    labels: list[str]
    data: TextDataConfig         # how the run read and truncated its texts
    run: dict                    # the run's run.json
    weights: Path

    @property
    def precision(self) -> str:
        return self.run.get("train", {}).get("precision", "fp32")

    def encode(self, texts: Iterable[str]) -> list[torch.Tensor]:
        return encode_texts(self.vocab, (tokenize(t) for t in texts), self.data)


def load(run_dir: str | Path, *, weights: str = "best", device: str | torch.device = "cpu") -> LoadedClassifier:
    """A trained classifier from its run directory."""
    run = ckpt.read_run(run_dir)
    if run.get("task") != "classifier":
        raise ckpt.CheckpointError(f"{run_dir} is a {run.get('task')} run, not a classifier "
                                   f"(use rnnkit eval/sample for language models)")
    model_cfg = from_dict(ClassifierConfig, run["model"], source=f"{run_dir}/run.json model")
    data_cfg = from_dict(TextDataConfig, run["data"], source=f"{run_dir}/run.json data")
    device = resolve_device(device) if isinstance(device, str) else device
    model = SequenceClassifier(model_cfg)
    path = ckpt.weights_path(run_dir, weights)
    try:
        model.load_state_dict(ckpt.load_weights(path))
    except RuntimeError as e:
        raise ckpt.CheckpointError(f"{path}: weights do not fit the model in run.json "
                                   f"({str(e).splitlines()[0]})") from None
    return LoadedClassifier(model.to(device).eval(), WordVocab.from_dict(run["vocab"]), list(run["labels"]),
                            data_cfg, run, path)


def evaluate(clf: LoadedClassifier, path: Optional[str] = None, *, split: str = "test", format: Optional[str] = None,
             text_column: Optional[str] = None, label_column: Optional[str] = None,
             encoding: Optional[str] = None, batch_size: int = 256) -> dict:
    """Accuracy and loss on labelled data (or, without ``path``, on the run's own validation texts).

    Format, columns and encoding default to the ones the run was trained with.
    """
    d = clf.data
    if path is None:
        data = prepare_data(d, int(clf.run["train"]["seed"]), vocab=clf.vocab, labels=clf.labels)
        seqs, labels, source = data.val_seqs, data.val_labels, f"{data.source} validation"
    else:
        ex = read_examples(path, format=format or d.format, split=split, text_column=text_column or d.text_column,
                           label_column=label_column or d.label_column, encoding=encoding or d.encoding)
        seqs, labels, source = clf.encode(ex.texts), label_indices(ex.labels, clf.labels, ex.source), ex.source
    s = score(clf.model, seqs, labels, batch_size=batch_size, precision=clf.precision)
    return {**s.to_dict(), "data": source, "weights": clf.weights.name}


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float                 # of ``label``
    probabilities: dict[str, float]    # every label's

    def to_dict(self) -> dict:
        return {"label": self.label, "probability": self.probability, "probabilities": self.probabilities}


def predict(clf: LoadedClassifier, texts: Sequence[str], *, batch_size: int = 256) -> list[Prediction]:
    probs = predict_proba(clf.model, clf.encode(texts), batch_size=batch_size, precision=clf.precision)
    out = []
    for row in probs.tolist():
        k = max(range(len(row)), key=row.__getitem__)
        out.append(Prediction(clf.labels[k], row[k], dict(zip(clf.labels, row))))
    return out
