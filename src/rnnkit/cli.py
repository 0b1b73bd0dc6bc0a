"""Command line: ``rnnkit train | eval | sample | corpora``. Parses flags, builds configs, calls the library.

Configuration precedence: dataclass defaults < ``--config FILE.toml`` ([data], [model], [train]) < flags.
Errors a user can fix print one line, ``rnnkit: error: ...``, and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__

# flag dest -> (config section, field). Flags default to SUPPRESS so only what the user typed shows up.
DATA_FLAGS = {"member": "member", "encoding": "encoding", "errors": "errors", "strip_gutenberg": "strip_gutenberg",
              "start_marker": "start_marker", "end_marker": "end_marker", "limit_chars": "limit_chars",
              "newlines_to_spaces": "newlines_to_spaces", "val_fraction": "val_fraction", "test": "test_path",
              "corpus": "corpus"}
MODEL_FLAGS = {"cell": "cell", "embed_size": "embed_size", "hidden_size": "hidden_size", "layers": "num_layers",
               "dropout": "dropout", "backend": "backend", "init_std": "init_std"}
TRAIN_FLAGS = {"batching": "batching", "fixed_grid": "fixed_grid", "batch_size": "batch_size", "seq_len": "seq_len", "optimizer": "optimizer",
               "lr": "lr", "weight_decay": "weight_decay", "momentum": "momentum", "schedule": "schedule",
               "warmup_steps": "warmup_steps", "min_lr_ratio": "min_lr_ratio", "clip": "clip", "steps": "steps",
               "epochs": "epochs", "time_budget": "time_budget", "eval_chars": "eval_chars", "seed": "seed",
               "device": "device", "precision": "precision", "threads": "threads", "compile": "compile"}


# ----------------------------------------------------------------------------- argument types

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _threads(text: str) -> int:
    """At most the machine's CPUs: OpenMP crashes (SIGSEGV) when asked for tens of thousands of threads."""
    value, cpus = _positive_int(text), os.cpu_count() or 1
    if value > cpus:
        raise argparse.ArgumentTypeError(f"must be at most {cpus}, the number of CPUs here; got {value}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _float(low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low:g}, got {value:g}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"must be {'<' if high_open else '<='} {high:g}, got {value:g}")
        return value
    return parse


def _duration(text: str) -> float:
    from .config import ConfigError, parse_duration
    try:
        return parse_duration(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _eval_every(text: str) -> tuple[str, float]:
    """'500' -> every 500 steps; '60s', '2m' -> every so many seconds of training."""
    if text.strip().isdigit():
        return ("steps", float(_positive_int(text)))
    return ("seconds", _duration(text))


# ----------------------------------------------------------------------------- parser

class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other rnnkit error: the full usage of `train` runs to twenty
    lines and buries the message, so point to --help instead. Subcommand parsers inherit this class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _show_defaults(parser: argparse.ArgumentParser, sources) -> None:
    """Append "(default X)" to the help of flags whose default lives in a config dataclass (the flags
    themselves default to SUPPRESS, so that a --config file can supply what the command line does not)."""
    for action in parser._actions:
        for flags, cfg in sources:
            field = flags.get(action.dest)
            value = getattr(cfg, field, None) if field else None
            if value is not None and action.help and "default" not in action.help and not isinstance(value, bool):
                action.help += f" (default {value:g})" if isinstance(value, float) else f" (default {value})"


def build_parser() -> argparse.ArgumentParser:
    from .config import (BACKENDS, BATCHINGS, CELLS, DEVICES, OPTIMIZERS, PRECISIONS, SCHEDULES, DataConfig,
                         ModelConfig, TrainConfig)
    S = argparse.SUPPRESS
    p = Parser(prog="rnnkit", description="Recurrent neural networks on text: train, evaluate "
                  "and sample character-level language models.")
    p.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser("train", help="train a character language model (or resume one)",
                       description="Train a character-level language model on a text file or a bundled corpus.")
    t.add_argument("path", nargs="?", help="text file: .txt, .zip, .gz, .bz2 or .xz (or use --corpus)")
    g = t.add_argument_group("data")
    g.add_argument("--corpus", default=S, help="bundled corpus: moliere, shakespeare or alphabet")
    g.add_argument("--member", default=S, help="member of a zip that holds several files")
    g.add_argument("--encoding", default=S, help="text encoding (default utf-8)")
    g.add_argument("--errors", default=S, choices=("strict", "replace", "ignore"),
                   help="what to do with undecodable bytes (default strict: stop with the offset)")
    g.add_argument("--strip-gutenberg", action="store_true", default=S,
                   help="keep only the book between Project Gutenberg's START and END markers")
    g.add_argument("--start-marker", default=S, help="keep text from this string on (inclusive)")
    g.add_argument("--end-marker", default=S, help="... up to this string (exclusive)")
    g.add_argument("--limit-chars", type=_positive_int, default=S, help="keep only the first N characters")
    g.add_argument("--newlines-to-spaces", action="store_true", default=S, help="replace line breaks by spaces")
    g.add_argument("--val-fraction", type=_float(0, 1, low_open=True, high_open=True), default=S,
                   help="held-out tail for validation (default 0.1)")
    g.add_argument("--test", default=S, metavar="FILE", help="a separate test file, scored at the end")
    g = t.add_argument_group("model")
    g.add_argument("--cell", choices=CELLS, default=S, help="elman (sigmoid, Mikolov 2010), rnn (tanh), lstm, gru")
    g.add_argument("--embed-size", type=_nonneg_int, default=S, help="embedding width; 0 = one-hot input")
    g.add_argument("--hidden-size", type=_positive_int, default=S, help="state width per layer")
    g.add_argument("--layers", type=_positive_int, default=S, help="number of stacked layers")
    g.add_argument("--dropout", type=_float(0, 1, high_open=True), default=S, help="dropout probability")
    g.add_argument("--backend", choices=BACKENDS, default=S, help="fused torch.nn layers or rnnkit's scratch cells")
    g.add_argument("--init-std", type=_float(0, low_open=True), default=S,
                   help="initialise every weight from N(0, std^2) and every bias at 0, as d2l's from-scratch "
                        "models (seed 001: 0.01); default: torch.nn's initialisation")
    g = t.add_argument_group("training")
    g.add_argument("--batching", choices=BATCHINGS, default=S,
                   help="consecutive: stateful streams (TBPTT); random: random chunks, fresh state")
    g.add_argument("--fixed-grid", action="store_true", default=S,
                   help="chunks only at 0, T, 2T, ... as d2l (seed 001): random batching serves each once per "
                        "epoch, shuffled; consecutive batching starts every epoch at offset 0")
    g.add_argument("--batch-size", type=_positive_int, default=S, help="sequences per step")
    g.add_argument("--seq-len", type=_positive_int, default=S, help="characters per sequence (BPTT length)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=S, help="update rule")
    g.add_argument("--lr", type=_float(0, low_open=True), default=S,
                   help="peak learning rate (default 5e-3; 1e-3 for alphabets of over 1,000 symbols)")
    g.add_argument("--weight-decay", type=_float(0), default=S, help="L2 (sgd, adam) or decoupled (adamw)")
    g.add_argument("--momentum", type=_float(0), default=S, help="SGD momentum")
    g.add_argument("--schedule", choices=SCHEDULES, default=S, help="learning-rate schedule")
    g.add_argument("--warmup-steps", type=_nonneg_int, default=S, help="linear warm-up (cosine)")
    g.add_argument("--min-lr-ratio", type=_float(0, 1), default=S, help="final lr / peak lr for cosine")
    g.add_argument("--clip", type=_float(0), default=S, help="global gradient-norm clip; 0 disables")
    g.add_argument("--steps", type=_positive_int, default=S, help="budget: optimizer steps")
    g.add_argument("--epochs", type=_float(0, low_open=True), default=S, help="budget: passes over the training text")
    g.add_argument("--time-budget", type=_duration, default=S,
                   help="budget: training time, e.g. 90s, 10m, 1h (evaluation not counted); default 10m "
                        "when no budget is given")
    g.add_argument("--eval-every", type=_eval_every, default=S,
                   help="validate every N steps, or every 60s / 2m of training and at least once per epoch "
                        "(default 60s)")
    g.add_argument("--eval-chars", type=_positive_int, default=S,
                   help="validation characters for periodic evaluations (the final one uses all)")
    g.add_argument("--seed", type=int, default=S, help="seeds weights, dropout and data order")
    g.add_argument("--device", choices=DEVICES, default=S, help="auto: cuda when available")
    g.add_argument("--precision", choices=PRECISIONS, default=S, help="bf16 = autocast to bfloat16")
    g.add_argument("--threads", type=_threads, default=S, help="CPU threads for PyTorch")
    g.add_argument("--compile", action="store_true", default=S,
                   help="compile the training step with torch.compile: 1-4 minutes of compiling on 2 cores "
                        "(counted in the time budget; needs a C++ compiler on the CPU), then batched scratch "
                        "cells run up to 1.5x faster; no gain for fused layers, nor for a scratch LSTM at small "
                        "CPU batches")
    g = t.add_argument_group("run")
    g.add_argument("--config", default=S, metavar="FILE.toml", help="TOML file with [data], [model], [train] tables")
    g.add_argument("--out", default=S, help="run directory (default runs/<corpus or file name>)")
    g.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    g.add_argument("--resume", metavar="RUN", default=S, help="continue the run in RUN exactly where it stopped")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--json", action="store_true", help="print the final summary as one JSON object")
    _show_defaults(t, ((MODEL_FLAGS, ModelConfig()), (TRAIN_FLAGS, TrainConfig()), (DATA_FLAGS, DataConfig())))

    e = sub.add_parser("eval", help="score held-out text: nats/char, perplexity, bits/char",
                       description="Evaluate a trained run on its validation text or on another file.")
    e.add_argument("run", help="run directory")
    e.add_argument("file", nargs="?", help="text file to score (default: the run's validation text)")
    e.add_argument("--member", help="member of a zip that holds several files")
    e.add_argument("--encoding", default="utf-8")
    e.add_argument("--errors", default="strict", choices=("strict", "replace", "ignore"))
    e.add_argument("--weights", choices=("best", "last"), default="best")
    e.add_argument("--device", choices=DEVICES, default="auto")
    e.add_argument("--json", action="store_true", help="print one JSON object")

    s = sub.add_parser("sample", help="generate text from a trained run",
                       description="Generate text: prime on a prompt, then sample one character at a time.")
    s.add_argument("run", help="run directory")
    s.add_argument("--prompt", help="text to start from (default: a line break)")
    s.add_argument("--prompt-file", help="read the prompt from a file")
    s.add_argument("--length", type=_nonneg_int, default=500, help="characters to generate")
    s.add_argument("--temperature", type=_float(0), default=1.0,
                   help="0 = greedy; below 1 more conservative (seed 002's scale factor s = 1/temperature)")
    s.add_argument("--top-k", type=_positive_int, help="sample among the k most likely characters")
    s.add_argument("--top-p", type=_float(0, 1, low_open=True), help="nucleus sampling threshold in (0, 1]")
    s.add_argument("--num-samples", type=_positive_int, default=1, help="samples generated together as one batch")
    s.add_argument("--seed", type=int, help="seed for the sampling generator (same seed, same text)")
    s.add_argument("--weights", choices=("best", "last"), default="best")
    s.add_argument("--device", choices=DEVICES, default="cpu")
    s.add_argument("--no-prompt", action="store_true", help="print only the generated text, not the prompt")
    s.add_argument("--separator", default="\n\n", help="printed between samples (default: a blank line)")

    c = sub.add_parser("corpora", help="list the bundled corpora")
    c.set_defaults(command="corpora")
    add_classify_parser(sub)
    return p


# ----------------------------------------------------------------------------- commands

def _merge(section: str, fields: dict[str, str], args: argparse.Namespace, toml: dict) -> dict[str, Any]:
    values = dict(toml.get(section, {}))
    values = {k.replace("-", "_"): v for k, v in values.items()}
    for dest, field in fields.items():
        if hasattr(args, dest):
            values[field] = getattr(args, dest)
    return values


def _read_toml(path: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    from .config import ConfigError
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config {path}: not valid TOML ({e})") from None
    unknown = sorted(set(data) - {"data", "model", "train", "out"})
    if unknown:
        raise ConfigError(f"--config {path}: unknown table(s) {', '.join(unknown)}; use [data], [model], [train]")
    if "time_budget" in data.get("train", {}) and isinstance(data["train"]["time_budget"], str):
        from .config import parse_duration
        data["train"]["time_budget"] = parse_duration(data["train"]["time_budget"])
    return data


def cmd_train(args: argparse.Namespace) -> int:
    from .config import DataConfig, ModelConfig, TrainConfig, from_dict
    from .train import resume, train

    toml = _read_toml(args.config) if hasattr(args, "config") else {}
    eval_every = getattr(args, "eval_every", None)
    train_values = _merge("train", TRAIN_FLAGS, args, toml)
    if eval_every is not None:
        kind, value = eval_every
        train_values.update({"eval_every": int(value), "eval_every_s": None} if kind == "steps"
                            else {"eval_every": None, "eval_every_s": value})

    if hasattr(args, "resume"):
        given = [d for d in list(DATA_FLAGS) + list(MODEL_FLAGS) if hasattr(args, d)]
        if given or hasattr(args, "config"):
            raise ValueError(f"--resume continues a run with its own data and model settings; "
                             f"drop {', '.join('--' + d.replace('_', '-') for d in given) or '--config'}"
                             f" (or start a new run with --out)")
        summary = resume(args.resume, overrides=train_values, data_path=args.path, quiet=args.quiet)
    else:
        data_values = _merge("data", DATA_FLAGS, args, toml)
        if args.path is not None:
            data_values["path"] = args.path
        if data_values.get("path") is None and data_values.get("corpus") is None:
            raise ValueError("give a text file to train on, or --corpus NAME (moliere, shakespeare, alphabet)")
        data = from_dict(DataConfig, data_values, source="data settings")
        model = from_dict(ModelConfig, _merge("model", MODEL_FLAGS, args, toml), source="model settings")
        tcfg = from_dict(TrainConfig, train_values, source="train settings")
        out = getattr(args, "out", None) or toml.get("out") or f"runs/{data.corpus or Path(data.path).stem}"
        summary = train(data, model, tcfg, out, overwrite=args.overwrite, quiet=args.quiet)
    _print_summary(summary, args.json)
    return 0


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary))
        return
    print(f"validation: {summary['val_nats_per_char']:.4f} nats/char, {summary['val_bits_per_char']:.4f} bits/char, "
          f"perplexity {summary['val_perplexity']:.3f} (best weights, step {summary['best_step']} of {summary['step']}; "
          f"{summary['train_time_s']:.0f}s, {summary['chars_per_s']:,.0f} chars/s)")
    if "test_nats_per_char" in summary:
        print(f"test:       {summary['test_nats_per_char']:.4f} nats/char, {summary['test_bits_per_char']:.4f} "
              f"bits/char, perplexity {summary['test_perplexity']:.3f}")


def cmd_eval(args: argparse.Namespace) -> int:
    from .config import DataConfig, from_dict
    from .evaluate import evaluate_stream
    from .train import load, prepare_data, score_file

    lm = load(args.run, weights=args.weights, device=args.device)
    warn = lambda msg: print(f"rnnkit: warning: {msg}", file=sys.stderr)  # noqa: E731
    if args.file:
        score = score_file(lm.model, lm.vocab, args.file, member=args.member, encoding=args.encoding,
                           errors=args.errors, precision=lm.precision, warn=warn)
        what = args.file
    else:
        data = prepare_data(from_dict(DataConfig, lm.run["data"], source=f"{args.run}/run.json data"), lm.vocab)
        score = evaluate_stream(lm.model, data.val, precision=lm.precision)
        what = "validation text"
    if args.json:
        print(json.dumps(score.to_dict()))
    else:
        print(f"{what}: {score.nats_per_char:.4f} nats/char, perplexity {score.perplexity:.3f}, "
              f"{score.bits_per_char:.4f} bits/char over {score.chars:,} characters ({lm.weights.name})")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from .config import SampleConfig
    from .generate import generate
    from .train import load

    if args.prompt is not None and args.prompt_file is not None:
        raise ValueError("give --prompt or --prompt-file, not both")
    prompt = args.prompt
    if args.prompt_file is not None:
        try:
            prompt = Path(args.prompt_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--prompt-file {args.prompt_file}: cannot read it ({e.__class__.__name__})") from None
    cfg = SampleConfig(prompt="\n" if prompt is None else prompt, length=args.length, temperature=args.temperature,
                       top_k=args.top_k, top_p=args.top_p, num_samples=args.num_samples, seed=args.seed)
    lm = load(args.run, weights=args.weights, device=args.device)
    out = sys.stdout
    head = "" if args.no_prompt or prompt is None else prompt
    if cfg.num_samples == 1:
        out.write(head)
        out.flush()
        generate(lm.model, lm.vocab, cfg, on_chars=lambda cs: (out.write(cs[0]), out.flush()))
        out.write("\n")
    else:
        texts = generate(lm.model, lm.vocab, cfg)
        out.write(args.separator.join(head + t for t in texts) + "\n")
    out.flush()
    return 0


def cmd_corpora(args: argparse.Namespace) -> int:
    from .corpus import BUNDLED
    for name, what in BUNDLED.items():
        print(f"{name:12} {what}")
    return 0


# ----------------------------------------------------------------------------- classify

CLASSIFY_DATA_FLAGS = {"format": "format", "text_column": "text_column", "label_column": "label_column",
                       "split": "split", "val_fraction": "val_fraction", "val": "val_path", "encoding": "encoding",
                       "min_freq": "min_freq", "max_vocab": "max_vocab", "max_tokens": "max_tokens",
                       "truncate": "truncate", "bucket": "bucket"}
CLASSIFY_MODEL_FLAGS = {"cell": "cell", "embed_size": "embed_size", "hidden_size": "hidden_size",
                        "layers": "num_layers", "bidirectional": "bidirectional", "pooling": "pooling",
                        "head_hidden": "head_hidden", "dropout": "dropout", "packed": "packed"}
CLASSIFY_TRAIN_FLAGS = {k: v for k, v in TRAIN_FLAGS.items() if k not in ("batching", "seq_len", "eval_chars", "compile")}


def add_classify_parser(sub) -> None:
    from .config import (CLASSIFIER_CELLS, DEVICES, OPTIMIZERS, POOLINGS, PRECISIONS, SCHEDULES, TEXT_FORMATS,
                         TRUNCATIONS)
    S = argparse.SUPPRESS
    c = sub.add_parser("classify", help="sequence classification: train, eval, predict (e.g. IMDb sentiment)",
                       description="Classify texts with a (bi)directional RNN: train on labelled text (an aclImdb "
                                   "directory or .tar.gz, CSV/TSV, JSONL), evaluate, predict.")
    csub = c.add_subparsers(dest="classify_command", metavar="ACTION")
    csub.required = True

    t = csub.add_parser("train", help="train a classifier (or resume one)",
                        description="Train a text classifier; validates after every epoch and keeps the best weights.")
    t.add_argument("path", nargs="?", help="aclImdb directory or .tar.gz, .csv/.tsv or .jsonl (optionally .gz)")
    g = t.add_argument_group("data")
    g.add_argument("--format", choices=TEXT_FORMATS, default=S, help="default: from the file name")
    g.add_argument("--text-column", default=S, help="CSV/TSV column or JSONL key of the text (default text)")
    g.add_argument("--label-column", default=S, help="... and of the label (default label)")
    g.add_argument("--split", default=S, help="aclImdb split to train on (default train)")
    g.add_argument("--val-fraction", type=_float(0, 1, low_open=True, high_open=True), default=S,
                   help="seeded share held out for validation (default 0.2: 5,000 of IMDb's 25,000)")
    g.add_argument("--val", default=S, metavar="FILE", help="a separate validation file instead of --val-fraction")
    g.add_argument("--encoding", default=S, help="text encoding (default utf-8)")
    g.add_argument("--min-freq", type=_positive_int, default=S, help="rarer words become <unk> (default 2)")
    g.add_argument("--max-vocab", type=_nonneg_int, default=S, help="most frequent words kept (default 30000; 0 = all)")
    g.add_argument("--max-tokens", type=_nonneg_int, default=S,
                   help="truncate texts to N words (default 400; 0 = keep all)")
    g.add_argument("--truncate", choices=TRUNCATIONS, default=S,
                   help="words a truncated text keeps (default both ends)")
    g.add_argument("--bucket", type=_nonneg_int, default=S,
                   help="batch texts of similar length, sorted within pools of N batches (default 50; 0 = off)")
    g = t.add_argument_group("model")
    g.add_argument("--cell", choices=CLASSIFIER_CELLS, default=S, help="rnn (tanh), lstm or gru (default lstm)")
    g.add_argument("--embed-size", type=_positive_int, default=S, help="word embedding width (default 128)")
    g.add_argument("--hidden-size", type=_positive_int, default=S, help="state width per direction (default 128)")
    g.add_argument("--layers", type=_positive_int, default=S, help="stacked recurrent layers (default 1)")
    g.add_argument("--bidirectional", action="store_true", default=S, help="read each text in both directions")
    g.add_argument("--pooling", choices=POOLINGS, default=S,
                   help="last valid state of each direction, or mean/max over the valid steps (default max)")
    g.add_argument("--head-hidden", type=_nonneg_int, default=S, help="ReLU layer before the output (default 0: none)")
    g.add_argument("--dropout", type=_float(0, 1, high_open=True), default=S, help="dropout probability (default 0.3)")
    g.add_argument("--packed", action="store_true", default=S,
                   help="run through pack_padded_sequence (same results; slower on CPU)")
    g = t.add_argument_group("training")
    g.add_argument("--batch-size", type=_positive_int, default=S, help="texts per step (default 64)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=S)
    g.add_argument("--lr", type=_float(0, low_open=True), default=S, help="peak learning rate (default 3e-3)")
    g.add_argument("--weight-decay", type=_float(0), default=S)
    g.add_argument("--momentum", type=_float(0), default=S, help="SGD momentum")
    g.add_argument("--schedule", choices=SCHEDULES, default=S, help="learning-rate schedule (default cosine)")
    g.add_argument("--warmup-steps", type=_nonneg_int, default=S)
    g.add_argument("--min-lr-ratio", type=_float(0, 1), default=S, help="final lr / peak lr for cosine")
    g.add_argument("--clip", type=_float(0), default=S, help="global gradient-norm clip; 0 disables")
    g.add_argument("--epochs", type=_float(0, low_open=True), default=S,
                   help="budget: passes over the training texts (default 3, or 200 steps if more)")
    g.add_argument("--steps", type=_positive_int, default=S, help="budget: optimizer steps")
    g.add_argument("--time-budget", type=_duration, default=S, help="budget: training time, e.g. 10m")
    g.add_argument("--eval-every", type=_eval_every, default=S,
                   help="validate every N steps or 60s (default: each epoch)")
    g.add_argument("--patience", type=_positive_int, default=S,
                   help="stop after N epochs without a better validation loss")
    g.add_argument("--seed", type=int, default=S, help="seeds the validation split, weights and batch order")
    g.add_argument("--device", choices=DEVICES, default=S)
    g.add_argument("--precision", choices=PRECISIONS, default=S)
    g.add_argument("--threads", type=_threads, default=S, help="CPU threads for PyTorch")
    g = t.add_argument_group("run")
    g.add_argument("--out", default=S, help="run directory (default runs/<data name>)")
    g.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    g.add_argument("--resume", metavar="RUN", default=S, help="continue the run in RUN exactly where it stopped")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--json", action="store_true", help="print the final summary as one JSON object")

    e = csub.add_parser("eval", help="accuracy and loss of a trained classifier on labelled data",
                        description="Evaluate a classifier on labelled data (default: the run's validation texts).")
    e.add_argument("run", help="run directory")
    e.add_argument("path", nargs="?", help="labelled data in any format train reads")
    e.add_argument("--split", default="test", help="aclImdb split (default test)")
    e.add_argument("--format", choices=TEXT_FORMATS, help="default: the run's")
    e.add_argument("--text-column", help="default: the run's")
    e.add_argument("--label-column", help="default: the run's")
    e.add_argument("--encoding", help="default: the run's")
    e.add_argument("--batch-size", type=_positive_int, default=256)
    e.add_argument("--weights", choices=("best", "last"), default="best")
    e.add_argument("--device", choices=DEVICES, default="auto")
    e.add_argument("--threads", type=_threads, help="CPU threads for PyTorch")
    e.add_argument("--json", action="store_true", help="print one JSON object (accuracy, loss, examples, ...)")

    p = csub.add_parser("predict", help="label texts with a trained classifier",
                        description="Print the label and its probability for each text: the arguments, the lines "
                                    "of --file, or the lines of standard input.")
    p.add_argument("run", help="run directory")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify")
    p.add_argument("--file", help="one text per line ('-' = standard input)")
    p.add_argument("--batch-size", type=_positive_int, default=256)
    p.add_argument("--weights", choices=("best", "last"), default="best")
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.add_argument("--json", action="store_true", help="one JSON object per text: label, probability, probabilities")


def cmd_classify(args: argparse.Namespace) -> int:
    return {"train": cmd_classify_train, "eval": cmd_classify_eval,
            "predict": cmd_classify_predict}[args.classify_command](args)


def cmd_classify_train(args: argparse.Namespace) -> int:
    from .classify import TRAIN_DEFAULTS, resume, train
    from .config import ClassifierConfig, TextDataConfig, TrainConfig, from_dict

    train_values = {k: v for k, v in _merge("train", CLASSIFY_TRAIN_FLAGS, args, {}).items()}
    if hasattr(args, "eval_every"):
        kind, value = args.eval_every
        train_values.update({"eval_every": int(value), "eval_every_s": None} if kind == "steps"
                            else {"eval_every": None, "eval_every_s": value})
    if hasattr(args, "resume"):
        given = [d for d in [*CLASSIFY_DATA_FLAGS, *CLASSIFY_MODEL_FLAGS, "patience"] if hasattr(args, d)]
        if given:
            raise ValueError(f"--resume continues a run with its own data and model settings; drop "
                             f"{', '.join('--' + d.replace('_', '-') for d in given)} (or start a new run with --out)")
        summary = resume(args.resume, overrides=train_values, data_path=args.path, quiet=args.quiet)
    else:
        if args.path is None:
            raise ValueError("give labelled data to train on: an aclImdb directory or .tar.gz, a CSV/TSV or "
                             "a JSONL file")
        data_values = _merge("data", CLASSIFY_DATA_FLAGS, args, {})
        for key in ("max_vocab", "max_tokens"):                 # 0 on the command line: no limit
            if data_values.get(key) == 0:
                data_values[key] = None
        data = from_dict(TextDataConfig, {**data_values, "path": args.path}, source="data settings")
        model = from_dict(ClassifierConfig, _merge("model", CLASSIFY_MODEL_FLAGS, args, {}), source="model settings")
        tcfg = from_dict(TrainConfig, {**TRAIN_DEFAULTS, **train_values}, source="train settings")
        out = getattr(args, "out", None) or f"runs/{Path(args.path.rstrip('/')).name.split('.')[0] or 'classifier'}"
        summary = train(data, model, tcfg, out, patience=getattr(args, "patience", None),
                        overwrite=args.overwrite, quiet=args.quiet)
    if args.json:
        print(json.dumps(summary))
    elif summary.get("paused"):
        print(f"paused at step {summary['step']}")
    else:
        print(f"validation: accuracy {summary['val_accuracy']:.4f}, loss {summary['val_loss']:.4f} over "
              f"{summary['val_examples']:,} texts (best weights, step {summary['best_step']} of {summary['step']}, "
              f"{summary['epochs']:g} epochs{', stopped early' if summary['stopped_early'] else ''}; "
              f"{summary['train_time_s']:.0f}s, {summary['tokens_per_s']:,.0f} tokens/s)")
    return 0


def cmd_classify_eval(args: argparse.Namespace) -> int:
    import torch

    from .classify import evaluate, load

    if args.threads:
        torch.set_num_threads(args.threads)
    clf = load(args.run, weights=args.weights, device=args.device)
    result = evaluate(clf, args.path, split=args.split, format=args.format, text_column=args.text_column,
                      label_column=args.label_column, encoding=args.encoding, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['data']}: accuracy {result['accuracy']:.4f} ({result['correct']:,}/{result['examples']:,}), "
              f"loss {result['loss']:.4f} ({result['weights']})")
    return 0


def cmd_classify_predict(args: argparse.Namespace) -> int:
    from .classify import load, predict

    texts = list(args.texts)
    if args.file is not None and texts:
        raise ValueError("give texts as arguments or --file, not both")
    if args.file is not None and args.file != "-":
        try:
            texts = Path(args.file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--file {args.file}: cannot read it ({e.__class__.__name__})") from None
    elif not texts:
        if args.file is None and sys.stdin.isatty():
            raise ValueError("give a text to classify, --file FILE, or pipe texts on standard input (one per line)")
        texts = sys.stdin.read().splitlines()
    clf = load(args.run, weights=args.weights, device=args.device)
    for pred in predict(clf, texts, batch_size=args.batch_size):
        print(json.dumps(pred.to_dict()) if args.json else f"{pred.label}\t{pred.probability:.4f}")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "corpora": cmd_corpora,
            "classify": cmd_classify}


def main(argv: Sequence[str] | None = None) -> int:
    from .batching import CorpusTooShort
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .corpus import CorpusError
    from .trainer import TrainingStopped

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TrainingStopped as e:
        print(f"rnnkit: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # e.g. `rnnkit sample ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ConfigError, CorpusError, CheckpointError, CorpusTooShort, ValueError, OSError) as e:
        print(f"rnnkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as e:       # torch reports a failed CPU allocation as a RuntimeError
        wanted = re.search(r"tried to allocate (\d+) bytes", str(e))
        if not (isinstance(e, MemoryError) or wanted or "out of memory" in str(e)):
            raise
        size = f" ({int(wanted[1]) / 2**30:,.1f} GiB asked for)" if wanted else ""
        print(f"rnnkit: error: not enough memory{size}; lower --hidden-size, --layers, --batch-size, "
              f"--seq-len or --num-samples", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
