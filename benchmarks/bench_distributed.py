"""Data-parallel training on one machine: 1 process with all its cores against W processes (torchrun, gloo)
with an equal share each, the same global batch, the same model and steps, alternating A B A B.

    python benchmarks/bench_distributed.py [--cells gru,lstm] [--hidden 256] [--steps 300] [--rounds 2]

Each run is a real ``rnnkit train`` on the bundled Molière corpus (global batch 64x50, dropout 0, no
evaluation until the end); the figure is the run's own training chars/s (training time only, evaluation
and start-up not counted), from its ``--json`` summary. W is the number of cores (2 here).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import table, write_section

CORES = os.cpu_count() or 1
ENV = {**os.environ, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}


def run(cell: str, hidden: int, steps: int, procs: int, out: Path) -> float:
    flags = ["train", "--corpus", "moliere", "--cell", cell, "--hidden-size", str(hidden), "--layers", "2",
             "--dropout", "0", "--batch-size", "64", "--seq-len", "50", "--lr", "3e-3", "--steps", str(steps),
             "--eval-every", str(steps), "--eval-chars", "5000", "--no-probe", "--device", "cpu", "--quiet",
             "--json", "--out", str(out), "--overwrite"]
    if procs == 1:
        cmd = [sys.executable, "-m", "rnnkit", *flags, "--threads", str(CORES)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
               "-m", "rnnkit", *flags]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])["chars_per_s"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="gru,lstm")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--procs", type=int, default=CORES)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cell in args.cells.split(","):
            seen: dict[int, list[float]] = {1: [], args.procs: []}
            for _ in range(args.rounds):
                for procs in (1, args.procs):
                    rate = run(cell, args.hidden, args.steps, procs, Path(tmp) / f"{cell}-{procs}")
                    seen[procs].append(rate)
                    print(f"{cell} 2x{args.hidden}, {procs} process(es): {rate:,.0f} chars/s", flush=True)
            one, many = statistics.median(seen[1]), statistics.median(seen[args.procs])
            rows.append([f"{cell} 2x{args.hidden}", f"{one:,.0f}", f"{many:,.0f}", f"{many / one:.2f}x"])
    body = (f"Global batch 64x50, {args.steps} steps, median of {args.rounds} rounds alternating; 1 process with "
            f"{CORES} threads against {args.procs} processes (torchrun, gloo) with {CORES // args.procs} thread(s) "
            f"each.\n\n" + table(["model", "1 process: chars/s", f"{args.procs} processes: chars/s", "ratio"], rows))
    print(body)
    write_section("bench_distributed", "Data-parallel training on one machine", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
