"""Training a character language model: data -> vocabulary -> batches -> model -> Trainer -> run directory."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from .batching import make_batches
from .config import DataConfig, ModelConfig, TrainConfig, from_dict, to_dict
from .corpus import CorpusError, describe, load_text, read_text
from .evaluate import evaluate_stream, precision_warning
from .metrics import LMScore
from .models import CharLM
from .recurrent import detach_state
from .trainer import Trainer, resolve_device
from .vocab import CharVocab, describe_unknown

DEFAULT_TIME_BUDGET = 600.0   # seconds, when no --steps/--epochs/--time-budget is given
RESUMABLE_FIELDS = ("steps", "epochs", "time_budget", "eval_every", "eval_every_s", "eval_chars", "device", "threads",
                    "compile")


def fingerprint(text: str) -> str:
    h = hashlib.sha256()
    for i in range(0, len(text), 1 << 22):
        h.update(text[i:i + (1 << 22)].encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:16]


@dataclass
class LMData:
    vocab: CharVocab
    train: torch.Tensor     # 1-D ids in the vocabulary's compact dtype
    val: torch.Tensor
    chars: int
    fingerprint: str


def prepare_data(cfg: DataConfig, vocab: Optional[CharVocab] = None) -> LMData:
    """Read, clean and encode the corpus; the tail ``val_fraction`` is held out, contiguously."""
    text = load_text(cfg)
    vocab = vocab or CharVocab.from_text(text)
    ids = vocab.encode(text, skip_unknown=True)
    n_val = max(2, int(round(len(ids) * cfg.val_fraction)))
    if len(ids) - n_val < 3:
        raise CorpusError(f"{describe(cfg)} has only {len(ids)} characters: too few to train on "
                          f"and hold out {cfg.val_fraction:.0%} for validation; give more text")
    return LMData(vocab, ids[:-n_val], ids[-n_val:], len(text), fingerprint(text))


class LMTask:
    """Next-character prediction with the hidden state carried across consecutive batches (TBPTT)."""

    unit = "chars"

    def __init__(self, val: torch.Tensor, device: torch.device, precision: str, eval_chars: Optional[int]):
        self.val, self.device, self.precision, self.eval_chars = val, device, precision, eval_chars
        self.state = None

    def loss(self, model, batch) -> torch.Tensor:
        x = batch.x.to(self.device, non_blocking=True)             # (B, T)
        y = batch.y.to(self.device, non_blocking=True)
        state = None if batch.reset else detach_state(self.state)  # cut the graph at the boundary
        logits, self.state = model(x, state)                       # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def units(self, batch) -> int:
        return batch.x.numel()

    def evaluate(self, model) -> dict:
        val = self.val if self.eval_chars is None else self.val[: self.eval_chars]
        score = evaluate_stream(model, val, precision=self.precision)
        return {"val_loss": score.nats_per_char, "val_bpc": score.bits_per_char}

    def state_dict(self) -> dict:
        s = self.state
        return {"state": None if s is None else ([t.detach().cpu() for t in s] if isinstance(s, tuple) else s.detach().cpu())}

    def load_state_dict(self, state: dict) -> None:
        s = state["state"]
        self.state = None if s is None else (tuple(t.to(self.device) for t in s) if isinstance(s, list) else s.to(self.device))


LARGE_ALPHABET = 1000         # symbols; above this the default learning rate is lower


def default_lr(vocab_size: int) -> float:
    """The peak learning rate when none is given: 5e-3, or 1e-3 for a large alphabet.

    Text with thousands of symbols (Chinese, Japanese) trains better slowly. On Jay Chou's lyrics (2,583
    symbols, most of them rare) a 2x256 GRU stayed at 6.19 nats/char at 5e-3, where 2e-3 reached 6.02 and
    1e-3 5.98. On a 63 K-character slice of Tiny Shakespeare (59 symbols), 5e-3 and 2e-3 did equally well,
    so the size of the corpus is not the cause (docs/benchmarks.md, "Small corpora and large alphabets").
    """
    return 1e-3 if vocab_size > LARGE_ALPHABET else 5e-3


def _steps_budget(cfg: TrainConfig, steps_per_epoch: int) -> Optional[int]:
    budgets = []
    if cfg.steps is not None:
        budgets.append(cfg.steps)
    if cfg.epochs is not None:
        budgets.append(max(1, math.ceil(cfg.epochs * steps_per_epoch)))
    return min(budgets) if budgets else None


def train(data: DataConfig, model: ModelConfig, train: TrainConfig, out: str | Path, *,
          overwrite: bool = False, quiet: bool = False, pause_at: Optional[int] = None,
          log: Callable[[str], None] | None = None) -> dict:
    """Train a new run in ``out``; returns the final summary.

    ``pause_at`` saves a resumable checkpoint after that step and returns early (``resume`` goes on).
    """
    if train.steps is None and train.epochs is None and train.time_budget is None:
        train = dataclasses.replace(train, time_budget=DEFAULT_TIME_BUDGET)
    ckpt.check_run_dir(out, overwrite=overwrite)   # refuse early; replace the old run only once the data is good
    with ckpt.run_lock(out):
        return _run(Path(out), data, model, train, None, quiet=quiet, log=log, pause_at=pause_at,
                    overwrite=overwrite)


def resume(out: str | Path, *, overrides: Optional[dict] = None, data_path: Optional[str] = None,
           quiet: bool = False, pause_at: Optional[int] = None, log: Callable[[str], None] | None = None) -> dict:
    """Continue the run in ``out`` exactly where its last checkpoint left it.

    ``overrides`` may change only the budget, evaluation cadence and device (RESUMABLE_FIELDS).
    """
    run = ckpt.read_run(out)
    if run.get("task") != "charlm":
        raise ckpt.CheckpointError(f"{out} is a {run.get('task')} run; resume it with its own command")
    data = from_dict(DataConfig, run["data"], source=f"{out}/run.json data")
    if data_path is not None and data.path is not None and Path(data_path).resolve() != Path(data.path).resolve():
        data = dataclasses.replace(data, path=data_path)  # moved file: allowed if the text is the same
    model = from_dict(ModelConfig, run["model"], source=f"{out}/run.json model")
    train_cfg = from_dict(TrainConfig, run["train"], source=f"{out}/run.json train")
    bad = sorted(set(overrides or {}) - set(RESUMABLE_FIELDS))
    if bad:
        raise ValueError(f"cannot change {', '.join(bad)} when resuming (the run would not continue exactly); "
                         f"start a new run with --out instead")
    if overrides:
        train_cfg = dataclasses.replace(train_cfg, **overrides)
    vocab = CharVocab.from_dict(run["vocab"])
    with ckpt.run_lock(out):
        state = ckpt.load_state(Path(out) / ckpt.STATE)
        return _run(Path(out), data, model, train_cfg, (run, vocab, state), quiet=quiet, log=log,
                    pause_at=pause_at)


def _run(run_dir: Path, data_cfg: DataConfig, model_cfg: ModelConfig, cfg: TrainConfig, resumed,
         *, quiet: bool, log, pause_at: Optional[int] = None, overwrite: bool = False) -> dict:
    say = log or (lambda msg: print(msg, file=sys.stderr))
    if cfg.threads:
        torch.set_num_threads(min(cfg.threads, os.cpu_count() or cfg.threads))   # more would only crash OpenMP
    device = resolve_device(cfg.device)
    t_read = time.perf_counter()
    data = prepare_data(data_cfg, resumed[1] if resumed else None)
    t_read = time.perf_counter() - t_read
    if data_cfg.test_path:          # a bad test file fails now, not after the whole training run
        read_text(data_cfg.test_path, encoding=data_cfg.encoding, errors=data_cfg.errors)
    if resumed and data.fingerprint != resumed[0].get("data_fingerprint"):
        raise ValueError(f"the text of {describe(data_cfg)} differs from the text this run was trained on; "
                         f"resume with the same data, or start a new run with --out")
    model_cfg = dataclasses.replace(model_cfg, vocab_size=len(data.vocab))
    lr_note = ""
    if cfg.lr is None:                              # a resumed run has the value it started with
        cfg = dataclasses.replace(cfg, lr=default_lr(len(data.vocab)))
        if len(data.vocab) > LARGE_ALPHABET:
            lr_note = f"; {cfg.lr:g} is the default for alphabets of over {LARGE_ALPHABET:,} symbols"
    torch.manual_seed(cfg.seed)
    model = CharLM(model_cfg).to(device)
    batches = make_batches(cfg.batching, data.train, cfg.batch_size, cfg.seq_len, seed=cfg.seed,
                           fixed_grid=cfg.fixed_grid)
    task = LMTask(data.val, device, cfg.precision, cfg.eval_chars)
    trainer = Trainer(model, task, batches, cfg, run_dir, device,
                      total_steps=_steps_budget(cfg, batches.steps_per_epoch), quiet=quiet)
    if resumed:
        try:
            trainer.load_state_dict(resumed[2])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
            why = lines[1 if len(lines) > 1 and lines[0].endswith(":") else 0][:200]   # skip "Error(s) in ...:"
            raise ckpt.CheckpointError(f"{run_dir / ckpt.STATE}: does not fit the run described in run.json "
                                       f"({why}); was either file edited or replaced?") from None
        ckpt.remove_stale_temps(run_dir)
        ckpt.truncate_metrics(run_dir, trainer.progress.step)
        if trainer.done():
            raise ValueError(f"{run_dir} already finished its budget at step {trainer.progress.step}; "
                             f"give a larger --steps, --epochs or --time-budget to train on")
        say(f"resuming {run_dir} at step {trainer.progress.step} ({trainer.progress.train_time:.0f}s trained)")
    else:
        ckpt.prepare_run_dir(run_dir, overwrite=overwrite)
        ckpt.write_run(run_dir, {
            "task": "charlm", "model": to_dict(model_cfg), "data": to_dict(data_cfg), "train": to_dict(cfg),
            "vocab": data.vocab.to_dict(), "data_fingerprint": data.fingerprint,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rnnkit_version": _version(),
            "torch_version": torch.__version__})
    budget = ", ".join(b for b in (
        f"{trainer.total_steps} steps" if trainer.total_steps else "",
        f"{cfg.time_budget:g}s of training" if cfg.time_budget else "") if b)
    say(f"{describe(data_cfg)}: {data.chars:,} chars, vocab {len(data.vocab)}, train {len(data.train):,} / "
        f"val {len(data.val):,} (read in {t_read:.1f}s)")
    say(f"model: {model_cfg.num_layers}x{model_cfg.hidden_size} {model_cfg.cell} "
        f"({'scratch' if model_cfg.cell == 'elman' else model_cfg.backend}), "
        f"{'embedding ' + str(model_cfg.embed_size) if model_cfg.embed_size else 'one-hot input'}, "
        f"{model.num_parameters():,} parameters on {device}, {cfg.precision}")
    say(f"training: {cfg.batching} batches {cfg.batch_size}x{cfg.seq_len}, {cfg.optimizer} lr {cfg.lr:g} "
        f"({cfg.schedule}{lr_note}), clip {cfg.clip:g}; budget {budget}; run directory {run_dir}")
    if note := precision_warning(device, cfg.precision):
        say(note)
    if cfg.compile:
        say("compiling the training step (torch.compile): the first step takes minutes")
    try:
        trainer.fit(pause_at=pause_at)
    except BaseException:
        if not resumed and not (run_dir / ckpt.STATE).exists():
            ckpt.discard_run(run_dir)   # failed before its first checkpoint: leave no run that cannot resume
        raise
    if not trainer.done():
        return {"step": trainer.progress.step, "paused": True, "train_time_s": round(trainer.progress.train_time, 1)}

    # Final report with the best weights over the whole validation text (and the test file, if any).
    best = ckpt.load_weights(ckpt.weights_path(run_dir, "best"), device)
    model.load_state_dict(best)
    score = evaluate_stream(model, data.val, precision=cfg.precision)
    summary = {"step": trainer.progress.step, "best_step": trainer.progress.best_step,
               "train_time_s": round(trainer.progress.train_time, 1),
               "chars_per_s": round(trainer.progress.units / max(trainer.progress.train_time, 1e-9), 1),
               **{f"val_{k}": v for k, v in score.to_dict().items()}}
    if data_cfg.test_path:
        test = score_file(model, data.vocab, data_cfg.test_path, encoding=data_cfg.encoding,
                          errors=data_cfg.errors, precision=cfg.precision, warn=say)
        summary.update({f"test_{k}": v for k, v in test.to_dict().items()})
    return summary


def score_file(model, vocab: CharVocab, path: str, *, member: Optional[str] = None, encoding: str = "utf-8",
               errors: str = "strict", precision: str = "fp32", warn: Callable[[str], None] | None = None) -> LMScore:
    """Bits/char etc. of a text file under ``model``; unknown characters are skipped with a warning."""
    text = read_text(path, member=member, encoding=encoding, errors=errors)
    unknown = vocab.unknown(text)
    if unknown and warn:
        warn(f"{path}: " + describe_unknown(unknown))
    ids = vocab.encode(text, skip_unknown=True)
    if len(ids) < 2:
        raise CorpusError(f"{path} has fewer than two characters the model knows: nothing to score")
    return evaluate_stream(model, ids, precision=precision)


def _version() -> str:
    from . import __version__
    return __version__


@dataclass
class LoadedLM:
    model: CharLM
    vocab: CharVocab
    run: dict                    # the run's run.json: configs, vocabulary, fingerprint
    weights: Path                # the weights file that was loaded

    @property
    def precision(self) -> str:
        return self.run.get("train", {}).get("precision", "fp32")


def load(run_dir: str | Path, *, weights: str = "best", device: str | torch.device = "cpu",
         backend: Optional[str] = None) -> LoadedLM:
    """A trained character model from its run directory (GPU-trained runs load on CPU too)."""
    run = ckpt.read_run(run_dir)
    if run.get("task") != "charlm":
        raise ckpt.CheckpointError(f"{run_dir} is a {run.get('task')} run, not a character language model")
    model_cfg = from_dict(ModelConfig, run["model"], source=f"{run_dir}/run.json model")
    saved_backend = model_cfg.backend
    if backend is not None:
        model_cfg = dataclasses.replace(model_cfg, backend=backend)
    device = resolve_device(device) if isinstance(device, str) else device
    model = CharLM(model_cfg)
    path = ckpt.weights_path(run_dir, weights)
    state = ckpt.load_weights(path)
    if model_cfg.backend != saved_backend and model_cfg.cell != "elman":
        from .recurrent import fused_to_scratch_keys, scratch_to_fused_keys
        state = (fused_to_scratch_keys if model_cfg.backend == "scratch" else scratch_to_fused_keys)(state)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]   # [0] is "Error(s) in loading ...:"
        raise ckpt.CheckpointError(f"{path}: weights do not fit the model in run.json ({lines[-1][:200]})") from None
    return LoadedLM(model.to(device).eval(), CharVocab.from_dict(run["vocab"]), run, path)
