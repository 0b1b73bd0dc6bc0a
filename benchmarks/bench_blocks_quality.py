"""Quality per budget of the scan blocks against the GRU: best validation loss after BUDGET_S seconds of
``rnnkit train CORPUS --time-budget BUDGET_S --cell CELL``, each cell with the recipe rnnkit chooses for it
(its width from its probed speed), one after the other (never side by side: each wants both cores).

    BUDGET_S=600 python benchmarks/bench_blocks_quality.py ../shared/data/tinyshakespeare.txt [--cells gru,mingru,rglru]
        [--label NAME] [-- MORE RNNKIT TRAIN FLAGS]

Takes about (number of cells) x BUDGET_S plus evaluation.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

from _common import table, write_section
from bench_quality import quality_parser, run_rnnkit, shown_path


def main() -> None:
    ap, argv, flags = quality_parser(__doc__)
    ap.add_argument("--cells", default="gru,mingru,rglru", help="comma-separated cells (default %(default)s)")
    args = ap.parse_args(argv)
    budget = float(os.environ.get("BUDGET_S", 600))
    corpus = str(Path(args.corpus).resolve())
    label = args.label or Path(corpus).stem
    results = {}
    for cell in args.cells.split(","):
        results[cell] = run_rnnkit(corpus, budget, ["--cell", cell, *flags])
        print(cell, results[cell], file=sys.stderr, flush=True)
    rows = [[cell, r["what"], f"{r['params']:,}", f"{r['best_val']:.4f}", r["steps"], r["chars_per_s"], r["train_s"]]
            for cell, r in results.items()]
    text = table(["cell", "model / recipe", "parameters", "best val nats/char", "steps", "train chars/s",
                  "train s"], rows)
    text += "\n\nRecipes:\n\n" + "\n".join(f"- {cell}: {r['recipe']}" for cell, r in results.items())
    print(text)
    if not args.no_write:
        body = (f"Corpus `{shown_path(corpus)}` (last 10% held out), training budget "
                f"{budget:g} s (evaluation not counted), one run per cell, seed 0; extra flags: "
                f"`{shlex.join(flags) or '(none)'}`.\n\n" + text)
        write_section("bench_blocks_quality_" + re.sub(r"\W+", "_", label),
                      f"Scan blocks against the GRU: {label}, {budget:g} s", body)


if __name__ == "__main__":
    main()
