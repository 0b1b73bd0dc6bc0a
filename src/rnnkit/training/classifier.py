"""The sequence classification task: labelled texts -> words -> bucketed padded batches ->
``SequenceClassifier`` -> the run lifecycle (``lifecycle.py``), validating at the end of every epoch and
stopping early after ``patience`` epochs without a better validation accuracy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F

from .. import checkpoint as ckpt
from ..config import ClassifierConfig, ClassifierTrainConfig, TextDataConfig, TrainConfig, from_dict, to_dict
from ..data.labelled import ClassifyData, prepare_data
from ..data.padded import BucketBatches
from ..data.words import WordVocab
from ..evaluate import class_outputs, score, score_logits
from ..metrics import ClassifyScore
from ..nn.models import SequenceClassifier
from . import distributed, lifecycle, recipes
from .trainer import Trainer, World

# With no budget given and no recipe for the epochs: DEFAULT_EPOCHS, but at least DEFAULT_MIN_STEPS steps (a
# small data set needs more passes; the best validation weights are kept, so extra epochs cost time, not
# accuracy). The recipe (recipes.choose_classifier) chooses the epochs from the data instead, with patience,
# and caps them at DEFAULT_TIME_BUDGET seconds of training.
DEFAULT_EPOCHS, DEFAULT_MIN_STEPS = 3, 200
BLEND_RIDGE = 1e-3          # penalty on the blend's squared weights (fit_blend)
DEFAULT_TIME_BUDGET = 900.0
RESUMABLE_FIELDS = ("steps", "epochs", "time_budget", "device", "threads", "tensorboard")


class ClassifyTask:
    """Cross-entropy of the class logits; validation accuracy and loss over the whole held-out set."""

    unit = "tokens"
    command = "rnnkit classify train"
    select = "val_error"       # best weights and patience by validation accuracy: the loss rises (the model
                               # grows overconfident) an epoch or two before the accuracy stops improving

    def __init__(self, val_seqs: list[torch.Tensor], val_labels: torch.Tensor, device: torch.device, precision: str,
                 world: World = World()):
        self.val_seqs, self.val_labels, self.device, self.precision = val_seqs, val_labels, device, precision
        self.world = world

    def loss(self, model, batch) -> torch.Tensor:
        shard = batch if isinstance(batch, distributed.Shard) else None   # this process's rows of the batch
        b = shard.batch if shard else batch
        logits = model(b.tokens.to(self.device, non_blocking=True), b.lengths)   # (B, C)
        labels = b.labels.to(self.device, non_blocking=True)
        if shard is None:
            return F.cross_entropy(logits.float(), labels)
        # DDP averages over the processes: scaled so that the average is the global batch's mean loss
        nll = F.cross_entropy(logits.float(), labels, reduction="sum")
        return nll * (self.world.size / shard.rows) * (1.0 if shard.live else 0.0)

    def units(self, batch) -> int:
        if isinstance(batch, distributed.Shard):
            return int(batch.batch.lengths.sum()) if batch.live else 0
        return int(batch.lengths.sum())

    def evaluate(self, model) -> dict:
        w = self.world
        if w.size == 1:
            s = score(model, self.val_seqs, self.val_labels, precision=self.precision)
        else:                                           # each process its share of the texts, summed
            mine = torch.arange(len(self.val_seqs)).tensor_split(w.size)[w.rank].tolist()
            part = score(model, [self.val_seqs[i] for i in mine], self.val_labels[mine], precision=self.precision) \
                if mine else ClassifyScore(0.0, 0, 0)
            nll, correct, n = w.sum([part.nll, float(part.correct), float(part.examples)])
            s = ClassifyScore(nll, int(round(correct)), int(round(n)))
        return {"val_loss": s.loss, "val_accuracy": s.accuracy, "val_error": 1.0 - s.accuracy}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@dataclass(frozen=True)
class ClassifierJob:
    """A classifier run, for the lifecycle."""

    task, command, what = "classifier", "rnnkit classify train", "a classifier"
    resumable = RESUMABLE_FIELDS

    data: TextDataConfig
    model: ClassifierConfig
    train: TrainConfig
    auto: tuple[str, ...] = ()            # fields the recipe chooses (recipes.CLASSIFIER_FIELDS)

    def prepare(self, resumed: Optional[lifecycle.Resumed], device: torch.device,
                run_dir: Path, world=None) -> lifecycle.Prepared:
        cfg, data_cfg, model_cfg = self.train, self.data, self.model
        auto = () if resumed else tuple(self.auto)      # a resumed run keeps the recipe it started with
        t_read = time.perf_counter()
        data: ClassifyData = prepare_data(data_cfg, cfg.seed,
                                          vocab=WordVocab.from_dict(resumed.run["vocab"]) if resumed else None,
                                          labels=resumed.run["labels"] if resumed else None,
                                          min_freq_for=recipes.min_freq_for if "min_freq" in auto else None)
        t_read = time.perf_counter() - t_read
        recipe = None
        if auto:
            has_budget = cfg.steps is not None or cfg.epochs is not None or cfg.time_budget is not None
            model_cfg, data_cfg, cfg, recipe = recipes.choose_classifier(
                model_cfg, data_cfg, cfg, auto, train_texts=len(data.train_seqs), has_budget=has_budget,
                mean_words=sum(len(s) for s in data.train_seqs) / max(1, len(data.train_seqs)),
                pair_types=recipes.pair_types(data.train_seqs) if "naive_bayes" in auto else 0,
                classes=len(data.labels))
            if not has_budget and cfg.epochs is not None and cfg.time_budget is None:
                cfg = dataclasses.replace(cfg, time_budget=DEFAULT_TIME_BUDGET)
        model_cfg = dataclasses.replace(model_cfg, vocab_size=len(data.vocab), num_classes=len(data.labels))
        torch.manual_seed(cfg.seed)
        model = SequenceClassifier(model_cfg).to(device)
        if model_cfg.naive_bayes:                       # counted before training (a resumed run loads them too)
            model.fit_naive_bayes(data.train_seqs, data.train_labels)
        batches = BucketBatches(data.train_seqs, data.train_labels, cfg.batch_size, bucket=self.data.bucket,
                                seed=cfg.seed)
        if world is not None and world.size > 1:        # this process's rows of every batch
            batches = distributed.ShardedPaddedBatches(batches, world)
        spe = batches.steps_per_epoch
        if cfg.eval_every is None and cfg.eval_every_s is None:
            cfg = dataclasses.replace(cfg, eval_every=spe)             # validate at each epoch's end
        if cfg.lr is None:
            cfg = dataclasses.replace(cfg, lr=ClassifierTrainConfig.lr)
        if cfg.steps is None and cfg.epochs is None and cfg.time_budget is None:
            cfg = dataclasses.replace(cfg, steps=max(DEFAULT_EPOCHS * spe, DEFAULT_MIN_STEPS))
        total = lifecycle.steps_budget(cfg, spe)
        if total and not resumed and cfg.schedule != "constant" and cfg.warmup_steps > total // 10:
            cfg = dataclasses.replace(cfg, warmup_steps=total // 10)   # small data: warm up a tenth at most
        patience = _patience(cfg)
        m = model_cfg
        tokens = sum(len(s) for s in data.train_seqs)
        lines = [recipe.line()] if recipe is not None else []
        lines += [
            f"{data.source}: {len(data.train_seqs):,} training / {len(data.val_seqs):,} validation texts, labels "
            f"{', '.join(data.labels)}; vocabulary {len(data.vocab):,} words; {tokens / len(data.train_seqs):.0f} "
            f"words per text after truncation (read in {t_read:.1f}s)",
            f"model: {m.num_layers}x{m.hidden_size} {'bidirectional ' if m.bidirectional else ''}{m.cell}, "
            f"embedding {m.embed_size}, {m.pooling} pooling, {model.num_parameters():,} parameters on {device}",
            f"training: batches of {cfg.batch_size}{f' over {world.size} processes' if world and world.size > 1 else ''}"
            f" ({spe} per epoch{', bucketed' if self.data.bucket else ''}), "
            f"{cfg.optimizer} lr {cfg.lr:g} ({cfg.schedule}); budget {total or '-'} steps"
            f"{f', {cfg.time_budget:g}s' if cfg.time_budget else ''}"
            f"{f', patience {patience} epochs' if patience else ''}; run directory {run_dir}"]
        return lifecycle.Prepared(
            model, ClassifyTask(data.val_seqs, data.val_labels, device, cfg.precision, world or World()), batches,
            cfg, total,
            {"model": to_dict(model_cfg), "data": to_dict(data_cfg), "patience": patience, "labels": data.labels,
             "vocab": data.vocab.to_dict(), "examples": {"train": len(data.train_seqs), "val": len(data.val_seqs)},
             **({"recipe": recipe.to_dict()} if recipe is not None else {})},
            data.fingerprint, data.source, lines, data)

    def fit(self, trainer: Trainer, pause_at: Optional[int], say) -> bool:
        """One epoch at a time, so that early stopping can look at each epoch's validation."""
        spe = trainer.batches.steps_per_epoch
        while not trainer.done():
            stop = (trainer.progress.step // spe + 1) * spe
            if pause_at is not None and pause_at < stop:
                trainer.fit(pause_at=pause_at)
                return False
            trainer.fit(pause_at=stop)
            if _stalled(trainer):
                say(f"early stop: no better validation {_figure(trainer)} for {_patience(trainer.cfg)} epoch(s) "
                    f"(best at step {trainer.progress.best_step})")
                return True
        return False

    def finished(self, trainer: Trainer) -> Optional[str]:
        if _stalled(trainer):
            return "(early stop)"
        return "its budget" if trainer.done() else None

    def summary(self, trainer: Trainer, prepared: lifecycle.Prepared, stopped_early: bool) -> dict:
        model, data, p = prepared.model, prepared.data, trainer.progress
        extra = {}
        if model.config.naive_bayes:                    # fit the blend of each saved model on the validation texts
            for which in ("last", "best"):              # best last: it stays loaded, its score is the summary's
                path = ckpt.weights_path(trainer.run_dir, which)
                model.load_state_dict(ckpt.load_weights(path, trainer.device))
                info, val = fit_blend(model, data.val_seqs, data.val_labels, prepared.cfg.precision)
                if trainer.world.is_writer:
                    ckpt.save_weights(path, model.state_dict(), {**ckpt.read_weights_metadata(path), "blend": info})
            extra = {"naive_bayes": info}
        else:
            model.load_state_dict(ckpt.load_weights(ckpt.weights_path(trainer.run_dir, "best"), trainer.device))
            val = score(model, data.val_seqs, data.val_labels, precision=prepared.cfg.precision)
        return {**extra, "step": p.step, "best_step": p.best_step, "epochs": round(p.step / trainer.batches.steps_per_epoch, 3),
                "stopped_early": stopped_early, "train_time_s": round(p.train_time, 1),
                "tokens_per_s": round(p.units / max(p.train_time, 1e-9), 1),
                **{f"val_{k}": v for k, v in val.to_dict().items()}}


def fit_blend(model: SequenceClassifier, seqs: list[torch.Tensor], labels: torch.Tensor,
              precision: str = "fp32") -> tuple[dict, ClassifyScore]:
    """Set ``model.blend = (a, b)`` to the non-negative weights of least cross-entropy on these (held-out)
    texts for ``a · log_softmax(network) + b · log_softmax(naive Bayes)``: two numbers, so a thousand texts
    fit them well. A small penalty on a² + b² (``BLEND_RIDGE``) keeps them finite where a few texts are all
    classified right (the cross-entropy would fall for ever as the weights grow). Returns the weights with
    the accuracy of each part and of the blend, and the blend's score on the texts."""
    net, nb = (x.log_softmax(-1) for x in class_outputs(model, seqs, model.network, model.naive_bayes,
                                                         precision=precision))
    ab = _least_nll(net, nb, labels, torch.tensor([1.0, 1.0], dtype=torch.float64))
    if ab[1] < 0:                                   # Naive Bayes hurts: the network alone, rescaled
        ab = torch.stack([_least_nll(net, nb, labels, torch.tensor([1.0, 0.0], dtype=torch.float64), fixed_b=True)[0],
                          torch.zeros((), dtype=torch.float64)])
    ab = ab.clamp(min=0.0)
    model.blend.copy_(ab.to(model.blend))
    blended = score_logits(ab[0] * net + ab[1] * nb, labels)
    return {"weights": [round(float(w), 6) for w in ab],
            "val_accuracy_network": round(score_logits(net, labels).accuracy, 6),
            "val_accuracy_naive_bayes": round(score_logits(nb, labels).accuracy, 6),
            "val_accuracy_blend": round(blended.accuracy, 6)}, blended


def _least_nll(net: torch.Tensor, nb: torch.Tensor, labels: torch.Tensor, start: torch.Tensor, *,
               fixed_b: bool = False) -> torch.Tensor:
    with torch.enable_grad():
        ab = start.clone().requires_grad_(True)
        opt = torch.optim.LBFGS([ab], max_iter=100, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            b = ab[1].detach() if fixed_b else ab[1]
            loss = F.cross_entropy(ab[0] * net + b * nb, labels) + BLEND_RIDGE * (ab[0] ** 2 + b ** 2)
            loss.backward()
            return loss
        opt.step(closure)
    ab = ab.detach()
    return ab if bool(torch.isfinite(ab).all()) else start


def _figure(trainer: Trainer) -> str:
    return "accuracy" if trainer.progress.best_by == "val_error" else "loss"


def _patience(cfg: TrainConfig) -> Optional[int]:
    return getattr(cfg, "patience", None)


def _stalled(trainer: Trainer) -> bool:
    patience, p = _patience(trainer.cfg), trainer.progress
    return bool(patience) and p.best_step >= 0 and p.step - p.best_step >= patience * trainer.batches.steps_per_epoch


def train(data: TextDataConfig, model: Optional[ClassifierConfig], train: Optional[TrainConfig], out: str | Path, *,
          patience: Optional[int] = None, auto: Optional[Iterable[str]] = None, overwrite: bool = False,
          quiet: bool = False, pause_at: Optional[int] = None, log: Callable[[str], None] | None = None) -> dict:
    """Train a classifier in the new run directory ``out``; returns the final summary.

    ``train`` is best a ``ClassifierTrainConfig`` (the classifier's defaults); a plain TrainConfig is taken
    with its own values. Validation happens at every epoch's end when ``eval_every`` and ``eval_every_s``
    are both None; with no steps, epochs or time budget, the budget is ``DEFAULT_EPOCHS`` epochs or
    ``DEFAULT_MIN_STEPS`` steps, whichever is more. ``patience`` (or ``train.patience``) stops after that
    many epochs without a better validation accuracy (the best weights are those of the best accuracy).

    ``auto`` names the fields (of ``recipes.CLASSIFIER_FIELDS``) that the recipe chooses from the data: by
    default all of them when ``model`` is None, none otherwise. With no budget, the recipe's epochs and
    patience stop the run once validation stops improving, within ``DEFAULT_TIME_BUDGET`` seconds.
    """
    if auto is None:
        auto = recipes.CLASSIFIER_FIELDS if model is None else ()
    auto = tuple(auto)
    unknown = sorted(set(auto) - set(recipes.CLASSIFIER_FIELDS))
    if unknown:
        raise ValueError(f"auto: a classifier recipe cannot choose {', '.join(unknown)}; it chooses "
                         f"{', '.join(recipes.CLASSIFIER_FIELDS)}")
    model, train = model or ClassifierConfig(), train or ClassifierTrainConfig()
    if not isinstance(train, ClassifierTrainConfig):
        train = ClassifierTrainConfig(**dataclasses.asdict(train))
    if patience is not None:
        train = dataclasses.replace(train, patience=patience)
    return lifecycle.start(ClassifierJob(data, model, train, auto), out, overwrite=overwrite, quiet=quiet,
                           pause_at=pause_at, log=log, world=distributed.init(train.device))


def resume(out: str | Path, *, overrides: Optional[dict] = None, data_path: Optional[str] = None,
           quiet: bool = False, pause_at: Optional[int] = None, log: Callable[[str], None] | None = None) -> dict:
    """Continue the classifier run in ``out`` where its last checkpoint left it (same data, same order)."""
    run, cfg = lifecycle.read_resumable(out, ClassifierJob.task, ClassifierJob.what, overrides, RESUMABLE_FIELDS,
                                        ClassifierTrainConfig)
    if cfg.patience is None and run.get("patience"):
        cfg = dataclasses.replace(cfg, patience=int(run["patience"]))
    data = from_dict(TextDataConfig, run["data"], source=f"{out}/run.json data")
    if data_path is not None:
        data = dataclasses.replace(data, path=data_path)      # a moved file: fine if the texts are the same
    model = from_dict(ClassifierConfig, run["model"], source=f"{out}/run.json model")
    return lifecycle.resume(ClassifierJob(data, model, cfg), out, run, quiet=quiet, pause_at=pause_at, log=log,
                            world=distributed.init(cfg.device))
