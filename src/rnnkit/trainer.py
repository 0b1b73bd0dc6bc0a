"""A small training loop that knows nothing about the model or the task.

What differs between tasks comes in as a ``Task``: the loss of one batch (a language model carries its
hidden state inside its task), an evaluation, and the task's own resumable state. The loop steps, clips,
schedules the learning rate, evaluates and checkpoints on intervals, shows progress, stops on its budget,
on a non-finite loss, or on SIGINT/SIGTERM (after saving a resumable checkpoint).
"""

from __future__ import annotations

import math
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol

import torch
from tqdm import tqdm

from . import checkpoint as ckpt
from .config import TrainConfig
from .evaluate import autocast


MAX_EVAL_SHARE = 0.2   # epoch-end evaluations are skipped while they would take more than this share of the time


class Task(Protocol):
    unit: str                                            # what throughput counts: "chars", "tokens", ...
    command: str                                         # optional; resumes it: "rnnkit train" if absent

    def loss(self, model, batch) -> torch.Tensor: ...    # mean loss of one training batch (a graph)
    def units(self, batch) -> int: ...                  # how many units the batch holds
    def evaluate(self, model) -> dict[str, float]: ...   # must hold "val_loss" (lower is better)
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class TrainingStopped(RuntimeError):
    """Training ended early (signal or non-finite loss); the message says why and how to go on."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available to PyTorch here; use --device cpu or auto")
    return torch.device(name)


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.lr is None:
        raise ValueError("TrainConfig.lr is None: the task chooses its default learning rate before training "
                         "(rnnkit.train.default_lr); give lr=... to use the Trainer directly")
    params = list(params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    # On a GPU, Adam's fused kernel updates every parameter in one launch (the default, foreach, takes a
    # handful per step); the update is the same. On the CPU torch's default is already the fastest.
    fused = bool(params) and all(p.is_cuda for p in params)
    opt = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return opt(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **({"fused": True} if fused else {}))


def lr_factor(cfg: TrainConfig, step: int, progress: float) -> float:
    """Multiplier of the peak learning rate: linear warm-up over steps, then the schedule's shape over
    ``progress`` in [0, 1] (fraction of the step or time budget spent)."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps and cfg.schedule != "constant" else 1.0
    if cfg.schedule == "cosine":
        p = min(max(progress, 0.0), 1.0)
        return warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))
    return warm


def compiled(model: torch.nn.Module) -> Callable:
    """``torch.compile(model)`` for the training step of a model called as ``model(x, state)`` (a ``CharLM``;
    a model with ``init_state`` gets its zero state for ``None``): Inductor unrolls the scratch cells' time loop into
    one graph, fuses each step's element-wise work and derives one backward for the whole sequence, which
    removes the per-step dispatch and autograd overhead that dominates small batches. Each new input shape
    compiles once more; fused torch.nn layers run as they are."""
    fn = torch.compile(model, dynamic=False)
    init_state = getattr(model, "init_state", None)

    def forward(x, state=None):
        if state is None and init_state is not None:
            state = init_state(x.shape[0])      # zeros, as None means: one graph instead of two
        try:
            return fn(x, state)
        except Exception as e:  # torch's own errors are pages long: say what failed and what to do
            if not type(e).__module__.startswith("torch._"):
                raise
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValueError(f"--compile: torch.compile failed ({type(e).__name__}: {first[:200]}); "
                             f"train without --compile") from None
    return forward


@dataclass
class Progress:
    """The loop's counters; saved in every checkpoint."""
    step: int = 0                    # optimizer steps taken
    train_time: float = 0.0          # seconds spent training (evaluation and saving excluded)
    units: int = 0                   # characters (or tokens) trained on
    best: float = math.inf           # best validation loss so far
    best_step: int = -1
    # The open evaluation window, saved so that a resumed run evaluates at the same steps and logs the
    # same train_loss as an uninterrupted one (no shifted, duplicated or missing metrics records).
    last_eval_step: int = 0          # step of the last evaluation
    window_loss: float = 0.0         # summed training loss of the steps since then (float32 value)
    window_steps: int = 0            # how many steps that sum holds


