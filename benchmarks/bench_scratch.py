"""Scratch cells vs torch.nn's fused layers, forward + backward, side by side (run by hand, under the lock).

    flock /tmp/rnnkit-cpu.lock .venv/bin/python benchmarks/bench_scratch.py [--reps 15] [--threads N]

Each row times one training step of the recurrent layer alone (forward over T steps, backward of a
weighted sum of the outputs) on the shapes of the seed experiments, median of ``--reps`` runs after two
warm-up runs. ``speed`` is fused time / scratch time (1.0 = as fast as torch.nn; the targets of issue 5
are >= 0.5 for the scratch backend and >= 0.8 for the Elman cell against an nn.RNN of the same size).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from rnnkit.recurrent import fused_to_scratch_keys, make_recurrent

# (label, scratch cell, fused cell, batch, steps, input size, hidden size, layers)
CASES = [
    ("seed 000: elman, per character", "elman", "rnn", 1, 1, 73, 128, 1),
    ("seed 000 batched: elman", "elman", "rnn", 16, 32, 73, 128, 1),
    ("seed 001: tanh rnn, one-hot", "rnn", "rnn", 32, 35, 1027, 256, 1),
    ("seed 002: lstm", "lstm", "lstm", 64, 40, 256, 512, 1),
    ("seed 004: lstm, batch 1", "lstm", "lstm", 1, 100, 128, 128, 1),
    ("lstm 2 layers", "lstm", "lstm", 32, 64, 64, 256, 2),
    ("gru 2 layers", "gru", "gru", 32, 64, 64, 256, 2),
]


def step_time(layer, x, reps: int) -> float:
    w = torch.randn(x.shape[0], x.shape[1], layer.hidden_size)

    def once():
        out, _ = layer(x)
        (out * w).sum().backward()

    for _ in range(2):
        once()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print("| case | B x T, I -> H | fused ms | scratch ms | speed (fused/scratch) |")
    print("|---|---|---:|---:|---:|")
    for label, cell, fused_cell, b, t, i, h, layers in CASES:
        torch.manual_seed(0)
        fused = make_recurrent(fused_cell, i, h, layers, backend="fused")
        scratch = make_recurrent(cell, i, h, layers, backend="scratch")
        if cell == fused_cell:   # same weights, so both do the same arithmetic
            scratch.load_state_dict(fused_to_scratch_keys(fused.state_dict()))
        x = torch.randn(b, t, i)
        # Alternate the two so that load from other processes hits both alike.
        tf, ts = [], []
        for _ in range(3):
            tf.append(step_time(fused, x, args.reps // 3 + 1))
            ts.append(step_time(scratch, x, args.reps // 3 + 1))
        f, s = statistics.median(tf), statistics.median(ts)
        name = f"{label} ({cell} vs nn.{fused_cell.upper()})"
        print(f"| {name} | {b}x{t}, {i}->{h}{f' x{layers}' if layers > 1 else ''} | {f * 1e3:.2f} | "
              f"{s * 1e3:.2f} | {f / s:.2f} |", flush=True)


if __name__ == "__main__":
    main()
