"""Peak memory of `rnnkit train` on a 100 MB corpus, beyond the model and optimizer.

Builds /tmp/rnnkit-memory-corpus.txt (Molière repeated to --mb megabytes of UTF-8; never committed) and a
200 kB slice of it, then runs `python -m rnnkit train` as a user would, in a fresh child process each,
on both: same model, same optimizer, same batches, a few steps. The child's peak resident set size comes
from ``os.wait4``. The small run's peak is the interpreter, torch, the model, the optimizer state and the
activations; what the large run needs beyond it is the corpus: its bytes, the decoded text, the ids, the
fingerprint and the batch views. Target: at most 1.5 GB beyond, and a few copies of the corpus at most.

Molière has accented letters, so Python holds the decoded text at 2 bytes per character: the text alone
is about twice the file.

usage: python benchmarks/bench_memory.py [--mb 100] [--steps 3] [--keep]
Run it under the shared CPU lock: flock /tmp/rnnkit-cpu.lock .venv/bin/python benchmarks/bench_memory.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import SHARED, machine

CORPUS = Path("/tmp/rnnkit-memory-corpus.txt")
SMALL = Path("/tmp/rnnkit-memory-small.txt")
MODEL = ["--cell", "lstm", "--layers", "2", "--hidden-size", "512", "--embed-size", "64"]   # a mid-sized model
BATCHES = ["--batch-size", "64", "--seq-len", "100"]


def make_corpus(mb: int) -> None:
    text = (SHARED / "data" / "moliere.txt").read_text(encoding="utf-8")
    unit = text.encode("utf-8")
    target = mb * 1_000_000
    if not CORPUS.exists() or CORPUS.stat().st_size != target:
        with open(CORPUS, "wb") as f:
            written = 0
            while written < target:
                piece = unit[: target - written]
                piece = piece[: len(piece.decode("utf-8", "ignore").encode("utf-8"))]  # whole characters only
                f.write(piece)
                written += len(piece)
                if not piece:
                    break
        if CORPUS.stat().st_size != target:                          # a cut character: pad with ASCII
            with open(CORPUS, "ab") as f:
                f.write(b" " * (target - CORPUS.stat().st_size))
    SMALL.write_bytes(CORPUS.read_bytes()[:200_000].decode("utf-8", "ignore").encode("utf-8"))


def run(corpus: Path, extra: list[str], steps: int, out: Path) -> tuple[float, float, str]:
    """Peak RSS in MiB, wall seconds and the stderr of one `rnnkit train` child."""
    argv = [sys.executable, "-m", "rnnkit", "train", str(corpus), *MODEL, *BATCHES, *extra,
            "--steps", str(steps), "--eval-every", str(steps), "--val-fraction", "0.001", "--eval-chars", "20000",
            "--threads", str(min(2, os.cpu_count() or 1)), "--device", "cpu", "--quiet", "--overwrite",
            "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()             # first, so that the child never blocks on a full pipe
    _, status, usage = os.wait4(proc.pid, 0)                      # this child's own rusage
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if proc.returncode != 0:
        sys.exit(f"rnnkit train failed ({proc.returncode}):\n{err}")
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, err


# Reading alone, without training: the peak of prepare_data (read, decode, vocabulary, encode, fingerprint,
# split) over a child that only imports the same modules. This is the "copies of the corpus" figure: in a
# training run the text is freed before the model's own peak, so the two peaks overlap.
READ = ("import sys, torch, rnnkit.data.charlm as T; from rnnkit.config import DataConfig; "
        "cfg = DataConfig(path=sys.argv[1], newlines_to_spaces=sys.argv[2] == '1'); "
        "d = T.prepare_data(cfg) if sys.argv[3] == '1' else None")


def read_peak(corpus: Path, newlines: bool, read: bool) -> float:
    proc = subprocess.Popen([sys.executable, "-c", READ, str(corpus), str(int(newlines)), str(int(read))])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"reading {corpus} failed ({proc.returncode})")
    return usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=100, help="corpus size in MB (10^6 bytes)")
    ap.add_argument("--steps", type=int, default=3, help="training steps per run")
    ap.add_argument("--keep", action="store_true", help="keep the corpus in /tmp afterwards")
    ap.add_argument("--read-only", action="store_true", help="measure reading only, no training runs")
    args = ap.parse_args()
    make_corpus(args.mb)
    size_mib = CORPUS.stat().st_size / 2**20
    out = Path(tempfile.mkdtemp(prefix="rnnkit-memory-"))
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d')}; corpus {CORPUS} = {CORPUS.stat().st_size:,} bytes ({size_mib:.1f} MiB); "
          f"model 2x512 LSTM, embedding 64, Adam, batches 64x100, {args.steps} steps")
    rows, reads = [], []
    try:
        base = read_peak(CORPUS, False, False)
        for newlines in (False, True):
            peak = read_peak(CORPUS, newlines, True)
            reads.append(("--newlines-to-spaces" if newlines else "plain", base, peak))
            print(f"  reading {'with --newlines-to-spaces' if newlines else 'plain'}: imports alone {base:,.0f} MiB, "
                  f"after prepare_data {peak:,.0f} MiB: {peak - base:,.0f} MiB = {(peak - base) / size_mib:.2f} x the file")
        for label, extra in () if args.read_only else (
                ("plain", []), ("--newlines-to-spaces", ["--newlines-to-spaces"]), ("--batching random", ["--batching", "random"])):
            small, _, _ = run(SMALL, extra, args.steps, out / "small")
            big, wall, err = run(CORPUS, extra, args.steps, out / "big")
            params = next((line for line in err.splitlines() if line.startswith("model:")), "")
            rows.append((label, small, big, big - small, (big - small) / size_mib, wall))
            print(f"  {label}: small corpus peak {small:,.0f} MiB, 100 MB corpus peak {big:,.0f} MiB, "
                  f"beyond {big - small:,.0f} MiB = {(big - small) / size_mib:.2f} x the file; wall {wall:.1f}s")
        if rows:
            print(f"  ({params})")
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if not args.keep:
            CORPUS.unlink(missing_ok=True)
            SMALL.unlink(missing_ok=True)
    print()
    print("| reading (prepare_data only) | peak, imports only | peak after reading | for the corpus | x file size |")
    print("|---|---:|---:|---:|---:|")
    for label, base, peak in reads:
        print(f"| {label} | {base:,.0f} MiB | {peak:,.0f} MiB | {peak - base:,.0f} MiB | {(peak - base) / size_mib:.2f} |")
    if not rows:
        return
    print()
    print("| options | peak, 200 kB corpus | peak, 100 MB corpus | beyond model+optimizer | x file size | wall |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, small, big, beyond, copies, wall in rows:
        print(f"| {label} | {small:,.0f} MiB | {big:,.0f} MiB | {beyond:,.0f} MiB | {copies:.2f} | {wall:.0f} s |")
    worst = max(r[3] for r in rows)
    print(f"\nworst case beyond model+optimizer: {worst:,.0f} MiB ({'within' if worst <= 1.5 * 1024 else 'OVER'} "
          f"the 1.5 GB target)")


if __name__ == "__main__":
    main()
