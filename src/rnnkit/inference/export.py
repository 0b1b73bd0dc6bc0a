"""ONNX export: a trained run as a model file that runs without PyTorch (onnxruntime and NumPy suffice).

Language models export as a **step model**, ``(token, state...) -> (logits, next state...)``: one character
in, the next character's logits and the new recurrent state out, for a batch of any size. It is written
from the cells' own equations (``nn/cells.py``: ``project`` then ``recur``, layer by layer), the same for
both backends: a fused run's weights are renamed to its scratch cells' (``runs.load(backend="scratch")``),
so every cell in the registry exports the same way and none of the fused layers' exporter gaps applies.
Inputs are ``token`` (B,) int64 and ``state_<part>`` for each named part of the cell's state, (L, B, ...);
outputs ``logits`` (B, V) and ``next_<part>``. Classifiers export as ``(tokens, lengths) -> logits`` over a
padded batch (B, T) of word ids with each text's length, B and T of any size; classifiers whose layers the
exporter can only trace at one length (scan blocks, the tanh RNN) export at T fixed to the run's
``max_tokens``, so a batch is padded to that width (``rnnkit.width`` in the metadata; the padding follows
each text and never reaches its valid steps, so the logits are those of any other padding).

The model file carries what a user needs beside it, as ONNX metadata (``metadata_props``, JSON values):
``rnnkit.task``, ``rnnkit.vocab``, ``rnnkit.model`` (the config), ``rnnkit.state`` (names and per-layer
shapes of the state parts, batch left out), and for classifiers ``rnnkit.labels`` and ``rnnkit.data`` (how
texts were truncated; ``rnnkit.width``, the fixed width or null). ``examples/onnx_generate.py`` generates text from it with onnxruntime and NumPy.

Needs the ``onnx`` extra (``pip install rnnkit[onnx]``: onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from .. import checkpoint as ckpt
from .._version import __version__
from ..nn import registry
from ..nn.models import CharLM
from ..nn.recurrent import fused_to_scratch_keys
from ..nn.state import join, layer, parts, stack_layers
from ..runs import load, load_classifier


class ExportError(ValueError):
    """A run cannot be exported as asked; the message says why and what would work."""


class SequenceModel(nn.Module):
    """A fused ``CharLM`` over a whole sequence: (tokens (B, T), *state parts) -> (logits (B, T, V), *state)."""

    def __init__(self, lm: CharLM):
        super().__init__()
        self.lm = lm

    def forward(self, tokens: torch.Tensor, *state: torch.Tensor):
        logits, new = self.lm(tokens, join(list(state)))
        return (logits, *parts(new))


class StepModel(nn.Module):
    """One character of a scratch-backend ``CharLM``: (token (B,), *state parts (L, B, ...)) ->
    (logits (B, V), *next state parts)."""

    def __init__(self, lm: CharLM):
        super().__init__()
        self.lm = lm

    def forward(self, token: torch.Tensor, *state: torch.Tensor):
        x = self.lm.inputs(token[:, None])[:, 0]                    # (B, E or V)
        st = join(list(state))
        finals = []
        for k, cell in enumerate(self.lm.rnn.cells):
            s = cell.recur(cell.project(x), layer(st, k))           # the cell's equations, one step
            x = cell.output(s)                                      # (B, H)
            finals.append(s)
        return (self.lm.head(x), *parts(stack_layers(finals)))


KINDS = ("step", "sequence")


def export_run(run_dir: str | Path, out: str | Path, *, weights: str = "best", overwrite: bool = False,
               kind: str = "step") -> str:
    """Write ``run_dir``'s model to ``out`` as ONNX; returns the task exported ("charlm" or "classifier").

    ``kind`` (language models): ``step``, one character at a time, or ``sequence``, a whole (B, T) batch at
    once, for scoring (fused LSTM and GRU models: the exporter keeps their time dimension dynamic)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} exists; choose another --out or pass --overwrite to replace it")
    if out.is_dir():
        raise ExportError(f"{out} is a directory; give a file name such as model.onnx")
    task = ckpt.read_run(run_dir)["task"]
    onnx = _onnx()
    if kind not in KINDS:
        raise ExportError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if task == "charlm" and kind == "sequence":
        proto = _export_sequence(run_dir, weights, onnx)
    elif task == "charlm":
        proto = _export_lm(run_dir, weights, onnx)
    elif task == "classifier":
        proto = _export_classifier(run_dir, weights, onnx)
    else:
        raise ExportError(f"{run_dir} is a {task} run; rnnkit exports language models and classifiers")
    _write(onnx, proto, out)
    return task


def _export_lm(run_dir, weights: str, onnx):
    lm = load(run_dir, weights=weights, backend="scratch")
    return lm_proto(lm.model, lm.vocab, onnx)


