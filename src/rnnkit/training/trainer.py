"""A small training loop that knows nothing about the model or the task.

What differs between tasks comes in as a ``Task``: the loss of one batch (a language model carries its
hidden state inside its task), an evaluation, and the task's own resumable state. The loop steps, clips,
schedules the learning rate, evaluates and checkpoints on a cadence (``Cadence``), shows progress, stops on
its budget, on a non-finite loss, or on SIGINT/SIGTERM (after saving a resumable checkpoint). Only the
writing process of a ``World`` touches the run directory; the others wait at its barrier.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Protocol

import torch
from tqdm import tqdm

from .. import checkpoint as ckpt
from ..config import TrainConfig
from ..nn.device import autocast

MAX_EVAL_SHARE = 0.2   # epoch-end evaluations are skipped while they would take more than this share of the time
SYNC_EVERY = 10        # steps between host syncs: the finiteness check, the progress line, CUDA's clock


class Task(Protocol):
    unit: str                                            # what throughput counts: "chars", "tokens", ...
    command: str                                         # the command that resumes it ("rnnkit train")

    def loss(self, model, batch) -> torch.Tensor: ...    # mean loss of one training batch (a graph)
    def units(self, batch) -> int: ...                   # how many units the batch holds
    def evaluate(self, model) -> dict[str, float]: ...   # must hold "val_loss" (lower is better), and the
                                                         # figure named by the task's ``select`` if it has one
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class TrainingStopped(RuntimeError):
    """Training ended early (signal or non-finite loss); the message says why and how to go on."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class World:
    """The processes training one model. A single process is the whole world and the writer; a
    distributed run (``distributed.ProcessGroupWorld``) gives each process its rank, and only rank 0 writes
    the run directory. The collectives below are what the trainer shares; here they are the identity."""
    rank: int = 0
    size: int = 1
    barrier: Callable[[], None] = lambda: None

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def max(self, values: list[float]) -> list[float]:
        """The element-wise maximum over the processes (a decision taken once: time spent, a stop)."""
        return values

    def sum(self, values: list[float]) -> list[float]:
        return values

    def gather(self, obj):
        """Every process's ``obj``, in rank order (on every process)."""
        return [obj]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model the training step calls (DistributedDataParallel across processes)."""
        return model


# ----------------------------------------------------------------------------- TensorBoard

def event_writer() -> type:
    """TensorBoard's event writer for ``--tensorboard``: tensorboardX's, the light one TensorBoard reads."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ValueError("--tensorboard needs tensorboardX: pip install 'rnnkit[tensorboard]'") from None
    return SummaryWriter


@contextmanager
def open_events(directory: Optional[str]):
    if not directory:
        yield None
        return
    try:
        writer = event_writer()(directory)
    except OSError as e:
        raise ValueError(f"--tensorboard {directory}: cannot write there ({e.strerror or e})") from None
    try:
        yield writer
    finally:
        writer.close()


def write_events(writer, record: dict) -> None:
    """One evaluation record as scalars at its step: ``loss/train``, ``loss/val``, then the rest by name."""
    step = record["step"]
    for key, value in record.items():
        if key in ("step",) or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        tag = {"train_loss": "loss/train", "val_loss": "loss/val"}.get(key, key.replace("_", "/", 1)
                                                                        if key.startswith("val_") else key)
        writer.add_scalar(tag, value, step)
    writer.flush()


# ----------------------------------------------------------------------------- optimisation

