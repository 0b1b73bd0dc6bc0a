"""Where and in what precision a model runs: the device name a user gives, bf16 autocast, and whether this
CPU has bf16 kernels for recurrent layers."""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when PyTorch sees a GPU, else the CPU; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available to PyTorch here; use --device cpu or auto")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CPU or CUDA when asked for; otherwise a no-op context."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.cache
def cpu_has_bf16_lstm() -> bool:
    """Whether torch.nn.LSTM runs under CPU bf16 autocast here. oneDNN's bf16 LSTM needs AVX-512 (with
    bf16 instructions or AMX for speed); elsewhere creating it fails ("could not create a primitive
    descriptor"). Probed once per process, forward and backward, on a 4-unit layer (about a millisecond)."""
    with torch.inference_mode(False), torch.enable_grad():
        probe = nn.LSTM(4, 4, batch_first=True)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                probe(torch.zeros(1, 2, 4))[0].float().sum().backward()
        except RuntimeError:
            return False
    return True


def precision_warning(device: torch.device, precision: str) -> str | None:
    """A line to show before training in bf16 on a CPU without bf16 kernels, where it is slower than fp32."""
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16_lstm():
        return ("warning: this CPU has no bfloat16 kernels for recurrent layers (oneDNN wants AVX-512 with bf16); "
                "--precision bf16 keeps LSTM layers in fp32 and runs the rest slower than fp32: prefer fp32 here")
    return None
