"""The one run lifecycle that every task goes through, new or resumed:

    lock the run directory -> threads, device -> the task reads its data and builds model, batches and
    loss (``Job.prepare``) -> a Trainer -> restore the checkpoint (resume) or write run.json (new run)
    -> say what will run -> fit -> the task's final summary

What a task supplies is a ``Job``; what a resumed run brings is a ``Resumed``. Files are written only by the
writing process of the ``World`` (a distributed run's rank 0), the others wait at its barrier.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol

import torch

from .. import checkpoint as ckpt
from .._version import __version__
from ..config import TrainConfig, from_dict
from ..nn.device import precision_warning, resolve_device
from ..runs import read_task_run
from . import distributed
from .trainer import Task, Trainer, TrainingStopped, World


@dataclass(frozen=True)
class Resumed:
    """A run to continue: its run.json and its resumable state (state.pt)."""
    run: dict
    state: dict


@dataclass
class Prepared:
    """What a task built for one run."""
    model: torch.nn.Module
    task: Task
    batches: Iterator
    cfg: TrainConfig                      # final: the task's defaults filled in
    total_steps: Optional[int]            # step budget (None: time only)
    record: dict[str, Any]                # the task's fields of run.json (configs, vocabulary, fingerprint, ...)
    fingerprint: str                      # of the data read, checked against a resumed run's
    source: str                           # the data, for messages
    describe: list[str]                   # lines that say what will run
    data: Any = None                      # the task's data as read (for its summary)


class Job(Protocol):
    task: str                             # run.json's task: "charlm" | "classifier"
    command: str                          # the command that trains and resumes it
    what: str                             # "a character language model", for messages
    resumable: tuple[str, ...]            # TrainConfig fields a resumed run may change
    train: TrainConfig

    def prepare(self, resumed: Optional[Resumed], device: torch.device, run_dir: Path,
                world: World) -> Prepared: ...
    def fit(self, trainer: Trainer, pause_at: Optional[int], say: Callable[[str], None]) -> bool: ...
    def finished(self, trainer: Trainer) -> Optional[str]: ...   # why a resumed run has nothing left, or None
    def summary(self, trainer: Trainer, prepared: Prepared, stopped_early: bool) -> dict: ...


def start(job: Job, out: str | Path, *, overwrite: bool = False, quiet: bool = False,
          pause_at: Optional[int] = None, log: Callable[[str], None] | None = None,
          world: World = World()) -> dict:
    """Train ``job`` as a new run in ``out``; returns the task's final summary (or a ``paused`` one)."""
    if world.is_writer:                             # refuse early; replace an old run only once the data is good
        ckpt.check_run_dir(out, overwrite=overwrite)
    with _writer_lock(out, world):
        return _run(job, Path(out), None, overwrite=overwrite, quiet=quiet, pause_at=pause_at, log=log, world=world)


@contextmanager
def _writer_lock(out, world: World):
    """The run directory's lock, held by the writing process for the whole job."""
    if not world.is_writer:
        yield
        return
    with ckpt.run_lock(out):
        yield


# Training fields added after runs were made: the value a run.json without the field trained with.
EARLIER_TRAIN_DEFAULTS = {"beta2": 0.999}


def read_resumable(out: str | Path, task: str, what: str, overrides: Optional[dict],
                   resumable: tuple[str, ...], train_cls: type = TrainConfig) -> tuple[dict, TrainConfig]:
    """run.json of a run to resume and its TrainConfig with ``overrides`` (only ``resumable`` fields)."""
    run = read_task_run(out, task, what)
    bad = sorted(set(overrides or {}) - set(resumable))
    if bad:
        raise ValueError(f"cannot change {', '.join(bad)} when resuming (the run would not continue exactly); "
                         f"start a new run with --out instead")
    cfg = from_dict(train_cls, {**EARLIER_TRAIN_DEFAULTS, **run["train"]}, source=f"{out}/run.json train")
    return run, dataclasses.replace(cfg, **(overrides or {}))


def resume(job: Job, out: str | Path, run: dict, *, quiet: bool = False, pause_at: Optional[int] = None,
           log: Callable[[str], None] | None = None, world: World = World()) -> dict:
    """Continue the run in ``out`` (its run.json is ``run``) exactly where its last checkpoint left it."""
    with _writer_lock(out, world):
        state = ckpt.load_state(Path(out) / ckpt.STATE)
        return _run(job, Path(out), Resumed(run, state), quiet=quiet, pause_at=pause_at, log=log, world=world)


