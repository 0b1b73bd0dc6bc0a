"""Weight averages against the raw weights on one training trajectory.

    python benchmarks/bench_average.py CORPUS --gammas 4,8 --label NAME [-- RNNKIT TRAIN FLAGS]

Runs ``rnnkit train`` on CORPUS with the given flags and ``--ema 0`` (the run itself keeps the raw weights),
while rnnkit's own ``WeightAverage`` follows the same parameters for every gamma of ``--gammas``. At each
of the run's evaluations every average is put in place of the weights and scored on the same validation
characters. So each column is the same run, the same steps and the same data order: the difference is the
average alone. The averages' updates are counted in the training time (the raw weights take their steps in
that time too).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from _common import table, write_section
from bench_quality import quality_parser, shown_path

import rnnkit
from rnnkit import checkpoint as ckpt
from rnnkit.training import lm, trainer

ROWS: list[dict] = []


def install(gammas: list[float]) -> None:
    """Follow the run's parameters with one WeightAverage per gamma, and score them at every evaluation."""
    averages: dict[float, trainer.WeightAverage] = {}
    step, evaluate = trainer.Trainer._train_step, lm.LMTask.evaluate

    def train_step(self, step_model, params, window):
        step(self, step_model, params, window)
        t0 = trainer.time.perf_counter()
        if not averages:
            averages.update({g: trainer.WeightAverage(params, g) for g in gammas})
        for a in averages.values():
            a.update(self.progress.step)
        self.progress.train_time += trainer.time.perf_counter() - t0

    def scored(self, model):
        out = evaluate(self, model)
        row = {"raw": out["val_loss"]}
        for g, a in averages.items():
            with a.applied():
                row[g] = evaluate(self, model)["val_loss"]
        ROWS.append(row)
        print("averages:", {k: round(v, 4) for k, v in row.items()}, file=sys.stderr, flush=True)
        return out

    trainer.Trainer._train_step, lm.LMTask.evaluate = train_step, scored


def main() -> None:
    ap, argv, flags = quality_parser(__doc__)
    ap.add_argument("--gammas", default="4,8", help="comma-separated gammas of the averages (default 4,8)")
    ap.add_argument("--out", default="runs/bench_average", help="run directory (replaced)")
    args = ap.parse_args(argv)
    label = args.label or Path(args.corpus).stem
    gammas = [float(g) for g in args.gammas.split(",")]
    corpus = str(Path(args.corpus).resolve())
    install(gammas)
    code = rnnkit.main(["train", corpus, *flags, "--ema", "0", "--out", args.out, "--overwrite",
                        "--quiet", "--threads", "2"])
    if code or not ROWS:
        sys.exit(f"training failed (exit {code})")
    run = ckpt.read_metrics(args.out)
    names = ["raw"] + gammas
    rows = [[r["step"], f"{r['elapsed_s']:.0f}"] + [f"{row[n]:.4f}" for n in names] for r, row in zip(run, ROWS)]
    rows.append(["best", ""] + [f"{min(row[n] for row in ROWS):.4f}" for n in names])
    text = table(["step", "train s", "raw weights"] + [f"average, ema {g:g}" for g in gammas], rows)
    recipe = json.loads((Path(args.out) / "run.json").read_text()).get("recipe", {}).get("reason", "(all given)")
    print(text)
    if not args.no_write:
        body = (f"Corpus `{shown_path(corpus)}` (last 10% held out), validation loss in nats/char at each "
                f"evaluation of one run; rnnkit train flags `{' '.join(flags) or '(none)'}` with `--ema 0`.\n\n"
                f"Recipe: {recipe}\n\n" + text)
        write_section("bench_average_" + re.sub(r"\W+", "_", label), f"Weight averages: {label}", body)


if __name__ == "__main__":
    main()
