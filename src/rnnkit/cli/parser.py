"""The ``rnnkit`` command line: subcommands and their flags. Flags of a run come from the config
dataclasses' fields (``flags.add``); help shows each field's real default."""

from __future__ import annotations

import argparse

from .._version import __version__
from ..config import (BACKENDS, BATCHINGS, DEVICES, ERRORS, OPTIMIZERS, POOLINGS, PRECISIONS, SCHEDULES,
                      TEXT_FORMATS, TRUNCATIONS, ClassifierConfig, ClassifierTrainConfig, DataConfig, ModelConfig,
                      SampleConfig, TextDataConfig, TrainConfig, BeamConfig)
from ..data.corpus import BUNDLED
from ..nn import registry
from ..training import recipes
from ..training.classifier import DEFAULT_TIME_BUDGET as CLASSIFIER_TIME_BUDGET
from ..training.lm import DEFAULT_TIME_BUDGET, LARGE_ALPHABET, default_lr
from .flags import (add, cadence, cell_option, duration, escapes, nonneg_int, number, positive_int, shown, threads)

S = argparse.SUPPRESS


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other rnnkit error: the full usage of `train` runs to twenty
    lines and buries the message, so point to --help instead. Subcommand parsers inherit this class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="rnnkit", description="Recurrent neural networks on text: train, evaluate "
               "and sample character-level language models, and classify texts.")
    p.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _train(sub)
    _eval(sub)
    _sample(sub)
    x = sub.add_parser("export", help="write a trained run as an ONNX model that runs without PyTorch",
                       description="Export a run: a language model as a one-character step model with explicit "
                                   "state, a classifier as (padded word ids, lengths) -> logits (block and tanh-RNN "
                                   "classifiers at the run's --max-tokens width); vocabulary and "
                                   "configuration in the model's metadata. Needs the onnx extra.")
    x.add_argument("run", help="run directory")
    x.add_argument("--format", choices=("onnx",), default="onnx", help="model format (default %(default)s)")
    x.add_argument("--out", required=True, help="the model file to write, e.g. model.onnx")
    x.add_argument("--kind", choices=("step", "sequence"), default="step",
                   help="language models: step (one character, explicit state; for generation) or sequence (a "
                        "whole batch of texts at once, for scoring; fused LSTM and GRU) (default %(default)s)")
    x.add_argument("--weights", choices=("best", "last"), default="best")
    x.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    sub.add_parser("corpora", help="list the bundled corpora")
    _classify(sub)
    _plot(sub)
    _viz(sub)
    _serve(sub)
    return p


def _serve(sub) -> None:
    s = sub.add_parser("serve", help="serve runs over HTTP: an OpenAI-style API and a playground page "
                                     "(needs the serve extra)",
                       description="Serve trained runs: /v1/completions (OpenAI-style, streaming), /v1/score, "
                                   "/v1/classify, /v1/models, and a playground page at /. Binds 127.0.0.1 unless "
                                   "--host says otherwise. Each run is served under its directory's name.")
    s.add_argument("runs", nargs="+", metavar="RUN", help="run directories (language models and classifiers)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s: this machine only)")
    s.add_argument("--port", type=nonneg_int, default=8000, help="port (default %(default)s; 0 picks a free one)")
    s.add_argument("--allowed-host", action="append", metavar="NAME",
                   help="a Host name clients may use besides the bound address (a reverse proxy's name); repeatable")
    s.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1/ (for use beyond loopback)")
    s.add_argument("--max-streams", type=positive_int, default=128,
                   help="generation requests running at once; more get 429 (default %(default)s)")
    s.add_argument("--max-tokens", type=positive_int, default=10_000,
                   help="characters one choice may generate (default %(default)s)")
    s.add_argument("--max-body", type=positive_int, default=1_000_000, help="bytes of a request body (default %(default)s)")
    s.add_argument("--time-limit", type=duration, default=300.0, help="time one request may run (default 5m)")
    s.add_argument("--no-batching", action="store_true",
                   help="step each generation request on its own instead of batching them (for comparison)")
    s.add_argument("--device", choices=DEVICES, default="cpu")