def _export_sequence(run_dir, weights: str, onnx):
    lm = load(run_dir, weights=weights)
    cfg = lm.model.config
    if cfg.backend == "scratch" or cfg.cell not in ("lstm", "gru"):
        raise ExportError(f"a sequence model exports for fused LSTM and GRU runs (the exporter fixes the length "
                          f"of the others); {run_dir} is a {cfg.backend} {cfg.cell}: export its step model instead")
    init = lm.model.init_state(2)
    names = _state_names(cfg.cell, len(parts(init)))
    batch, time_ = torch.export.Dim("batch"), torch.export.Dim("time", min=2)
    args = (torch.zeros(2, 5, dtype=torch.long), *parts(init))
    shapes = ({0: batch, 1: time_}, tuple({1: batch} for _ in names))
    proto = _to_onnx(SequenceModel(lm.model).eval(), args, shapes, ["tokens", *(f"state_{n}" for n in names)],
                     ["logits", *(f"next_{n}" for n in names)])
    _metadata(onnx, proto, {
        "rnnkit.task": "charlm-sequence", "rnnkit.vocab": lm.vocab.to_dict(), "rnnkit.model": lm.run["model"],
        "rnnkit.state": _state_layout(names, init)})
    return proto


def export_lm(model: CharLM, vocab, out: str | Path) -> None:
    """Write a ``CharLM`` (either backend) and its vocabulary to ``out`` as an ONNX step model."""
    onnx = _onnx()
    if model.config.backend != "scratch" and registry.get(model.config.cell).fused is not None:
        scratch = CharLM(dataclasses.replace(model.config, backend="scratch"))
        scratch.load_state_dict(fused_to_scratch_keys(model.state_dict()))
        model = scratch
    proto = lm_proto(model.cpu().float().eval(), vocab, onnx)
    _write(onnx, proto, out)


def lm_proto(model: CharLM, vocab, onnx):
    """The ONNX step model of a scratch-backend ``CharLM``, metadata included."""
    step = StepModel(model).eval()
    init = model.init_state(2)                                      # a batch of 2: the batch stays dynamic
    names = _state_names(model.config.cell, len(parts(init)))
    batch = torch.export.Dim("batch")
    args = (torch.zeros(2, dtype=torch.long), *parts(init))
    shapes = ({0: batch}, tuple({1: batch} for _ in names))          # *state is one group of arguments
    proto = _to_onnx(step, args, shapes, ["token", *(f"state_{n}" for n in names)],
                     ["logits", *(f"next_{n}" for n in names)])
    _metadata(onnx, proto, {
        "rnnkit.task": "charlm", "rnnkit.vocab": vocab.to_dict(), "rnnkit.model": dataclasses.asdict(model.config),
        "rnnkit.state": _state_layout(names, init)})
    return proto


def _export_classifier(run_dir, weights: str, onnx):
    clf = load_classifier(run_dir, weights=weights)
    if clf.model.config.packed:
        raise ExportError(f"{run_dir} runs packed sequences, which do not export; retrain without --packed "
                          f"(the same weights give the same outputs unpacked)")
    cell = clf.model.config.cell
    batch = torch.export.Dim("batch")
    if registry.get(cell).scan or cell == "rnn":      # traced at one length: the scan's passes, nn.RNN's loop
        fixed = clf.data.max_tokens
        if not fixed:
            raise ExportError(f"{cell} classifiers export at a fixed text length, the run's --max-tokens, and "
                              f"{run_dir} keeps every word; retrain it with --max-tokens N (e.g. 400)")
        args = (torch.ones(2, fixed, dtype=torch.long), torch.tensor([fixed, 3]))
        shapes = ({0: batch}, {0: batch})
    else:
        fixed = None
        args = (torch.ones(2, 5, dtype=torch.long), torch.tensor([5, 3]))
        shapes = ({0: batch, 1: torch.export.Dim("width", min=2)}, {0: batch})
    proto = _to_onnx(clf.model.eval(), args, shapes, ["tokens", "lengths"], ["logits"])
    _metadata(onnx, proto, {"rnnkit.task": "classifier", "rnnkit.vocab": clf.vocab.to_dict(),
                            "rnnkit.model": clf.run["model"], "rnnkit.labels": clf.labels,
                            "rnnkit.data": dataclasses.asdict(clf.data), "rnnkit.width": fixed})
    return proto


def _write(onnx, proto, out) -> None:
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    ckpt.atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))


def _state_layout(names: list[str], init) -> list[dict]:
    """Each state part's name and shape without the batch dimension: (L, ...) of an (L, B, ...) tensor."""
    return [{"name": n, "shape": [t.shape[0], *t.shape[2:]]} for n, t in zip(names, parts(init))]


def _state_names(cell: str, n: int) -> list[str]:
    names = list(registry.get(cell).state)
    return names if len(names) == n else [f"s{i}" for i in range(n)]


def _to_onnx(model: nn.Module, args: tuple, shapes: tuple, inputs: list[str], outputs: list[str]):
    with _quiet(), torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(model, args, None, dynamo=True, dynamic_shapes=shapes, input_names=inputs,
                                    output_names=outputs, optimize=True)
    return program.model_proto


def _metadata(onnx, proto, values: dict) -> None:
    values = {**values, "rnnkit.version": __version__}
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@contextlib.contextmanager
def _quiet():
    """torch's exporter logs its own progress and deprecations of its internals; none of it is the user's."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(None):
                yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _onnx():
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise ExportError("ONNX export needs the onnx extra: pip install 'rnnkit[onnx]' (onnx, onnxscript, "
                          "onnxruntime)") from None
    return onnx
