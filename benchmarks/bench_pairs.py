"""Fixed-step pairs: the same run with one setting changed, everything else equal (seed, data order,
steps), one after the other in one process, so the difference in best validation loss is the setting's.

    python benchmarks/bench_pairs.py CORPUS --steps 1800 --label NAME \\
        --common "--cell gru --hidden-size 256 --dropout 0.1 --lr 5e-3" \\
        --variant "cosine=" --variant "linear to 0=--schedule linear --min-lr-ratio 0"

Each ``--variant NAME=FLAGS`` adds FLAGS to the common ones. A step budget (not a time budget) keeps the
comparison free of the machine's speed of the hour; the schedule spans the same steps in every run.
``--time-budget S`` instead gives every run S seconds of training, for settings that change the speed
itself (the batch shape): the runs then differ in steps and the comparison carries the machine's noise.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

from _common import table, write_section
from bench_quality import run_rnnkit, shown_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", help="UTF-8 text file")
    budget = ap.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=int, help="optimizer steps of every run")
    budget.add_argument("--time-budget", type=float, metavar="S", help="seconds of training of every run")
    ap.add_argument("--eval-every", type=int, default=300, help="steps between evaluations (default 300)")
    ap.add_argument("--common", default="", help="rnnkit train flags of every run")
    ap.add_argument("--variant", action="append", required=True, metavar="NAME=FLAGS",
                    help="one run: its name and the flags it adds (repeat)")
    ap.add_argument("--label", required=True, help="section name in docs/benchmarks.md")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    variants = []
    for v in args.variant:
        if "=" not in v:
            ap.error(f"--variant {v!r}: give NAME=FLAGS (FLAGS may be empty)")
        name, flags = v.split("=", 1)
        variants.append((name, shlex.split(flags)))
    corpus = str(Path(args.corpus).resolve())
    given = ["--steps", str(args.steps)] if args.steps else ["--time-budget", f"{args.time_budget:g}s"]
    common = shlex.split(args.common) + given + ["--eval-every", str(args.eval_every), "--no-probe"]
    rows = []
    for name, flags in variants:
        r = run_rnnkit(corpus, None, common + flags)
        print(name, r, file=sys.stderr, flush=True)
        rows.append([name, shlex.join(flags) or "(none)", f"{r['best_val']:.4f}", r["steps"], r["chars_per_s"]])
    text = table(["variant", "flags", "best val nats/char", "steps", "train chars/s"], rows)
    print(text)
    if not args.no_write:
        each = f"{args.steps:,} steps each" if args.steps else f"{args.time_budget:g} s of training each"
        body = (f"Corpus `{shown_path(corpus)}` (last 10% held out: best weights scored on all of it), {each}; "
                f"common flags `{args.common}`.\n\n" + text)
        kind = "Fixed-step pairs" if args.steps else "Equal-time pairs"
        write_section("bench_pairs_" + re.sub(r"\W+", "_", args.label), f"{kind}: {args.label}", body)


if __name__ == "__main__":
    main()
