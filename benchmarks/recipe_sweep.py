"""Recipe search for a CPU time budget, run where compute is cheap.

The loss a recipe reaches in a time budget depends on two things: how many characters it trains on per
second on the target machine, and how much it learns from each of them. The first is measured on the target
CPU (``measure``: about 15 s per recipe); the second does not depend on the machine, so the training runs
themselves (``sweep``) can go to a GPU, several at once, each given the number of optimizer steps the
target CPU would take in the budget (``--steps`` budget, so the cosine schedule spans the same steps).
The best recipes are then confirmed by a real ``--time-budget`` run on the CPU (bench_quality.py).

    python benchmarks/recipe_sweep.py measure --corpus moliere --out benchmarks/rates_moliere.json
    python benchmarks/recipe_sweep.py sweep --corpus moliere --rates benchmarks/rates_moliere.json \\
        --budget 300 --device cuda --jobs 8 [--speedup 1.0] [--seeds 0,1] [--only NAME,...] [--label NAME]

``--speedup`` scales the measured rates (1.45: a CPU that trains 1.45x as many characters per second).
Recipes are named below; each is a list of ``rnnkit train`` flags on top of BASE (rnnkit's defaults when
the sweep was first run), so that a recipe means the same whatever the defaults are now.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import ROOT, table, write_section

# LSTM 2x256, embedding 64, batches 64x100, Adam 3e-3 cosine: rnnkit's defaults before the sweep.
BASE = ["--cell", "lstm", "--layers", "2", "--hidden-size", "256", "--embed-size", "64", "--batch-size", "64",
        "--seq-len", "100", "--lr", "3e-3"]
RECIPES: dict[str, list[str]] = {
    "base": [],
    "lstm 1x256": ["--layers", "1", "--hidden-size", "256"],
    "lstm 1x384": ["--layers", "1", "--hidden-size", "384"],
    "lstm 1x512": ["--layers", "1", "--hidden-size", "512"],
    "lstm 2x192": ["--hidden-size", "192"],
    "lstm 2x320": ["--hidden-size", "320"],
    "lstm 2x384": ["--hidden-size", "384"],
    "lstm 3x256": ["--layers", "3"],
    "gru 2x256": ["--cell", "gru"],
    "gru 1x512": ["--cell", "gru", "--layers", "1", "--hidden-size", "512"],
    "gru 2x384": ["--cell", "gru", "--hidden-size", "384"],
    "lstm 2x256 b32": ["--batch-size", "32"],
    "lstm 2x256 b128": ["--batch-size", "128"],
    "lstm 2x256 seq50": ["--seq-len", "50"],
    "lstm 2x256 seq200": ["--seq-len", "200"],
    "lstm 2x256 emb128": ["--embed-size", "128"],
    "lstm 1x512 b128": ["--layers", "1", "--hidden-size", "512", "--batch-size", "128"],
    "gru 2x192": ["--cell", "gru", "--hidden-size", "192"],
    "gru 2x320": ["--cell", "gru", "--hidden-size", "320"],
    "gru 2x512": ["--cell", "gru", "--hidden-size", "512"],
    "gru 3x256": ["--cell", "gru", "--layers", "3"],
}
# Variants that leave the work per step unchanged (learning rate, regularisation, schedule) or change it
# too little to measure (sequence length at the same batch): they take the measured rate of the recipe
# named first.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "lr 2e-3": ("base", ["--lr", "2e-3"]),
    "lr 5e-3": ("base", ["--lr", "5e-3"]),
    "lr 8e-3": ("base", ["--lr", "8e-3"]),
    "dropout 0.1": ("base", ["--dropout", "0.1"]),
    "warmup 0": ("base", ["--warmup-steps", "0"]),
    "min-lr 0.0": ("base", ["--min-lr-ratio", "0.0"]),
    "adamw wd 0.1": ("base", ["--optimizer", "adamw", "--weight-decay", "0.1"]),
    "gru 2x256 seq50": ("gru 2x256", ["--cell", "gru", "--seq-len", "50"]),
    "gru 2x256 seq50 lr 5e-3": ("gru 2x256", ["--cell", "gru", "--seq-len", "50", "--lr", "5e-3"]),
    "gru 2x256 lr 2e-3": ("gru 2x256", ["--cell", "gru", "--lr", "2e-3"]),
    "gru 2x256 lr 5e-3": ("gru 2x256", ["--cell", "gru", "--lr", "5e-3"]),
    "gru 2x256 lr 8e-3": ("gru 2x256", ["--cell", "gru", "--lr", "8e-3"]),
    "gru 2x256 dropout 0.1": ("gru 2x256", ["--cell", "gru", "--dropout", "0.1"]),
    "gru 2x256 emb128": ("gru 2x256", ["--cell", "gru", "--embed-size", "128"]),
    "gru 2x320 seq50": ("gru 2x320", ["--cell", "gru", "--hidden-size", "320", "--seq-len", "50"]),
    "gru 2x512 seq50": ("gru 2x512", ["--cell", "gru", "--hidden-size", "512", "--seq-len", "50"]),
    "gru 2x384 seq50": ("gru 2x384", ["--cell", "gru", "--hidden-size", "384", "--seq-len", "50"]),
    "gru 2x384 lr 2e-3": ("gru 2x384", ["--cell", "gru", "--hidden-size", "384", "--lr", "2e-3"]),
    "gru 2x384 dropout 0.1": ("gru 2x384", ["--cell", "gru", "--hidden-size", "384", "--dropout", "0.1"]),
    "gru 2x512 lr 2e-3": ("gru 2x512", ["--cell", "gru", "--hidden-size", "512", "--lr", "2e-3"]),
    "gru 2x512 dropout 0.1": ("gru 2x512", ["--cell", "gru", "--hidden-size", "512", "--dropout", "0.1"]),
}
ALL = {**RECIPES, **{name: flags for name, (_, flags) in VARIANTS.items()}}


def rate_of(name: str, rates: dict) -> float | None:
    return rates.get(VARIANTS[name][0]) if name in VARIANTS else rates.get(name)


def rnnkit(*args: str, device: str = "cpu", threads: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS=str(threads))
    return subprocess.run([sys.executable, "-m", "rnnkit", "train", *args, "--device", device,
                           "--threads", str(threads), "--quiet"], env=env, capture_output=True, text=True)


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def measure(args) -> None:
    rates = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    with tempfile.TemporaryDirectory(prefix="rnnkit-rates-") as tmp:
        for name, flags in RECIPES.items():
            if args.only and name not in args.only:
                continue
            run = Path(tmp) / "run"
            done = rnnkit(*corpus_flags(args.corpus), *BASE, *flags, "--steps", "40", "--eval-every", "20",
                          "--eval-chars", "2000", "--out", str(run), "--overwrite")
            if done.returncode:
                sys.exit(f"{name}: rnnkit train failed:\n{done.stderr[-2000:]}")
            rates[name] = records(run)[1]["chars_per_s"]    # steps 21-40: warmed up
            print(f"{name:20s} {rates[name]:>10,.0f} chars/s", flush=True)
            Path(args.out).write_text(json.dumps(rates, indent=1) + "\n")


def corpus_flags(corpus: str) -> list[str]:
    return ["--corpus", corpus] if Path(corpus).suffix == "" and not Path(corpus).exists() else [corpus]


def sweep(args) -> None:
    rates = json.loads(Path(args.rates).read_text())
    jobs = []
    for name, flags in ALL.items():
        if args.only and name not in args.only:
            continue
        rate = rate_of(name, rates)
        if rate is None:
            print(f"{name}: no measured rate, skipped", file=sys.stderr)
            continue
        batch = int(_flag(flags, "--batch-size", "64")) * int(_flag(flags, "--seq-len", "100"))
        steps = max(1, round(rate * args.speedup * args.budget / batch))
        for seed in args.seeds:
            jobs.append((name, flags, steps, seed))

    def one(job):
        name, flags, steps, seed = job
        with tempfile.TemporaryDirectory(prefix="rnnkit-sweep-") as tmp:
            t0 = time.perf_counter()
            done = rnnkit(*corpus_flags(args.corpus), *BASE, *flags, "--steps", str(steps), "--seed", str(seed),
                          "--eval-every", str(max(1, steps // 5)), "--eval-chars", "50000",
                          "--out", tmp + "/run", "--json", device=args.device, threads=1)
            if done.returncode:
                return name, seed, steps, math.nan, f"failed: {done.stderr.strip().splitlines()[-1:]}"
            best = json.loads(done.stdout.strip().splitlines()[-1])["val_nats_per_char"]
            return name, seed, steps, best, f"{time.perf_counter() - t0:.0f} s"

    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, jobs))
    by_name: dict[str, list] = {}
    for name, seed, steps, best, note in results:
        by_name.setdefault(name, []).append((steps, best, note))
        print(f"{name:20s} seed {seed} steps {steps:6d} val {best:.4f} ({note})", file=sys.stderr, flush=True)
    rows = []
    for name, rs in by_name.items():
        vals = [b for _, b, _ in rs]
        rows.append([name, " ".join(ALL[name]) or "(base)", rate_of(name, rates),
                     rs[0][0], " / ".join(f"{v:.3f}" for v in vals), sum(vals) / len(vals)])
    rows.sort(key=lambda r: r[-1])
    text = table(["recipe", "flags", "CPU chars/s", "steps", "val nats/char per seed", "mean"], rows)
    print(text)
    if not args.no_write:
        body = (f"Each recipe trained for the optimizer steps that the measured CPU rate ({args.rates}, scaled by "
                f"{args.speedup:g}) allows in {args.budget:g} s, on `{args.corpus}` (90/10 split), on "
                f"`{args.device}`, seeds {','.join(map(str, args.seeds))}; loss = final evaluation of the best "
                f"weights on the whole held-out tail. The loss after a given number of steps does not depend on "
                f"the machine that runs them, so this ranks recipes for the CPU budget; the winners are then "
                f"confirmed by real `--time-budget` runs on the CPU (quality per budget). Flags are given on top of *base*: "
                f"`{' '.join(BASE)}`.\n\n" + text)
        label = f"_{args.label}" if args.label else ""
        write_section(f"recipe_sweep_{Path(args.corpus).stem}_{int(args.budget)}s_x{args.speedup:g}{label}",
                      f"Recipe sweep: {Path(args.corpus).stem}, {args.budget:g} s of CPU time "
                      f"(x{args.speedup:g}){' ' + args.label if args.label else ''}", body)


def _flag(flags: list[str], name: str, default: str) -> str:
    return flags[flags.index(name) + 1] if name in flags else default


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--corpus", default="moliere")
    m.add_argument("--out", required=True)
    m.add_argument("--only", type=lambda s: s.split(","))
    s = sub.add_parser("sweep")
    s.add_argument("--corpus", default="moliere")
    s.add_argument("--rates", required=True)
    s.add_argument("--budget", type=float, default=300)
    s.add_argument("--speedup", type=float, default=1.0)
    s.add_argument("--device", default="cuda")
    s.add_argument("--jobs", type=int, default=8)
    s.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    s.add_argument("--only", type=lambda s: s.split(","))
    s.add_argument("--label", help="names this sweep's section of docs/benchmarks.md (one per selection)")
    s.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    measure(args) if args.cmd == "measure" else sweep(args)


if __name__ == "__main__":
    main()
