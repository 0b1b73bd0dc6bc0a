"""A trained run loaded for inference: weights (safetensors), configuration and vocabulary (JSON), nothing
that can execute code. GPU-trained runs load on a CPU.

``load`` gives a character language model, ``load_classifier`` a sequence classifier; each refuses the
other task's runs with a one-line ``CheckpointError``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import torch

from . import checkpoint as ckpt
from .config import ClassifierConfig, ModelConfig, TextDataConfig, from_dict
from .data.padded import encode_texts
from .data.vocab import CharVocab
from .data.words import WordVocab, tokenize
from .nn.device import resolve_device
from .nn.models import CharLM, SequenceClassifier
from .nn.recurrent import effective_backend, fused_to_scratch_keys, scratch_to_fused_keys


class _Trained:
    run: dict

    @property
    def precision(self) -> str:
        """The precision it was trained in, which scoring uses too."""
        return self.run.get("train", {}).get("precision", "fp32")


@dataclass
class LoadedLM(_Trained):
    model: CharLM
    vocab: CharVocab
    run: dict                    # the run's run.json: configs, vocabulary, fingerprint
    weights: Path                # the weights file that was loaded


@dataclass
class LoadedClassifier(_Trained):
    model: SequenceClassifier
    vocab: WordVocab
    labels: list[str]
    data: TextDataConfig         # how the run read and truncated its texts
    run: dict                    # the run's run.json
    weights: Path

    def encode(self, texts: Iterable[str]) -> list[torch.Tensor]:
        return encode_texts(self.vocab, (tokenize(t) for t in texts), self.data)


def read_task_run(run_dir: str | Path, task: str, what: str) -> dict:
    """run.json of ``run_dir``, refusing a run of another task with the command that serves it."""
    run = ckpt.read_run(run_dir)
    if run.get("task") != task:
        hint = "rnnkit classify" if run.get("task") == "classifier" else "rnnkit eval/sample/train"
        raise ckpt.CheckpointError(f"{run_dir} is a {run.get('task')} run, not {what} (use {hint} for it)")
    return run


def load(run_dir: str | Path, *, weights: str = "best", device: str | torch.device = "cpu",
         backend: Optional[str] = None) -> LoadedLM:
    """A trained character model from its run directory; ``backend`` swaps fused and scratch layers (same
    weights under the other layer's key names)."""
    run = read_task_run(run_dir, "charlm", "a character language model")
    model_cfg = from_dict(ModelConfig, run["model"], source=f"{run_dir}/run.json model")
    saved = effective_backend(model_cfg.cell, model_cfg.backend)
    if backend is not None:
        model_cfg = dataclasses.replace(model_cfg, backend=backend)
    model = CharLM(model_cfg)
    path = ckpt.weights_path(run_dir, weights)
    state = ckpt.load_weights(path)
    wanted = effective_backend(model_cfg.cell, model_cfg.backend)
    if wanted != saved:
        state = (fused_to_scratch_keys if wanted == "scratch" else scratch_to_fused_keys)(state)
    _load_into(model, state, path)
    device = resolve_device(device) if isinstance(device, str) else device
    return LoadedLM(model.to(device).eval(), CharVocab.from_dict(run["vocab"]), run, path)


def load_classifier(run_dir: str | Path, *, weights: str = "best",
                    device: str | torch.device = "cpu") -> LoadedClassifier:
    """A trained classifier from its run directory."""
    run = read_task_run(run_dir, "classifier", "a classifier")
    model_cfg = from_dict(ClassifierConfig, run["model"], source=f"{run_dir}/run.json model")
    data_cfg = from_dict(TextDataConfig, run["data"], source=f"{run_dir}/run.json data")
    model = SequenceClassifier(model_cfg)
    path = ckpt.weights_path(run_dir, weights)
    _load_into(model, ckpt.load_weights(path), path)
    device = resolve_device(device) if isinstance(device, str) else device
    return LoadedClassifier(model.to(device).eval(), WordVocab.from_dict(run["vocab"]), list(run["labels"]),
                            data_cfg, run, path)


def _load_into(model: torch.nn.Module, state: dict, path: Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]   # [0] is "Error(s) in loading ...:"
        raise ckpt.CheckpointError(f"{path}: weights do not fit the model in run.json ({lines[-1][:200]})") from None
