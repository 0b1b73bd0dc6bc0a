"""Classifier recipe against the fixed defaults it replaced, side by side, on labelled sets at hand.

For each data set (a training CSV and a test CSV with ``text`` and ``label`` columns) and seed, one after
the other:

  fixed   rnnkit classify train TRAIN --steps S (S = max(3 epochs, 200 steps): the fixed budget) with the
          fixed defaults: unidirectional 1x128 LSTM, max pooling, dropout 0.3, --min-freq 2, best weights
          by validation loss
  recipe  rnnkit classify train TRAIN (no flags: the recipe of training/recipes.py)

  NAME    rnnkit classify train TRAIN FLAGS, for each ``--variant 'NAME=FLAGS'`` (the recipe with FLAGS on top)

then ``rnnkit classify eval RUN TEST``. Reports test accuracy per seed and the mean.

    python benchmarks/bench_classifier_recipe.py NAME=TRAIN.csv,TEST.csv [...] [--seeds 1,2,3] [--label L]
        [--variant 'NAME=FLAGS' ...] [--no-fixed]

The fixed side's "best weights by validation loss" is what rnnkit did then; this version selects by
accuracy for both, so the fixed row differs from the old behaviour in that one point.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import table, write_section

RNNKIT = Path(sys.executable).with_name("rnnkit")
FIXED = ["--no-bidirectional", "--pooling", "max", "--dropout", "0.3", "--min-freq", "2", "--naive-bayes", "0",
         "--patience", "1000"]


def count_rows(path: str) -> int:
    with open(path, newline="", encoding="utf-8") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def train_and_eval(train: str, test: str, flags: list[str], seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="rnnkit-clf-") as tmp:
        run = f"{tmp}/run"
        done = subprocess.run([str(RNNKIT), "classify", "train", train, "--out", run, "--quiet", "--json",
                               "--threads", "2", "--seed", str(seed), *flags], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"training failed: {done.stderr[-1500:]}")
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        ev = subprocess.run([str(RNNKIT), "classify", "eval", run, test, "--json", "--threads", "2"],
                            capture_output=True, text=True, check=True)
        recipe = json.loads(Path(run, "run.json").read_text()).get("recipe", {})
    return {"test": json.loads(ev.stdout)["accuracy"], "epochs": summary["epochs"], "s": summary["train_time_s"],
            "recipe": recipe.get("reason", "")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="+", help="NAME=TRAIN.csv,TEST.csv")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--label", default="labelled sets at hand")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                    help="also train the recipe with FLAGS on top and report it as NAME (repeatable)")
    ap.add_argument("--no-fixed", dest="fixed", action="store_false", help="leave out the fixed defaults")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    variants = [(v.split("=", 1)[0], shlex.split(v.split("=", 1)[1])) for v in args.variant]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows, notes = [], []
    for spec in args.sets:
        name, paths = spec.split("=", 1)
        train, test = paths.split(",")
        n = count_rows(train)
        steps = max(3 * math.ceil(round(n * 0.8) / 64), 200)
        fixed = [("fixed", FIXED + ["--steps", str(steps)])] if args.fixed else []
        for side, flags in (*fixed, ("recipe", []), *variants):
            results = [train_and_eval(train, test, flags, seed) for seed in seeds]
            accs = [r["test"] for r in results]
            print(name, side, accs, file=sys.stderr, flush=True)
            rows.append([name, f"{n:,}", side, " / ".join(f"{a:.2%}" for a in accs), f"{sum(accs) / len(accs):.2%}",
                         " / ".join(f"{r['epochs']:g}" for r in results),
                         f"{sum(r['s'] for r in results) / len(results):.0f}"])
            if side == "recipe":
                notes.append(f"- {name}: {results[0]['recipe']}")
    text = table(["set", "texts", "side", "test accuracy per seed", "mean", "epochs", "train s (mean)"], rows)
    text += "\n\nThe recipe's choice (seed " + str(seeds[0]) + "):\n\n" + "\n".join(notes)
    print(text)
    if not args.no_write:
        write_section("bench_classifier_recipe_" + re.sub(r"\W+", "_", args.label), f"Classifier recipe: {args.label}",
                      f"Seeds {args.seeds}; "
                      + (f"fixed = `{' '.join(FIXED)} --steps S` (S = max(3 epochs, 200)), " if args.fixed else "")
                      + "recipe = no flags" + "".join(f"; {name} = `{shlex.join(flags)}`" for name, flags in variants)
                      + ".\n\n" + text)


if __name__ == "__main__":
    main()