@dataclass
class Trainer:
    model: torch.nn.Module
    task: Any                                   # a Task
    batches: Iterator                           # resumable batch iterator (state_dict/load_state_dict)
    cfg: TrainConfig
    run_dir: Path
    device: torch.device
    total_steps: Optional[int] = None           # step budget (None: time budget only)
    quiet: bool = False
    optimizer: Optional[torch.optim.Optimizer] = None
    log: Callable[[str], None] = lambda msg: tqdm.write(msg, file=sys.stderr)

    def __post_init__(self) -> None:
        self.optimizer = self.optimizer or make_optimizer(self.model.parameters(), self.cfg)
        self.plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=0.5, patience=2)
                        if self.cfg.schedule == "plateau" else None)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.progress = Progress()
        self._stop_signal: Optional[int] = None

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "plateau": self.plateau.state_dict() if self.plateau else None,
            "progress": {"step": self.progress.step, "train_time": self.progress.train_time,
                         "units": self.progress.units, "best": self.progress.best,
                         "best_step": self.progress.best_step, "last_eval_step": self.progress.last_eval_step,
                         "window_loss": self.progress.window_loss, "window_steps": self.progress.window_steps},
            "batches": self.batches.state_dict(),
            "task": self.task.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.plateau is not None and state.get("plateau"):
            self.plateau.load_state_dict(state["plateau"])
        p = state["progress"]
        self.progress = Progress(step=int(p["step"]), train_time=float(p["train_time"]), units=int(p["units"]),
                                 best=float(p["best"]), best_step=int(p["best_step"]),
                                 last_eval_step=int(p.get("last_eval_step", p["step"])),
                                 window_loss=float(p.get("window_loss", 0.0)),
                                 window_steps=int(p.get("window_steps", 0)))
        self.batches.load_state_dict(state["batches"])
        self.task.load_state_dict(state["task"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"].get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def save(self, *, best: bool = False, metrics: Optional[dict] = None) -> None:
        meta = {"step": self.progress.step, **({"metrics": metrics} if metrics else {})}
        weights = self.model.state_dict()
        ckpt.save_weights(self.run_dir / ckpt.WEIGHTS, weights, meta)
        if best:
            ckpt.save_weights(self.run_dir / ckpt.BEST, weights, meta)
        # state.pt last: it is the commit point. A kill before it leaves the previous state, from which the
        # resumed run redoes these steps and rewrites the weights (and best) exactly as they are now.
        ckpt.save_state(self.run_dir / ckpt.STATE, self.state_dict())

    # ------------------------------------------------------------------ loop

    def _budget_progress(self) -> float:
        fractions = [0.0]
        if self.total_steps:
            fractions.append(self.progress.step / self.total_steps)
        if self.cfg.time_budget:
            fractions.append(self.progress.train_time / self.cfg.time_budget)
        return max(fractions)

    def done(self) -> bool:
        if self.total_steps is not None and self.progress.step >= self.total_steps:
            return True
        return bool(self.cfg.time_budget) and self.progress.train_time >= self.cfg.time_budget

    def _set_lr(self) -> None:
        if self.plateau is not None:
            if self.progress.step <= self.cfg.warmup_steps:
                f = lr_factor(self.cfg, self.progress.step, 0.0)
                for g, base in zip(self.optimizer.param_groups, self.base_lrs):
                    g["lr"] = base * f
            return
        f = lr_factor(self.cfg, self.progress.step, self._budget_progress())
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f

    def evaluate_and_save(self, train_loss: float, last_eval_units: int, last_eval_time: float) -> dict:
        metrics = self.task.evaluate(self.model)
        val = metrics["val_loss"]
        if not math.isfinite(val):   # the weights are already broken: do not save them over a good checkpoint
            raise TrainingStopped(
                f"validation loss became {val} at step {self.progress.step}; stopped. {self._kept()} "
                f"Try a lower --lr (now {self.cfg.lr:g}) or gradient clipping (--clip 1).", 3)
        improved = val < self.progress.best
        if improved:
            self.progress.best, self.progress.best_step = val, self.progress.step
        if self.plateau is not None and math.isfinite(val):
            self.plateau.step(val)
        dt = self.progress.train_time - last_eval_time
        record = {"step": self.progress.step, "elapsed_s": round(self.progress.train_time, 3),
                  "train_loss": train_loss, **metrics,
                  f"{self.task.unit}_per_s": round((self.progress.units - last_eval_units) / dt, 1) if dt > 0 else None,
                  "lr": self.optimizer.param_groups[0]["lr"]}
        self.progress.last_eval_step, self.progress.window_loss, self.progress.window_steps = self.progress.step, 0.0, 0
        # The record goes to the log before the checkpoint: after a kill between the two, the resumed run
        # drops records past its checkpoint and writes them again (a kill the other way round left a gap).
        ckpt.append_metrics(self.run_dir, record)
        self.save(best=improved, metrics={k: v for k, v in record.items() if isinstance(v, (int, float))})
        return record

    @contextmanager
    def _signals(self):
        def handler(signum, frame):
            if self._stop_signal is not None:          # a second signal: stop now (files stay whole)
                raise KeyboardInterrupt
            self._stop_signal = signum
        old = {}
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                old[s] = signal.signal(s, handler)
            except ValueError:                         # not the main thread: leave signals alone
                pass
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def fit(self, *, pause_at: Optional[int] = None) -> dict:
        """Train until the budget is spent; returns the last evaluation record.

        ``pause_at`` stops after that step with a resumable checkpoint, as an interruption would: resuming
        continues the same schedule, so the losses equal those of an uninterrupted run.
        """
        cfg, model, opt = self.cfg, self.model, self.optimizer
        model.train()
        step_model = compiled(model) if cfg.compile else model   # same parameters; evaluation stays eager
        params = [p for p in model.parameters() if p.requires_grad]
        p = self.progress
        bar_total = self.total_steps if self.total_steps else None
        bar = tqdm(total=bar_total, initial=p.step if bar_total else 0, unit="step", dynamic_ncols=True,
                   disable=True if self.quiet else None, file=sys.stderr, mininterval=1.0,
                   bar_format=None if bar_total else "{desc} {n_fmt} steps [{elapsed}{postfix}]")
        last_eval_step = p.last_eval_step                   # a resumed run continues the open window
        last_eval_time, last_eval_units = p.train_time, p.units
        next_eval_time = p.train_time + (cfg.eval_every_s or math.inf)
        # Timed evaluation also comes once per pass over the training data when that is sooner: on a small
        # corpus a minute is dozens of epochs, and the best weights would be missed. Not so often, though,
        # that evaluating and checkpointing take more than MAX_EVAL_SHARE of the time (a GPU runs through
        # a tiny corpus in a fraction of a second).
        epoch_steps = (getattr(self.batches, "steps_per_epoch", None) if cfg.eval_every_s else None) or math.inf
        epoch_gap = 0.0                 # training seconds an epoch-end evaluation waits for (from the last one's cost)
        loss_sum = torch.tensor(p.window_loss, dtype=torch.float32, device=self.device)
        loss_count = p.window_steps
        recent: list[torch.Tensor] = []                    # per-step losses since the last finiteness check
        record: dict = {}
        good_step = p.step
        log_every = 10

        def check_finite() -> float:
            """Mean loss of the window; stops at a non-finite one, naming the first bad step."""
            nonlocal good_step
            mean = float(loss_sum) / max(loss_count, 1)        # one host sync per log_every steps
            if not math.isfinite(mean):
                losses = torch.stack(recent).tolist() if recent else []
                bad = [(i, v) for i, v in enumerate(losses) if not math.isfinite(v)]
                i, v = bad[0] if bad else (len(losses) - 1, mean)
                raise TrainingStopped(
                    f"loss became {v} at step {good_step + i + 1}; stopped. {self._kept()} "
                    f"Try a lower --lr (now {cfg.lr:g}) or gradient clipping (--clip 1).", 3)
            good_step = p.step
            recent.clear()
            return mean

        def save_open_window() -> None:
            check_finite()                                  # never save weights a bad step has broken
            p.last_eval_step, p.window_loss, p.window_steps = last_eval_step, float(loss_sum), loss_count
            self.save()

        with self._signals():
            while not self.done():
                if pause_at is not None and p.step >= pause_at:
                    save_open_window()
                    break
                t0 = time.perf_counter()
                self._set_lr()
                batch = next(self.batches)
                with autocast(self.device, cfg.precision):
                    loss = self.task.loss(step_model, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip:
                    torch.nn.utils.clip_grad_norm_(params, cfg.clip)
                opt.step()
                recent.append(loss.detach().float())
                loss_sum += recent[-1]
                loss_count += 1
                p.step += 1
                p.units += self.task.units(batch)
                if self.device.type == "cuda" and p.step % log_every == 0:
                    torch.cuda.synchronize()
                p.train_time += time.perf_counter() - t0
                bar.update(p.step - bar.n)                  # cheap: tqdm redraws at most once a second

                if p.step % log_every == 0 or self.done():
                    mean = check_finite()
                    bar.set_postfix_str(f"loss {mean:.3f}, {p.units / max(p.train_time, 1e-9):,.0f} {self.task.unit}/s"
                                        + (f", {self._time_left()}" if cfg.time_budget else ""), refresh=False)

                epoch_end = p.step - last_eval_step >= epoch_steps and p.train_time - last_eval_time >= epoch_gap
                due = ((cfg.eval_every is not None and p.step - last_eval_step >= cfg.eval_every)
                       or (cfg.eval_every is None and (p.train_time >= next_eval_time or epoch_end)))
                if due or self.done():
                    train_loss = float(loss_sum) / max(loss_count, 1)
                    if not math.isfinite(train_loss):
                        continue  # reported at the check above on the next pass
                    t_eval = time.perf_counter()
                    record = self.evaluate_and_save(train_loss, last_eval_units, last_eval_time)
                    epoch_gap = (time.perf_counter() - t_eval) * (1 - MAX_EVAL_SHARE) / MAX_EVAL_SHARE
                    self.log(self._describe(record))
                    loss_sum.zero_()
                    loss_count = 0
                    last_eval_step, last_eval_time, last_eval_units = p.step, p.train_time, p.units
                    next_eval_time = p.train_time + (cfg.eval_every_s or math.inf)

                if self._stop_signal is not None:
                    bar.close()
                    save_open_window()
                    name = "Ctrl-C" if self._stop_signal == signal.SIGINT else "SIGTERM"
                    code = 130 if self._stop_signal == signal.SIGINT else 143
                    command = getattr(self.task, "command", "rnnkit train")
                    raise TrainingStopped(f"{name}: saved a resumable checkpoint at step {p.step} in "
                                          f"{self.run_dir}; continue with: {command} --resume {self.run_dir}", code)
        bar.close()
        return record

    def _saved_step(self) -> int:
        try:
            return int(ckpt.load_state(self.run_dir / ckpt.STATE)["progress"]["step"])
        except ckpt.CheckpointError:
            return 0

    def _kept(self) -> str:
        """Where the last good checkpoint is, for the message of a run stopped by a non-finite loss."""
        if not (self.run_dir / ckpt.STATE).exists():
            return f"No checkpoint had been saved yet in {self.run_dir}."
        return f"The last good checkpoint (step {self._saved_step()}) is kept in {self.run_dir}."

    def _time_left(self) -> str:
        left = max(0.0, (self.cfg.time_budget or 0) - self.progress.train_time)
        return f"{int(left // 60)}:{int(left % 60):02d} left"

    def _describe(self, r: dict) -> str:
        extra = " ".join(f"{k} {v:.4f}" for k, v in r.items()
                         if k.startswith("val_") and k != "val_loss" and isinstance(v, float))
        rate = r.get(f"{self.task.unit}_per_s")
        return (f"step {r['step']:>6}  {r['elapsed_s']:7.1f}s  train {r['train_loss']:.4f}  "
                f"val {r['val_loss']:.4f}  {extra}  lr {r['lr']:.2e}"
                + (f"  {rate:,.0f} {self.task.unit}/s" if rate else ""))