def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.lr is None:
        raise ValueError("TrainConfig.lr is None: the task chooses its default learning rate before training "
                         "(rnnkit.training.lm.default_lr); give lr=... to use the Trainer directly")
    params = list(params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    # On a GPU, Adam's fused kernel updates every parameter in one launch (the default, foreach, takes a
    # handful per step); the update is the same. On the CPU torch's default is already the fastest.
    fused = bool(params) and all(p.is_cuda for p in params)
    opt = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return opt(params, lr=cfg.lr, betas=(0.9, cfg.beta2), weight_decay=cfg.weight_decay,
               **({"fused": True} if fused else {}))


def lr_factor(cfg: TrainConfig, step: int, progress: float) -> float:
    """Multiplier of the peak learning rate: linear warm-up over steps, then the schedule's shape over
    ``progress`` in [0, 1] (fraction of the step or time budget spent)."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps and cfg.schedule != "constant" else 1.0
    p = min(max(progress, 0.0), 1.0)
    if cfg.schedule == "cosine":
        return warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))
    if cfg.schedule == "linear":
        return warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * (1 - p))
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


class WeightAverage:
    """A moving average of the parameters with a power-function profile (Karras et al. 2024, "Analyzing and
    improving the training dynamics of diffusion models"): after step t, ``avg <- b*avg + (1-b)*theta`` with
    ``b = (1 - 1/t) ** (gamma + 1)``, which weighs about the last ``1/(gamma + 1)`` of the steps taken so far,
    whatever the budget. Training goes on from the raw parameters; ``applied()`` puts the average in their
    place for an evaluation or a saved copy of the weights."""

    def __init__(self, params: list[torch.Tensor], gamma: float):
        self.params, self.gamma = params, gamma
        self.avg = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the parameters after ``step`` steps (1 for the first: the average becomes them)."""
        b = (1.0 - 1.0 / step) ** (self.gamma + 1.0) if step > 1 else 0.0
        torch._foreach_lerp_(self.avg, self.params, 1.0 - b)

    @contextmanager
    def applied(self):
        with torch.no_grad():
            raw = [p.clone() for p in self.params]
            torch._foreach_copy_(self.params, self.avg)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, raw)

    def state_dict(self) -> dict:
        return {"gamma": self.gamma, "avg": [a.cpu() for a in self.avg]}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for a, s in zip(self.avg, state["avg"]):
                a.copy_(s)


# ----------------------------------------------------------------------------- counters and cadence

@dataclass
class Progress:
    """The loop's counters, the only copy of them; saved in every checkpoint (``to_dict``/``from_dict``)."""
    step: int = 0                    # optimizer steps taken
    train_time: float = 0.0          # seconds spent training (evaluation and saving excluded)
    units: int = 0                   # characters (or tokens) trained on
    best: float = math.inf           # best validation figure so far (``best_by``; lower is better)
    best_step: int = -1
    best_by: str = "val_loss"        # the task's selection figure (Task.select); older checkpoints: val_loss
    # The open evaluation window, saved so that a resumed run evaluates at the same steps and logs the
    # same train_loss as an uninterrupted one (no shifted, duplicated or missing metrics records).
    last_eval_step: int = 0          # step of the last evaluation
    last_eval_time: float = 0.0      # train_time then
    last_eval_units: int = 0         # units then
    window_loss: float = 0.0         # summed training loss of the steps since then (float32 value)
    window_steps: int = 0            # how many steps that sum holds

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Progress":
        # A checkpoint without the window's time and units (older files) continues the window from the
        # point it resumes at, as rnnkit did before it saved them.
        d = {"last_eval_step": d["step"], "last_eval_time": d["train_time"], "last_eval_units": d["units"], **d}
        return cls(**{f.name: type(f.default)(d[f.name]) for f in dataclasses.fields(cls) if f.name in d})


@dataclass
class Cadence:
    """When to evaluate: every ``every_steps`` steps, or every ``every_s`` seconds of training and at least at
    the end of each epoch of ``epoch_steps`` (so a small corpus is checked before it overfits), but not so
    often that evaluating and checkpointing take more than ``MAX_EVAL_SHARE`` of the time."""
    every_steps: Optional[int] = None
    every_s: Optional[float] = None
    epoch_steps: float = math.inf
    epoch_gap: float = 0.0           # training seconds an epoch-end evaluation waits for (from the last one's cost)

    def due(self, p: Progress) -> bool:
        since = p.train_time - p.last_eval_time
        if self.every_steps is not None:
            return p.step - p.last_eval_step >= self.every_steps
        if self.every_s is None:
            return False
        epoch_end = p.step - p.last_eval_step >= self.epoch_steps and since >= self.epoch_gap
        return since >= self.every_s or epoch_end

    def evaluated(self, cost_s: float) -> None:
        self.epoch_gap = cost_s * (1 - MAX_EVAL_SHARE) / MAX_EVAL_SHARE


@dataclass
class _Window:
    """Training losses since the last evaluation, summed on the device (one host sync per SYNC_EVERY steps)."""
    progress: Progress
    device: torch.device
    recent: list = field(default_factory=list)       # per-step losses since the last finiteness check
    checked_step: int = 0                            # the last step known to be finite

    def __post_init__(self) -> None:
        self.sum = torch.tensor(self.progress.window_loss, dtype=torch.float32, device=self.device)
        self.checked_step = self.progress.step

    def add(self, loss: torch.Tensor) -> None:
        self.recent.append(loss.detach().float())
        self.sum += self.recent[-1]
        self.progress.window_steps += 1

    def mean(self) -> float:
        return float(self.sum) / max(self.progress.window_steps, 1)

    def bad_step(self) -> Optional[tuple[int, float]]:
        """(step, value) of the first non-finite loss since the last check, or None; clears the check."""
        mean = self.mean()
        if not math.isfinite(mean):
            losses = torch.stack(self.recent).tolist() if self.recent else []
            bad = [(i, v) for i, v in enumerate(losses) if not math.isfinite(v)]
            i, v = bad[0] if bad else (len(losses) - 1, mean)
            return self.checked_step + i + 1, v
        self.checked_step = self.progress.step
        self.recent.clear()
        return None

    def close(self) -> None:
        """Evaluation done: a new window starts."""
        p = self.progress
        self.sum.zero_()
        p.window_loss, p.window_steps = 0.0, 0
        p.last_eval_step, p.last_eval_time, p.last_eval_units = p.step, p.train_time, p.units

    def sync(self) -> None:
        self.progress.window_loss = float(self.sum)


# ----------------------------------------------------------------------------- the trainer

@dataclass
class Trainer:
    model: torch.nn.Module
    task: Task
    batches: Iterator                           # resumable batch iterator (state_dict/load_state_dict)
    cfg: TrainConfig
    run_dir: Path
    device: torch.device
    total_steps: Optional[int] = None           # step budget (None: time budget only)
    quiet: bool = False
    optimizer: Optional[torch.optim.Optimizer] = None
    log: Callable[[str], None] = lambda msg: tqdm.write(msg, file=sys.stderr)
    world: World = World()

    def __post_init__(self) -> None:
        self.optimizer = self.optimizer or make_optimizer(self.model.parameters(), self.cfg)
        self.plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=0.5, patience=2)
                        if self.cfg.schedule == "plateau" else None)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.progress = Progress(best_by=getattr(self.task, "select", "val_loss"))   # best weights by this figure
        epoch = getattr(self.batches, "steps_per_epoch", None) if self.cfg.eval_every_s else None
        self.cadence = Cadence(self.cfg.eval_every, self.cfg.eval_every_s, epoch or math.inf)
        self._signal_seen: Optional[int] = None         # set by the handler, at any moment
        self._stop_signal: Optional[int] = None         # acted on: set between steps, the same on every process
        self._events = None                                  # TensorBoard writer, open during fit
        if self.cfg.tensorboard and self.world.is_writer:
            event_writer()                                   # fails here, before a run directory is made
        self._saved_step: Optional[int] = None          # the step of the checkpoint last written by this Trainer
        self.average = (WeightAverage([p for p in self.model.parameters() if p.requires_grad], self.cfg.ema)
                        if self.cfg.ema else None)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "plateau": self.plateau.state_dict() if self.plateau else None,
            "progress": self.progress.to_dict(),
            "batches": self.batches.state_dict(),
            "task": self.task.state_dict(),
            **({"average": self.average.state_dict()} if self.average is not None else {}),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                    **({"ranks": self.world.gather(torch.get_rng_state())} if self.world.size > 1 else {})},
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.plateau is not None and state.get("plateau"):
            self.plateau.load_state_dict(state["plateau"])
        self.progress = Progress.from_dict(state["progress"])
        self.batches.load_state_dict(state["batches"])
        self.task.load_state_dict(state["task"])
        if self.average is not None:
            if state.get("average"):
                self.average.load_state_dict(state["average"])
            else:                                    # a run that started without one goes on without one
                self.average = None
        ranks = state["rng"].get("ranks")            # every process's, saved by a distributed run
        torch.set_rng_state(ranks[self.world.rank] if ranks and len(ranks) == self.world.size
                            else state["rng"]["torch"])
        if state["rng"].get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def save(self, *, best: bool = False, metrics: Optional[dict] = None) -> None:
        state = self.state_dict()                   # every process: a distributed run gathers its parts here
        if self.world.is_writer:
            meta = {"step": self.progress.step, **({"metrics": metrics} if metrics else {})}
            with self._evaluated():             # the weights files hold what was evaluated
                weights = self.model.state_dict()
                ckpt.save_weights(self.run_dir / ckpt.WEIGHTS, weights, meta)
                if best:
                    ckpt.save_weights(self.run_dir / ckpt.BEST, weights, meta)
            # state.pt last: it is the commit point. A kill before it leaves the previous state, from which the
            # resumed run redoes these steps and rewrites the weights (and best) exactly as they are now.
            ckpt.save_state(self.run_dir / ckpt.STATE, state)
        self.world.barrier()
        self._saved_step = self.progress.step

    def _evaluated(self):
        """The weights that evaluations score and the weights files hold: the average when there is one."""
        return self.average.applied() if self.average is not None else contextlib.nullcontext()

    # ------------------------------------------------------------------ budget and schedule

    def done(self) -> bool:
        if self.total_steps is not None and self.progress.step >= self.total_steps:
            return True
        return bool(self.cfg.time_budget) and self.progress.train_time >= self.cfg.time_budget

    def _budget_spent(self) -> float:
        fractions = [0.0]
        if self.total_steps:
            fractions.append(self.progress.step / self.total_steps)
        if self.cfg.time_budget:
            fractions.append(self.progress.train_time / self.cfg.time_budget)
        return max(fractions)

    def _set_lr(self) -> None:
        step = self.progress.step
        if self.plateau is not None:            # warm-up by steps, then ReduceLROnPlateau owns the lr
            if step > self.cfg.warmup_steps:
                return
            f = lr_factor(self.cfg, step, 0.0)
        else:
            f = lr_factor(self.cfg, step, self._budget_spent())
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f

    # ------------------------------------------------------------------ the loop

    def fit(self, *, pause_at: Optional[int] = None) -> dict:
        """Train until the budget is spent; returns the last evaluation record.

        ``pause_at`` stops after that step with a resumable checkpoint, as an interruption would: resuming
        continues the same schedule, so the losses equal those of an uninterrupted run.
        """
        self.model.train()
        wrapped = self.world.wrap(self.model)    # DistributedDataParallel across processes: averaged gradients
        step_model = compiled(wrapped) if self.cfg.compile else wrapped         # evaluation stays eager
        params = [p for p in self.model.parameters() if p.requires_grad]
        window = _Window(self.progress, self.device)
        record: dict = {}
        events = open_events(self.cfg.tensorboard if self.world.is_writer else None)
        with self._signals(), self._bar() as bar, events as self._events:
            while not self.done():
                if pause_at is not None and self.progress.step >= pause_at:
                    self._save_open_window(window)
                    break
                self._train_step(step_model, params, window)
                if self.progress.step % SYNC_EVERY == 0 or self.done():
                    self._check_finite(window)
                    self._show(bar, window)
                if self.cadence.due(self.progress) or self.done():
                    record = self._evaluate(window) or record
                if self._stop_signal is not None:
                    self._stop_on_signal(window)
        return record

    def _train_step(self, step_model, params: list, window: _Window) -> None:
        t0 = time.perf_counter()
        self._set_lr()
        batch = next(self.batches)
        with autocast(self.device, self.cfg.precision):
            loss = self.task.loss(step_model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.clip:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.clip)
        self.optimizer.step()
        p = self.progress
        window.add(loss)
        p.step += 1
        if self.average is not None:
            self.average.update(p.step)
        p.units += self.task.units(batch) * self.world.size
        if self.device.type == "cuda" and p.step % SYNC_EVERY == 0:
            torch.cuda.synchronize()            # so that train_time measures the GPU's work, not its queue
        p.train_time += time.perf_counter() - t0
        seen = self._signal_seen                # read once: the handler may set it at any moment
        if self.world.size > 1:                 # decided once for all: the time spent, a signal to one process
            p.train_time, stop = self.world.max([p.train_time, float(seen is not None)])
            # Only the shared answer decides: a signal that lands after the all-reduce waits for the next step,
            # or this process would start the checkpoint's collectives while its peers start the next step's.
            if stop:
                self._stop_signal = seen or signal.SIGTERM
        else:
            self._stop_signal = seen

    def _check_finite(self, window: _Window) -> None:
        """Stop at a non-finite training loss, naming its step; the last good checkpoint stays."""
        bad = window.bad_step()
        if self.world.size > 1 and self.world.max([0.0 if bad is None else 1.0])[0] and bad is None:
            bad = (self.progress.step, math.nan)            # another process's loss: all stop together
        if bad is not None:
            step, value = bad
            raise TrainingStopped(f"loss became {value} at step {step}; stopped. {self._kept()} "
                                  f"Try a lower --lr (now {self.cfg.lr:g}) or gradient clipping (--clip 1).", 3)

    def _evaluate(self, window: _Window) -> Optional[dict]:
        """Validate, log a metrics record and checkpoint (best weights too when validation improved)."""
        train_loss = window.mean()
        if self.world.size > 1:                 # the mean over every process's rows
            train_loss = self.world.sum([train_loss])[0] / self.world.size
        if not math.isfinite(train_loss):
            return None                         # _check_finite stops the run at its next call
        t0 = time.perf_counter()
        p = self.progress
        with self._evaluated():
            metrics = self.task.evaluate(self.model)
        val = metrics["val_loss"]
        if not math.isfinite(val):   # the weights are already broken: do not save them over a good checkpoint
            raise TrainingStopped(
                f"validation loss became {val} at step {p.step}; stopped. {self._kept()} "
                f"Try a lower --lr (now {self.cfg.lr:g}) or gradient clipping (--clip 1).", 3)
        improved = metrics[p.best_by] < p.best
        if improved:
            p.best, p.best_step = metrics[p.best_by], p.step
        if self.plateau is not None:
            self.plateau.step(val)
        dt = p.train_time - p.last_eval_time
        unit = self.task.unit
        record = {"step": p.step, "elapsed_s": round(p.train_time, 3), "train_loss": train_loss, **metrics,
                  f"{unit}_per_s": round((p.units - p.last_eval_units) / dt, 1) if dt > 0 else None,
                  "lr": self.optimizer.param_groups[0]["lr"]}
        window.close()
        # The record goes to the log before the checkpoint: after a kill between the two, the resumed run
        # drops records past its checkpoint and writes them again (a kill the other way round left a gap).
        if self.world.is_writer:
            ckpt.append_metrics(self.run_dir, record)
            if self._events is not None:
                write_events(self._events, record)
        self.save(best=improved, metrics={k: v for k, v in record.items() if isinstance(v, (int, float))})
        cost = time.perf_counter() - t0
        if self.world.size > 1:                 # the next evaluation's timing, the same on every process
            cost = self.world.max([cost])[0]
        self.cadence.evaluated(cost)
        self.log(self._describe(record))
        return record

    def _save_open_window(self, window: _Window) -> None:
        self._check_finite(window)              # never save weights a bad step has broken
        if self._saved_step == self.progress.step:
            return                              # an evaluation at this very step has just saved all of it
        window.sync()
        if self.world.size > 1:                 # the saved window is every process's mean, as logged
            self.progress.window_loss = self.world.sum([self.progress.window_loss])[0] / self.world.size
        self.save()

    def _stop_on_signal(self, window: _Window) -> None:
        self._save_open_window(window)
        name, code = ("Ctrl-C", 130) if self._stop_signal == signal.SIGINT else ("SIGTERM", 143)
        raise TrainingStopped(f"{name}: saved a resumable checkpoint at step {self.progress.step} in "
                              f"{self.run_dir}; continue with: {self.task.command} --resume {self.run_dir}", code)

    # ------------------------------------------------------------------ signals and progress

    @contextmanager
    def _signals(self):
        def handler(signum, frame):
            if self._signal_seen is not None:          # a second signal: stop now (files stay whole)
                raise KeyboardInterrupt
            self._signal_seen = signum
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

    @contextmanager
    def _bar(self):
        total = self.total_steps or None
        bar = tqdm(total=total, initial=self.progress.step if total else 0, unit="step", dynamic_ncols=True,
                   disable=True if self.quiet or not self.world.is_writer else None, file=sys.stderr,
                   mininterval=1.0, bar_format=None if total else "{desc} {n_fmt} steps [{elapsed}{postfix}]")
        try:
            yield bar
        finally:
            bar.close()

    def _show(self, bar, window: _Window) -> None:
        p = self.progress
        bar.update(p.step - bar.n)
        left = max(0.0, (self.cfg.time_budget or 0) - p.train_time)
        bar.set_postfix_str(f"loss {window.mean():.3f}, {p.units / max(p.train_time, 1e-9):,.0f} {self.task.unit}/s"
                            + (f", {int(left // 60)}:{int(left % 60):02d} left" if self.cfg.time_budget else ""),
                            refresh=False)

    def _kept(self) -> str:
        """Where the last good checkpoint is, for the message of a run stopped by a non-finite loss."""
        if not (self.run_dir / ckpt.STATE).exists():
            return f"No checkpoint had been saved yet in {self.run_dir}."
        try:
            step = int(ckpt.load_state(self.run_dir / ckpt.STATE)["progress"]["step"])
        except ckpt.CheckpointError:
            step = 0
        return f"The last good checkpoint (step {step}) is kept in {self.run_dir}."

    def _describe(self, r: dict) -> str:
        extra = " ".join(f"{k} {v:.4f}" for k, v in r.items()
                         if k.startswith("val_") and k != "val_loss" and isinstance(v, float))
        rate = r.get(f"{self.task.unit}_per_s")
        return (f"step {r['step']:>6}  {r['elapsed_s']:7.1f}s  train {r['train_loss']:.4f}  "
                f"val {r['val_loss']:.4f}  {extra}  lr {r['lr']:.2e}"
                + (f"  {rate:,.0f} {self.task.unit}/s" if rate else ""))
