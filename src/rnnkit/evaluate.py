"""Held-out evaluation of a language model: summed NLL over a whole stream, state carried through it."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .metrics import LMScore
from .recurrent import cpu_has_bf16_lstm


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CPU or CUDA when asked for; otherwise a no-op context."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_warning(device: torch.device, precision: str) -> str | None:
    """A line to show before training in bf16 on a CPU without bf16 kernels, where it is slower than fp32."""
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16_lstm():
        return ("warning: this CPU has no bfloat16 kernels for recurrent layers (oneDNN wants AVX-512 with bf16); "
                "--precision bf16 keeps LSTM layers in fp32 and runs the rest slower than fp32: prefer fp32 here")
    return None


@torch.inference_mode()
def evaluate_stream(model, ids: torch.Tensor, *, streams: int = 32, chunk: int = 512,
                    precision: str = "fp32") -> LMScore:
    """Score every character of ``ids`` after the first, each given all the text before it.

    The text is cut into ``streams`` contiguous rows evaluated side by side (for speed), each carrying
    its state from chunk to chunk; the few characters left over continue the last row's state, so all
    ``len(ids) - 1`` predictions are counted and the sum is divided once.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    n = len(ids) - 1
    if n < 1:
        raise ValueError("evaluation needs at least two characters")
    streams = max(1, min(streams, n // max(chunk, 1)))
    length = n // streams                                           # L: predictions per row
    x = ids[:streams * length].view(streams, length)
    y = ids[1:streams * length + 1].view(streams, length)
    total = torch.zeros((), dtype=torch.float64, device=device)
    state = None
    try:
        with autocast(device, precision):
            for i in range(0, length, chunk):
                xb = x[:, i:i + chunk].to(device, torch.long, non_blocking=True)
                yb = y[:, i:i + chunk].to(device, torch.long, non_blocking=True)
                logits, state = model(xb, state)
                total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), yb.reshape(-1),
                                         reduction="sum").double()
            tail = ids[streams * length:]                           # leftover: continues the last row
            if len(tail) > 1:
                last = _row(state, streams - 1)
                for i in range(0, len(tail) - 1, chunk):
                    j = min(i + chunk, len(tail) - 1)
                    xb = tail[i:j][None].to(device, torch.long)
                    yb = tail[i + 1:j + 1][None].to(device, torch.long)
                    logits, last = model(xb, last)
                    total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), yb.reshape(-1),
                                             reduction="sum").double()
    finally:
        model.train(was_training)
    return LMScore(float(total), n)


def _row(state, i: int):
    """Row ``i`` of a (L, B, H) state (or an LSTM pair), keeping the batch dimension."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state[:, i:i + 1].contiguous()
    return tuple(_row(s, i) for s in state)
