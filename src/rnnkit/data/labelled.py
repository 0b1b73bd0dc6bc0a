"""Labelled texts: readers for the aclImdb layout, CSV/TSV and JSON Lines, and a run's data prepared for a
classifier (seeded validation split, word vocabulary from the training part, encoded and truncated).

Labels are any strings; their sorted set is stored in the run directory with the vocabulary.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ..config import TextDataConfig
from .corpus import CorpusError
from .padded import encode_texts
from .words import WordVocab, tokenize


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


# Where a default column name ("text", "label") is absent, the first of these names (in any case) that is
# one column of the file takes its place: "sentence,label", "review,sentiment" read as they are.
TEXT_NAMES = ("text", "sentence", "review", "content", "document", "comment", "tweet", "body")
LABEL_NAMES = ("label", "sentiment", "polarity", "class", "category", "target", "labels", "y")


def _pick_column(columns: Sequence[str], asked: str, names: Sequence[str]) -> Optional[str]:
    """``asked`` if it is one of ``columns``; for the default name (``names[0]``), else the one column of a
    well-known name (the first of ``names`` that matches exactly one column, case aside); None where none fits."""
    if asked in columns:
        return asked
    if asked == names[0]:
        for name in names:
            hits = [c for c in columns if c.strip().lower() == name]
            if len(hits) == 1:
                return hits[0]
    return None


def _columns_or_error(columns: Sequence[str], text_column: str, label_column: str, missing: str, what: str,
                      name: str) -> tuple[str, str, str]:
    """(text column, label column, source name for messages), or a CorpusError that begins with ``missing``
    ("data.csv has no column") and names the flag to give."""
    text = _pick_column(columns, text_column, TEXT_NAMES)
    label = _pick_column(columns, label_column, LABEL_NAMES)
    for found, asked, flag in ((text, text_column, "--text-column"), (label, label_column, "--label-column")):
        if found is None:
            if what == "column" and any(len(c) > 40 and " " in c for c in columns):
                raise CorpusError(f"{missing} {asked!r}: its first line looks like data, not column names; add a "
                                  f"first line that names the columns, e.g. label,text")
            raise CorpusError(f"{missing} {asked!r} (its {what}s: {', '.join(map(repr, columns))}); "
                              f"name the right one with {flag}")
    if text == label:
        raise CorpusError(f"{name}: the text and the label would both be {what} {text!r}; "
                          f"name them with --text-column and --label-column")
    if (text, label) == (text_column, label_column):
        return text, label, name
    return text, label, f"{name} (text {what} {text!r}, label {what} {label!r})"


def _read_table(path: Path, delimiter: str, text_column: str, label_column: str, encoding: str) -> Examples:
    texts, labels = [], []
    try:
        with _open_text(path, encoding) as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            columns = reader.fieldnames or []
            text_column, label_column, source = _columns_or_error(
                columns, text_column, label_column, f"{path} has no column", "column", path.name)
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
        if "field larger than field limit" in str(e):   # the limit is process-wide: rnnkit leaves it alone
            raise CorpusError(f"{path}, near line {reader.line_num}: a field holds more than "
                              f"{csv.field_size_limit():,} characters, Python's CSV limit; give such texts "
                              f"as JSON Lines (--format jsonl) instead") from None
        raise CorpusError(f"{path}: not valid {'TSV' if delimiter == chr(9) else 'CSV'} ({e})") from None
    return Examples(texts, labels, source)


def _read_jsonl(path: Path, text_column: str, label_column: str, encoding: str) -> Examples:
    texts, labels = [], []
    source = path.name
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
                if not texts:                                   # the first object names the keys
                    text_column, label_column, source = _columns_or_error(
                        list(obj), text_column, label_column, f"{path}, line {n}: no key", "key", path.name)
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
    return Examples(texts, labels, source)


def fingerprint(ex: Examples) -> str:
    h = hashlib.sha256()
    for text, label in zip(ex.texts, ex.labels):
        h.update(label.encode("utf-8", "surrogatepass") + b"\0" + text.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()[:16]


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
                 labels: Optional[list[str]] = None,
                 min_freq_for: Optional[Callable[[int], int]] = None) -> ClassifyData:
    """Read, split (seeded), build the vocabulary from the training part only, encode and truncate.
    ``min_freq_for(number of training texts)``, when given, replaces ``cfg.min_freq``."""
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
        min_freq = min_freq_for(len(train_tokens)) if min_freq_for else cfg.min_freq
        vocab = WordVocab.from_counts(counts, min_freq=min_freq, max_vocab=cfg.max_vocab)
    return ClassifyData(vocab, labels, encode_texts(vocab, train_tokens, cfg), y_train,
                        encode_texts(vocab, (tokenize(t) for t in val.texts), cfg), y_val,
                        ex.source, fingerprint(ex))