def _plot(sub) -> None:
    p = sub.add_parser("plot", help="draw the loss curves of one or more runs (needs the plot extra)",
                       description="Training and validation loss against steps and against training time, runs "
                                   "overlaid, each run's best evaluation marked; works on a run still training.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    p.add_argument("--out", default="curves.png", help="the picture to write: .png, .svg or .pdf (default %(default)s)")
    p.add_argument("--name", action="append", dest="names", metavar="NAME",
                   help="a run's name in the legend, once per run in order (default: the directory names)")


def units(text: str):
    """``--units``: a number of top-ranked units, or named ``LAYER:UNIT`` pairs separated by commas."""
    text = text.strip()
    if text.isdigit():
        return positive_int(text)
    pairs = []
    for part in text.split(","):
        layer, sep, unit = part.strip().partition(":")
        if not (sep and layer.isdigit() and unit.isdigit()):
            raise argparse.ArgumentTypeError(f"expected a number of units or LAYER:UNIT pairs such as 0:17,1:203; "
                                             f"got {text!r}")
        pairs.append((int(layer), int(unit)))
    return pairs


def _viz(sub) -> None:
    v = sub.add_parser("viz", help="a page that shows what a model does on a text: surprisal, cells, gates",
                       description="Write one self-contained HTML page (works offline, opened from disk). For a "
                                   "language model: each character coloured by its surprisal with the model's top "
                                   "predictions, the units that follow the text (quotes, line position, ...) and "
                                   "gate saturation. For a classifier: its prediction after each word.")
    v.add_argument("run", help="run directory")
    g = v.add_argument_group("the text (one of)")
    g.add_argument("--text", help="the text itself")
    g.add_argument("--text-file", metavar="FILE", help="read the text from a UTF-8 file (at most 20,000 characters)")
    P = "sample"
    g.add_argument("--prompt", dest="sample.prompt", default=S, metavar="PROMPT",
                   help="language models: generate from this prompt, then show the prompt and what was generated")
    g = v.add_argument_group("generation (with --prompt)")
    add(g, P, SampleConfig, "--length", "characters to generate", type=positive_int)
    add(g, P, SampleConfig, "--temperature", "0 = greedy", type=number(0))
    add(g, P, SampleConfig, "--top-k", "sample among the k most likely characters", type=positive_int)
    add(g, P, SampleConfig, "--top-p", "nucleus sampling threshold in (0, 1]", type=number(0, 1, low_open=True))
    add(g, P, SampleConfig, "--seed", "seed for the sampling generator", type=int)
    v.add_argument("--out", required=True, help="the page to write, e.g. scene.html")
    v.add_argument("--units", type=units, default=32,
                   help="units of the cell view: how many of the top-ranked, or LAYER:UNIT pairs such as 0:17,1:203 "
                        "(default %(default)s)")
    v.add_argument("--weights", choices=("best", "last"), default="best")
    v.add_argument("--device", choices=DEVICES, default="cpu")


def _training_flags(g, cls: type, *, lm: bool) -> None:
    """TrainConfig's flags, shared by ``train`` and ``classify train`` (the LM-only ones where ``lm``)."""
    T = "train"
    if lm:
        add(g, T, cls, "--batching", "consecutive: stateful streams (TBPTT); random: random chunks, fresh state",
            choices=BATCHINGS)
        add(g, T, cls, "--fixed-grid", "chunks only at 0, T, 2T, ... as d2l (seed 001): random batching serves "
            "each once per epoch, shuffled; consecutive batching starts every epoch at offset 0")
    add(g, T, cls, "--batch-size", "sequences per step" if lm else "texts per step", type=positive_int)
    if lm:
        add(g, T, cls, "--seq-len", "characters per sequence (BPTT length)", type=positive_int)
    add(g, T, cls, "--optimizer", "update rule", choices=OPTIMIZERS)
    lr_default = (f"the recipe's: {default_lr(1):g} up to 256 wide and for the LSTM, {default_lr(1, 384):g} wider, "
                  f"{default_lr(LARGE_ALPHABET + 1):g} for alphabets of over {LARGE_ALPHABET:,} symbols "
                  f"({default_lr(LARGE_ALPHABET + 1, steps=1):g} for runs of under 1,000 steps)") if lm else None
    add(g, T, cls, "--lr", "peak learning rate", type=number(0, low_open=True), default_text=lr_default)
    wd_default = "the recipe's: 0.1 from 3 passes over the training text (adamw), else 0" if lm else None
    add(g, T, cls, "--weight-decay", "L2 (sgd, adam) or decoupled (adamw)", type=number(0), default_text=wd_default)
    add(g, T, cls, "--beta2", "Adam's second-moment decay (betas 0.9, BETA2)", type=number(0, 1, high_open=True))
    add(g, T, cls, "--momentum", "SGD momentum", type=number(0))
    add(g, T, cls, "--schedule", "learning-rate schedule", choices=SCHEDULES)
    add(g, T, cls, "--warmup-steps", "linear warm-up (cosine, linear, plateau)", type=nonneg_int)
    add(g, T, cls, "--min-lr-ratio", "final lr / peak lr for cosine and linear", type=number(0, 1))
    add(g, T, cls, "--clip", "global gradient-norm clip; 0 disables", type=number(0))
    add(g, T, cls, "--ema", "evaluate and save a moving average of the weights over about the last 1/(EMA+1) "
        "of the steps; 0 disables", type=number(0))
    add(g, T, cls, "--steps", "budget: optimizer steps", type=positive_int)
    add(g, T, cls, "--epochs", "budget: passes over the training " + ("text" if lm else "texts"),
        type=number(0, low_open=True), default_text=None if lm else
        f"the recipe's when no budget is given: 3 for {recipes.SMALL_SET:,} texts and more for fewer (at most "
        f"{recipes.MAX_EPOCHS}), within {CLASSIFIER_TIME_BUDGET / 60:g}m")
    add(g, T, cls, "--time-budget", "budget: training time, e.g. 90s, 10m, 1h (evaluation not counted)",
        type=duration, default_text=f"{DEFAULT_TIME_BUDGET / 60:g}m when no budget is given" if lm else None)
    g.add_argument("--eval-every", dest="train.eval_every", type=cadence, default=S, metavar="EVAL_EVERY",
                   help="validate every N steps, or every 60s / 2m of training and at least once per epoch "
                        f"(default {shown(cls.eval_every_s) + 's' if cls.eval_every_s else 'each epoch'})")
    if lm:
        add(g, T, cls, "--eval-chars", "periodic evaluations score about N validation characters, spread over the whole "
            "validation text (the final one scores all)",
            type=positive_int)
    else:
        add(g, T, cls, "--patience", "stop after N epochs without a better validation accuracy", type=positive_int,
            default_text=f"the recipe's when no budget is given: {recipes.CLASSIFIER_PATIENCE}, and epochs of at "
                         f"least {recipes.PATIENCE_STEPS} steps together")
    add(g, T, cls, "--seed", "seeds weights, dropout and data order", type=int)
    add(g, T, cls, "--device", "auto: cuda when available", choices=DEVICES)
    add(g, T, cls, "--precision", "bf16 = autocast to bfloat16", choices=PRECISIONS)
    add(g, T, cls, "--threads", "CPU threads for PyTorch", type=threads)
    add(g, T, cls, "--tensorboard", "also write every evaluation as TensorBoard events into DIR (the tensorboard "
        "extra); `tensorboard --logdir DIR` shows them", metavar="DIR")
    if lm:
        g.add_argument("--no-probe", dest="train.recipe_probe", action="store_false", default=S,
                       help="choose the recipe from rnnkit's cost model instead of timing a few training steps "
                            "of each candidate width on this machine (the same choice everywhere)")
        add(g, T, cls, "--compile", "compile the training step with torch.compile: 1-4 minutes of compiling on "
            "2 cores (counted in the time budget; needs a C++ compiler on the CPU), then batched scratch cells run "
            "up to 1.5x faster; no gain for fused layers, nor for a scratch LSTM at small CPU batches")




def _run_flags(g, what: str) -> None:
    g.add_argument("--config", default=S, metavar="FILE.toml", help="TOML file with [data], [model], [train] tables")
    g.add_argument("--out", default=S, help=f"run directory (default runs/<{what}>)")
    g.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    g.add_argument("--resume", metavar="RUN", default=S, help="continue the run in RUN exactly where it stopped")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--json", action="store_true", help="print the final summary as one JSON object")


def _train(sub) -> None:
    t = sub.add_parser("train", help="train a character language model (or resume one)",
                       description="Train a character-level language model on a text file or a bundled corpus.")
    t.add_argument("path", nargs="?", help="text file: .txt, .zip, .gz, .bz2 or .xz (or use --corpus)")
    D, M = "data", "model"
    g = t.add_argument_group("data")
    add(g, D, DataConfig, "--corpus", f"bundled corpus: {', '.join(BUNDLED)}")
    add(g, D, DataConfig, "--member", "member of a zip that holds several files")
    add(g, D, DataConfig, "--encoding", "text encoding")
    add(g, D, DataConfig, "--errors", "what to do with undecodable bytes (strict: stop with the offset)",
        choices=ERRORS)
    add(g, D, DataConfig, "--strip-gutenberg", "keep only the book between Project Gutenberg's START and END markers")
    add(g, D, DataConfig, "--start-marker", "keep text from this string on (inclusive)")
    add(g, D, DataConfig, "--end-marker", "... up to this string (exclusive)")
    add(g, D, DataConfig, "--limit-chars", "keep only the first N characters", type=positive_int)
    add(g, D, DataConfig, "--newlines-to-spaces", "replace line breaks by spaces")
    add(g, D, DataConfig, "--val-fraction", "held-out tail for validation",
        type=number(0, 1, low_open=True, high_open=True))
    add(g, D, DataConfig, "--test", "a separate test file, scored at the end", field="test_path", metavar="FILE")
    g = t.add_argument_group("model")
    add(g, M, ModelConfig, "--cell", registry.describe(), choices=registry.names())
    add(g, M, ModelConfig, "--embed-size", "embedding width; 0 = one-hot input", type=nonneg_int)
    add(g, M, ModelConfig, "--hidden-size", "state width per layer", type=positive_int,
        default_text="the recipe's: the widest of 256-1024 that takes 1,500 steps in the time budget")
    add(g, M, ModelConfig, "--layers", "number of stacked layers", field="num_layers", type=positive_int)
    add(g, M, ModelConfig, "--dropout", "dropout probability", type=number(0, 1, high_open=True),
        default_text="the recipe's: 0 to 0.4 as the budget allows more passes over the text")
    add(g, M, ModelConfig, "--backend", "fused torch.nn layers or rnnkit's scratch cells", choices=BACKENDS)
    add(g, M, ModelConfig, "--init-std", "initialise every weight from N(0, std^2) and every bias at 0, as d2l's "
        "from-scratch models (seed 001: 0.01); default: torch.nn's initialisation", type=number(0, low_open=True))
    _cell_option_flag(g)
    _training_flags(t.add_argument_group("training"), TrainConfig, lm=True)
    _run_flags(t.add_argument_group("run"), "corpus or file name")


def _cell_option_flag(group) -> None:
    blocks = [n for n in registry.names() if registry.get(n).options]
    group.add_argument("--cell-option", dest="model.cell_options", action="append", type=cell_option, default=S,
                       metavar="NAME=VALUE", help="one of the cell's own hyperparameters (repeatable): "
                       + "; ".join(f"{n}: {', '.join(f'{k}={v}' for k, v in registry.get(n).options.items())}"
                                   for n in blocks) + "; the classic cells have none")


def _eval(sub) -> None:
    e = sub.add_parser("eval", help="score held-out text: nats/char, perplexity, bits/char",
                       description="Evaluate a trained run on its validation text or on another file.")
    e.add_argument("run", help="run directory")
    e.add_argument("file", nargs="?", help="text file to score (default: the run's validation text)")
    e.add_argument("--member", help="member of a zip that holds several files")
    e.add_argument("--encoding", default=DataConfig.encoding)
    e.add_argument("--errors", default=DataConfig.errors, choices=ERRORS)
    e.add_argument("--weights", choices=("best", "last"), default="best")
    e.add_argument("--device", choices=DEVICES, default="auto")
    e.add_argument("--json", action="store_true", help="print one JSON object")


def _sample(sub) -> None:
    s = sub.add_parser("sample", help="generate text from a trained run",
                       description="Generate text: prime on a prompt, then sample one character at a time.")
    s.add_argument("run", help="run directory")
    P = "sample"
    add(s, P, SampleConfig, "--prompt", "text to start from", default_text="a line break")
    s.add_argument("--prompt-file", help="read the prompt from a file")
    add(s, P, SampleConfig, "--length", "characters to generate", type=positive_int)
    add(s, P, SampleConfig, "--temperature", "0 = greedy; below 1 more conservative (seed 002's scale factor "
        "s = 1/temperature)", type=number(0))
    add(s, P, SampleConfig, "--top-k", "sample among the k most likely characters", type=positive_int)
    add(s, P, SampleConfig, "--top-p", "nucleus sampling threshold in (0, 1]", type=number(0, 1, low_open=True))
    add(s, P, SampleConfig, "--num-samples", "samples generated together as one batch", type=positive_int)
    add(s, P, SampleConfig, "--seed", "seed for the sampling generator (same seed, same text)", type=int)
    g = s.add_argument_group("beam search (instead of sampling)")
    add(g, "beam", BeamConfig, "--beam", "search with this many hypotheses at once instead of sampling",
        type=positive_int, default_text="off")
    add(g, "beam", BeamConfig, "--num-return", "distinct hypotheses printed, best first", type=positive_int)
    add(g, "beam", BeamConfig, "--stop", "a hypothesis ends where its text ends with this string (left out "
        "of the output; \\n and \\t stand for a line break and a tab)", type=escapes)
    add(g, "beam", BeamConfig, "--length-penalty", "alpha: finished hypotheses rank by log p / length^alpha",
        type=number(0))
    s.add_argument("--weights", choices=("best", "last"), default="best")
    s.add_argument("--device", choices=DEVICES, default="cpu")
    s.add_argument("--no-prompt", action="store_true", help="print only the generated text, not the prompt")
    s.add_argument("--separator", default="\n\n", help="printed between samples (default: a blank line)")


def _classify(sub) -> None:
    c = sub.add_parser("classify", help="sequence classification: train, eval, predict (e.g. IMDb sentiment)",
                       description="Classify texts with a (bi)directional RNN: train on labelled text (an aclImdb "
                                   "directory or .tar.gz, CSV/TSV, JSONL), evaluate, predict.")
    csub = c.add_subparsers(dest="classify_command", metavar="ACTION")
    csub.required = True

    t = csub.add_parser("train", help="train a classifier (or resume one)",
                        description="Train a text classifier; validates after every epoch and keeps the best weights.")
    t.add_argument("path", nargs="?", help="aclImdb directory or .tar.gz, .csv/.tsv or .jsonl (optionally .gz)")
    D, M = "data", "model"
    g = t.add_argument_group("data")
    add(g, D, TextDataConfig, "--format", "default: from the file name", choices=TEXT_FORMATS)
    add(g, D, TextDataConfig, "--text-column", "CSV/TSV column or JSONL key of the text")
    add(g, D, TextDataConfig, "--label-column", "... and of the label")
    add(g, D, TextDataConfig, "--split", "aclImdb split to train on")
    add(g, D, TextDataConfig, "--val-fraction", "seeded share held out for validation (IMDb's 25,000 at the default: "
        "5,000)",
        type=number(0, 1, low_open=True, high_open=True))
    add(g, D, TextDataConfig, "--val", "a separate validation file instead of --val-fraction", field="val_path",
        metavar="FILE")
    add(g, D, TextDataConfig, "--encoding", "text encoding")
    small = f"under {recipes.SMALL_SET:,} training texts"
    add(g, D, TextDataConfig, "--min-freq", "rarer words become <unk>", type=positive_int,
        default_text=f"the recipe's: 1 {small}, else 2")
    add(g, D, TextDataConfig, "--max-vocab", "most frequent words kept; 0 = all", type=nonneg_int)
    add(g, D, TextDataConfig, "--max-tokens", "truncate texts to N words; 0 = keep all", type=nonneg_int)
    add(g, D, TextDataConfig, "--truncate", "words a truncated text keeps: head, tail or both ends",
        choices=TRUNCATIONS)
    add(g, D, TextDataConfig, "--bucket", "batch texts of similar length, sorted within pools of N batches; 0 = off",
        type=nonneg_int)
    g = t.add_argument_group("model")
    add(g, M, ClassifierConfig, "--cell", registry.describe(classifier=True), choices=registry.names(classifier=True))
    add(g, M, ClassifierConfig, "--embed-size", "word embedding width", type=positive_int)
    add(g, M, ClassifierConfig, "--hidden-size", "state width per direction", type=positive_int)
    add(g, M, ClassifierConfig, "--layers", "stacked recurrent layers", field="num_layers", type=positive_int)
    add(g, M, ClassifierConfig, "--bidirectional", "read each text in both directions", default_text="the recipe's: on")
    add(g, M, ClassifierConfig, "--pooling",
        "last valid state of each direction, or mean/max (or both: meanmax) over the valid steps",
        choices=POOLINGS, default_text=f"the recipe's: mean for texts under {recipes.SHORT_TEXT} words, else max")
    add(g, M, ClassifierConfig, "--head-hidden", "ReLU layer before the output; 0: none", type=nonneg_int)
    add(g, M, ClassifierConfig, "--dropout", "dropout probability", type=number(0, 1, high_open=True),
        default_text=f"the recipe's: 0.5 {small}, else 0.3")
    add(g, M, ClassifierConfig, "--word-dropout", "in training, the chance that a word is read as <unk>",
        type=number(0, 1, high_open=True))
    add(g, M, ClassifierConfig, "--naive-bayes", "blend in a Naive Bayes over the words and the word pairs (hashed into "
        "N buckets), with weights fitted on the validation texts; 0: off", type=nonneg_int, metavar="N",
        default_text="the recipe's: buckets for twice the training texts' distinct word pairs")
    add(g, M, ClassifierConfig, "--naive-bayes-once", "Naive Bayes counts each distinct word and pair once per text "
        "(--no-naive-bayes-once: every occurrence)")
    add(g, M, ClassifierConfig, "--packed", "run through pack_padded_sequence (same results; slower on CPU)")
    _cell_option_flag(g)
    _training_flags(t.add_argument_group("training"), ClassifierTrainConfig, lm=False)
    _run_flags(t.add_argument_group("run"), "data name")

    e = csub.add_parser("eval", help="accuracy and loss of a trained classifier on labelled data",
                        description="Evaluate a classifier on labelled data (default: the run's validation texts).")
    e.add_argument("run", help="run directory")
    e.add_argument("path", nargs="?", help="labelled data in any format train reads")
    e.add_argument("--split", default="test", help="aclImdb split (default %(default)s)")
    e.add_argument("--format", choices=TEXT_FORMATS, help="default: the run's")
    e.add_argument("--text-column", help="default: the run's")
    e.add_argument("--label-column", help="default: the run's")
    e.add_argument("--encoding", help="default: the run's")
    e.add_argument("--batch-size", type=positive_int, default=256)
    e.add_argument("--weights", choices=("best", "last"), default="best")
    e.add_argument("--device", choices=DEVICES, default="auto")
    e.add_argument("--threads", type=threads, help="CPU threads for PyTorch")
    e.add_argument("--json", action="store_true", help="print one JSON object (accuracy, loss, examples, ...)")

    p = csub.add_parser("predict", help="label texts with a trained classifier",
                        description="Print the label and its probability for each text: the arguments, the lines "
                                    "of --file, or the lines of standard input.")
    p.add_argument("run", help="run directory")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify")
    p.add_argument("--file", help="one text per line ('-' = standard input)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--weights", choices=("best", "last"), default="best")
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.add_argument("--json", action="store_true", help="one JSON object per text: label, probability, probabilities")