def set_threads(threads: Optional[int]) -> None:
    """torch's CPU threads, at most the machine's CPUs (OpenMP crashes when asked for far more)."""
    if threads:
        torch.set_num_threads(min(threads, os.cpu_count() or threads))


def _run(job: Job, run_dir: Path, resumed: Optional[Resumed], *, quiet: bool, pause_at: Optional[int],
         log: Callable[[str], None] | None, world: World, overwrite: bool = False) -> dict:
    say = (log or (lambda msg: print(msg, file=sys.stderr))) if world.is_writer else (lambda msg: None)
    if world.size > 1:                              # each process its share of the cores, its own GPU
        set_threads(job.train.threads or distributed.threads_per_process())
        device = getattr(world, "device", None) or resolve_device(job.train.device)
    else:
        set_threads(job.train.threads)
        device = resolve_device(job.train.device)
    prepared = job.prepare(resumed, device, run_dir, world)
    if resumed and prepared.fingerprint != resumed.run.get("data_fingerprint"):
        raise ValueError(f"the text of {prepared.source} differs from the text this run was trained on; "
                         f"resume with the same data, or start a new run with --out")
    trainer = Trainer(prepared.model, prepared.task, prepared.batches, prepared.cfg, run_dir, device,
                      total_steps=prepared.total_steps, quiet=quiet, world=world,
                      **({"log": say} if log or not world.is_writer else {}))       # evaluation lines go where the caller's lines go
    if resumed:
        _restore(trainer, resumed.state, run_dir, world)
        why = job.finished(trainer)
        if why:
            raise ValueError(f"{run_dir} already finished {why} at step {trainer.progress.step}; give a larger "
                             f"--steps, --epochs or --time-budget to train on")
        say(f"resuming {run_dir} at step {trainer.progress.step} ({trainer.progress.train_time:.0f}s trained)")
    else:
        if world.is_writer:
            ckpt.prepare_run_dir(run_dir, overwrite=overwrite)
            ckpt.write_run(run_dir, {
                "task": job.task, **prepared.record, "train": dataclasses.asdict(prepared.cfg),
                "data_fingerprint": prepared.fingerprint, "world_size": world.size,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rnnkit_version": __version__,
                "torch_version": torch.__version__})
        world.barrier()
    for line in prepared.describe:
        say(line)
    if note := precision_warning(device, prepared.cfg.precision):
        say(note)
    if prepared.cfg.compile:
        say("compiling the training step (torch.compile): the first step takes minutes")
    try:
        stopped_early = job.fit(trainer, pause_at, say)
    except BaseException:
        if not resumed and world.is_writer and not (run_dir / ckpt.STATE).exists():
            ckpt.discard_run(run_dir)   # failed before its first checkpoint: leave no run that cannot resume
        raise
    if not trainer.done() and not stopped_early:
        return {"step": trainer.progress.step, "paused": True, "train_time_s": round(trainer.progress.train_time, 1)}
    summary = job.summary(trainer, prepared, stopped_early)
    world.barrier()             # the processes finish together: one that leaves early closes the others' sockets
    return summary


def _restore(trainer: Trainer, state: dict, run_dir: Path, world: World) -> None:
    """Load state.pt into the trainer; a state that does not fit run.json is one line, not a traceback."""
    try:
        trainer.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
        why = lines[1 if len(lines) > 1 and lines[0].endswith(":") else 0][:200]   # skip "Error(s) in ...:"
        raise ckpt.CheckpointError(f"{run_dir / ckpt.STATE}: does not fit the run described in run.json "
                                   f"({why}); was either file edited or replaced?") from None
    if world.is_writer:
        ckpt.remove_stale_temps(run_dir)
        ckpt.truncate_metrics(run_dir, trainer.progress.step)
    world.barrier()


def steps_budget(cfg: TrainConfig, steps_per_epoch: int) -> Optional[int]:
    """The step budget from ``steps`` and ``epochs`` (the smaller), or None for a time budget alone."""
    budgets = []
    if cfg.steps is not None:
        budgets.append(cfg.steps)
    if cfg.epochs is not None:
        budgets.append(max(1, math.ceil(cfg.epochs * steps_per_epoch)))
    return min(budgets) if budgets else None


__all__ = ["Job", "Prepared", "Resumed", "TrainingStopped", "World", "read_resumable", "resume", "set_threads",
           "start", "steps_budget"]
