"""Scratch cells vs torch.nn's fused layers, forward + backward, side by side (run by hand, under the lock).

    flock /tmp/rnnkit-cpu.lock .venv/bin/python benchmarks/bench_scratch.py [--reps 15] [--threads N]
                                                                         [--compile] [--only TEXT]

Each row times one training step of the recurrent layer alone (forward over T steps, backward of a
weighted sum of the outputs) on the shapes of the seed experiments, median of ``--reps`` runs after two
warm-up runs. ``speed`` is fused time / scratch time (1.0 = as fast as torch.nn; the targets
are >= 0.5 for the scratch backend and >= 0.8 for the Elman cell against an nn.RNN of the same size).
``--compile`` adds the scratch layer under ``torch.compile`` (what ``rnnkit train --compile`` does), its
time to compile, and fused time / compiled time; ``--only`` keeps the cases whose label holds TEXT.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from _common import table, write_section
from rnnkit.nn.recurrent import fused_to_scratch_keys, make_recurrent

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


def step_time(layer, x, reps: int, hidden_size: int) -> float:
    w = torch.randn(x.shape[0], x.shape[1], hidden_size)

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
    ap.add_argument("--compile", action="store_true", help="also time the scratch layer under torch.compile")
    ap.add_argument("--only", default="", help="run only the cases whose label contains this text")
    ap.add_argument("--no-write", action="store_true", help="print the table only; leave docs/benchmarks.md")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compile:   # an empty Inductor cache, so that "compile s" is what a first run costs
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="rnnkit-bench-inductor-")
    torch._dynamo.config.cache_size_limit = 64     # one compiled graph per case
    header = ["case", "B x T, I -> H", "fused ms", "scratch ms", "fused / scratch"]
    if args.compile:
        header += ["compiled ms", "compile s", "fused / compiled"]
    rows = []
    for label, cell, fused_cell, b, t, i, h, layers in CASES:
        if args.only not in label:
            continue
        torch.manual_seed(0)
        fused = make_recurrent(fused_cell, i, h, layers, backend="fused")
        scratch = make_recurrent(cell, i, h, layers, backend="scratch")
        if cell == fused_cell:   # same weights, so both do the same arithmetic
            scratch.load_state_dict(fused_to_scratch_keys(fused.state_dict()))
        x = torch.randn(b, t, i)
        # Alternate the two so that load from other processes hits both alike.
        layers_run = [fused, scratch]
        if args.compile:
            compiled = torch.compile(scratch, dynamic=False)
            t0 = time.perf_counter()
            out, _ = compiled(x)
            out.sum().backward()
            compile_s = time.perf_counter() - t0
            layers_run.append(compiled)
        times = [[] for _ in layers_run]
        for _ in range(3):
            for layer, ts in zip(layers_run, times):
                ts.append(step_time(layer, x, args.reps // 3 + 1, h))
        f, s, *c = (statistics.median(ts) for ts in times)
        row = [f"{label} ({cell} vs nn.{fused_cell.upper()})",
               f"{b}x{t}, {i}->{h}{f' x{layers}' if layers > 1 else ''}", f * 1e3, s * 1e3, f"{f / s:.2f}"]
        if c:
            row += [c[0] * 1e3, f"{compile_s:.0f}", f"{f / c[0]:.2f}"]
        rows.append(row)
        print(row, flush=True)
    text = table(header, rows)
    print(text)
    if not args.no_write:
        body = ("One training step of the recurrent layer alone (forward over T steps, backward of a weighted sum "
                f"of the outputs), same weights, median of {args.reps} runs alternating fused / scratch"
                f"{' / compiled' if args.compile else ''} in rounds. *compiled*: the scratch layer under "
                "`torch.compile(dynamic=False)` (as `rnnkit train --compile`), *compile s*: its first call, "
                "with an empty Inductor cache. "
                "Targets: scratch >= 0.5x fused, Elman >= 0.8x nn.RNN.\n\n" + text)
        write_section("bench_scratch" + ("_compiled" if args.compile else ""),
                      "Scratch backend vs fused" + (", with torch.compile" if args.compile else ""), body)


if __name__ == "__main__":
    main()
