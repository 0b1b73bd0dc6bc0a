"""The character language model task: a corpus -> vocabulary -> consecutive streams or random chunks ->
``CharLM`` -> the run lifecycle (``lifecycle.py``) -> a run directory."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F

from .. import checkpoint as ckpt
from ..config import DataConfig, ModelConfig, TrainConfig, from_dict, to_dict
from ..data.charlm import LMData, prepare_data
from ..data.corpus import describe, read_text
from ..data.streams import make_batches
from ..evaluate import evaluate_stream, score_file
from ..nn.models import CharLM
from ..nn.recurrent import effective_backend
from ..nn.state import detach_state, from_plain, to_plain
from ..data.vocab import CharVocab
from ..metrics import LMScore
from . import distributed, lifecycle, recipes
from .trainer import Trainer, World

DEFAULT_TIME_BUDGET = 600.0   # seconds, when no --steps/--epochs/--time-budget is given
RESUMABLE_FIELDS = ("steps", "epochs", "time_budget", "eval_every", "eval_every_s", "eval_chars", "device", "threads",
                    "compile", "tensorboard")
LARGE_ALPHABET = recipes.LARGE_ALPHABET


def default_lr(vocab_size: int, hidden_size: int = recipes.BASE_WIDTH, cell: str = "gru",
               steps: float | None = None) -> float:
    """The peak learning rate when none is given (``recipes.lr_for``): 1e-3 for a large alphabet (2e-3 for
    runs of under 1,000 steps), else 5e-3 for the LSTM and up to 256 wide, 3e-3 above.

    Text with thousands of symbols (Chinese, Japanese) trains better slowly. On Jay Chou's lyrics (2,583
    symbols, most of them rare) a 2x256 GRU stayed at 6.19 nats/char at 5e-3, where 2e-3 reached 6.02 and
    1e-3 5.98. On a 63 K-character slice of Tiny Shakespeare (59 symbols), 5e-3 and 2e-3 did equally well,
    so the size of the corpus is not the cause (docs/benchmarks.md, "Small corpora and large alphabets").
    """
    return recipes.lr_for(vocab_size, hidden_size, cell, steps)


class LMTask:
    """Next-character prediction with the hidden state carried across consecutive batches (TBPTT)."""

    unit = "chars"
    command = "rnnkit train"

    def __init__(self, val: torch.Tensor, device: torch.device, precision: str, eval_chars: Optional[int],
                 world: World = World(), batch_size: int = 0):
        self.val, self.device, self.precision, self.eval_chars = val, device, precision, eval_chars
        self.world, self.batch_size = world, batch_size      # across processes: this one's rows of the state
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
        w = self.world
        score = evaluate_stream(model, self.val, precision=self.precision, max_chars=self.eval_chars,
                                part=(w.rank, w.size))
        if w.size > 1:                          # each process scored its share of the rows: add them up
            score = LMScore(*w.sum([score.nats, float(score.chars)]))
        return {"val_loss": score.nats_per_char, "val_bpc": score.bits_per_char}

    def state_dict(self) -> dict:               # the carried state in the single-process layout
        return {"state": to_plain(distributed.gather_rows(self.state, self.world))}

    def load_state_dict(self, state: dict) -> None:
        plain = distributed.own_rows(state["state"], self.world, self.batch_size)
        self.state = from_plain(plain, self.device)


@dataclass(frozen=True)
class LMJob:
    """A character language model run, for the lifecycle."""

    task, command, what = "charlm", "rnnkit train", "a character language model"
    resumable = RESUMABLE_FIELDS

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    auto: tuple[str, ...] = ()            # fields the recipe chooses (recipes.LM_FIELDS); the others are given

    def prepare(self, resumed: Optional[lifecycle.Resumed], device: torch.device,
                run_dir: Path, world: World = World()) -> lifecycle.Prepared:
        cfg = self.train
        t_read = time.perf_counter()
        data: LMData = prepare_data(self.data, CharVocab.from_dict(resumed.run["vocab"]) if resumed else None)
        t_read = time.perf_counter() - t_read
        if self.data.test_path:          # a bad test file fails now, not after the whole training run
            read_text(self.data.test_path, encoding=self.data.encoding, errors=self.data.errors)
        model_cfg = dataclasses.replace(self.model, vocab_size=len(data.vocab))
        recipe = None
        if not resumed:                                 # a resumed run keeps the recipe it started with
            auto = tuple(self.auto) + (("lr",) if cfg.lr is None and "lr" not in self.auto else ())
            if world.is_writer:                         # it times steps: chosen once, by rank 0, for all
                chosen = recipes.choose_lm(model_cfg, cfg, auto, train_chars=len(data.train), device=device)
            model_cfg, cfg, recipe = distributed.first_rank(world, chosen if world.is_writer else None)
        torch.manual_seed(cfg.seed)
        model = CharLM(model_cfg).to(device)
        batches = make_batches(cfg.batching, data.train, cfg.batch_size, cfg.seq_len, seed=cfg.seed,
                               fixed_grid=cfg.fixed_grid)
        if world.size > 1:                              # this process's streams of every batch
            batches = distributed.ShardedBatches(batches, world, cfg.batch_size)
        total = lifecycle.steps_budget(cfg, batches.steps_per_epoch)
        budget = ", ".join(b for b in (f"{total} steps" if total else "",
                                       f"{cfg.time_budget:g}s of training" if cfg.time_budget else "") if b)
        m = model_cfg
        describe_lines = [
            f"{describe(self.data)}: {data.chars:,} chars, vocab {len(data.vocab)}, train {len(data.train):,} / "
            f"val {len(data.val):,} (read in {t_read:.1f}s)",
            f"model: {m.num_layers}x{m.hidden_size} {m.cell} ({effective_backend(m.cell, m.backend)}), "
            f"{'embedding ' + str(m.embed_size) if m.embed_size else 'one-hot input'}, "
            f"{model.num_parameters():,} parameters on {device}, {cfg.precision}",
            f"training: {cfg.batching} batches {cfg.batch_size}x{cfg.seq_len}"
            f"{f' over {world.size} processes' if world.size > 1 else ''}, {cfg.optimizer} lr {cfg.lr:g} "
            f"({cfg.schedule}){f', weight decay {cfg.weight_decay:g}' if cfg.weight_decay else ''}, "
            f"clip {cfg.clip:g}{f', weight average (ema {cfg.ema:g})' if cfg.ema else ''}; "
            f"budget {budget}; run directory {run_dir}"]
        if recipe is not None and recipe.auto:
            describe_lines.insert(0, recipe.line())
        record = {"model": to_dict(model_cfg), "data": to_dict(self.data), "vocab": data.vocab.to_dict()}
        if recipe is not None:                          # new runs only: a resumed run's run.json stays as it is
            record["recipe"] = recipe.to_dict()
        return lifecycle.Prepared(
            model, LMTask(data.val, device, cfg.precision, cfg.eval_chars, world, cfg.batch_size), batches, cfg,
            total, record,
            data.fingerprint, describe(self.data), describe_lines, data)

    def fit(self, trainer: Trainer, pause_at: Optional[int], say) -> bool:
        trainer.fit(pause_at=pause_at)
        return False

    def finished(self, trainer: Trainer) -> Optional[str]:
        return "its budget" if trainer.done() else None

    def summary(self, trainer: Trainer, prepared: lifecycle.Prepared, stopped_early: bool) -> dict:
        """The best weights scored over the whole validation text (and the test file, if any)."""
        model, cfg, p = prepared.model, prepared.cfg, trainer.progress
        model.load_state_dict(ckpt.load_weights(ckpt.weights_path(trainer.run_dir, "best"), trainer.device))
        score = evaluate_stream(model, prepared.data.val, precision=cfg.precision)
        summary = {"step": p.step, "best_step": p.best_step, "train_time_s": round(p.train_time, 1),
                   "chars_per_s": round(p.units / max(p.train_time, 1e-9), 1),
                   **{f"val_{k}": v for k, v in score.to_dict().items()}}
        if self.data.test_path:
            test = score_file(model, prepared.data.vocab, self.data.test_path, encoding=self.data.encoding,
                              errors=self.data.errors, precision=cfg.precision, warn=trainer.log)
            summary.update({f"test_{k}": v for k, v in test.to_dict().items()})
        return summary


def train(data: DataConfig, model: Optional[ModelConfig], train: Optional[TrainConfig], out: str | Path, *,
          auto: Optional[Iterable[str]] = None, overwrite: bool = False, quiet: bool = False,
          pause_at: Optional[int] = None, log: Callable[[str], None] | None = None) -> dict:
    """Train a new character language model in ``out``; returns the final summary.

    ``auto`` names the fields (of ``recipes.LM_FIELDS``: width, layers, embedding, dropout, learning rate,
    weight decay, batch and sequence length) that the recipe chooses from the budget, the data and this
    machine's speed (``training/recipes.py``); by default those of a config given as None (``model=None``:
    the model's size and dropout; ``train=None``: the learning rate and weight decay), and the learning rate
    when ``train.lr`` is None. The choice is printed and recorded in run.json's ``recipe``. With no steps,
    epochs or time budget the budget is ``DEFAULT_TIME_BUDGET`` seconds of training. ``pause_at`` saves a
    resumable checkpoint after that step and returns early (``resume`` goes on).
    """
    if auto is None:
        auto = (recipes.LM_MODEL_FIELDS if model is None else ()) + (recipes.LM_TRAIN_FIELDS if train is None else ())
    auto = tuple(auto)
    unknown = sorted(set(auto) - set(recipes.LM_FIELDS))
    if unknown:
        raise ValueError(f"auto: a recipe cannot choose {', '.join(unknown)}; it chooses {', '.join(recipes.LM_FIELDS)}")
    model, train = model or ModelConfig(), train or TrainConfig()
    if train.steps is None and train.epochs is None and train.time_budget is None:
        train = dataclasses.replace(train, time_budget=DEFAULT_TIME_BUDGET)
    return lifecycle.start(LMJob(data, model, train, auto), out, overwrite=overwrite, quiet=quiet,
                           pause_at=pause_at, log=log, world=distributed.init(train.device))


def resume(out: str | Path, *, overrides: Optional[dict] = None, data_path: Optional[str] = None,
           quiet: bool = False, pause_at: Optional[int] = None, log: Callable[[str], None] | None = None) -> dict:
    """Continue the run in ``out`` exactly where its last checkpoint left it.

    ``overrides`` may change only the budget, evaluation cadence and device (``RESUMABLE_FIELDS``);
    ``data_path`` points to the corpus if it moved (it must be the same text).
    """
    run, cfg = lifecycle.read_resumable(out, LMJob.task, LMJob.what, overrides, RESUMABLE_FIELDS)
    data = from_dict(DataConfig, run["data"], source=f"{out}/run.json data")
    if data_path is not None and data.path is not None and Path(data_path).resolve() != Path(data.path).resolve():
        data = dataclasses.replace(data, path=data_path)  # moved file: allowed if the text is the same
    model = from_dict(ModelConfig, run["model"], source=f"{out}/run.json model")
    return lifecycle.resume(LMJob(data, model, cfg), out, run, quiet=quiet, pause_at=pause_at, log=log,
                            world=distributed.init(cfg.device))
