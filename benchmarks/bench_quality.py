"""Quality per budget: best validation loss after BUDGET_S seconds of training, rnnkit vs the plain trainer.

Runs, one after the other (never side by side: each wants both cores),

  plain     ../shared/bench/plain_lstm_trainer.py CORPUS  (2x384 LSTM, embedding 128, dropout 0.2, Adam 2e-3
            with cosine decay, clip 1.0, consecutive 64x100 batches; its last 10% held out)
  fixed     rnnkit train CORPUS --time-budget BUDGET_S with the fixed recipe rnnkit used before it chose
            recipes from the budget and the data (2x256 GRU, embedding 64, no dropout, lr 5e-3, or 1e-3
            for alphabets of over 1,000 symbols; FIXED below)
  rnnkit    rnnkit train CORPUS --time-budget BUDGET_S [FLAGS]  (rnnkit's defaults, its recipe chosen
            from the budget, the corpus and a speed probe, unless flags are given after --; its last
            10% held out, the same split)

Both budgets count training time only (evaluation excluded). The loss is nats per character on the whole
held-out tail: the plain trainer's best periodic evaluation, rnnkit's final evaluation of its best weights.
Takes about 2 x BUDGET_S plus evaluation: run it under the CPU lock, e.g.

    BUDGET_S=600 flock /tmp/rnnkit-cpu.lock python benchmarks/bench_quality.py ../shared/data/tinyshakespeare.txt
    BUDGET_S=600 flock /tmp/rnnkit-cpu.lock python benchmarks/bench_quality.py ../shared/data/moliere.txt -- \\
        --hidden-size 512 --dropout 0.1

usage: bench_quality.py CORPUS [--label NAME] [--only plain,fixed,rnnkit] [--no-write] [-- RNNKIT TRAIN FLAGS...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, SHARED, table, write_section

from rnnkit.runs import load

PLAIN = SHARED / "bench" / "plain_lstm_trainer.py"
FIXED = ["--cell", "gru", "--layers", "2", "--hidden-size", "256", "--embed-size", "64", "--dropout", "0",
         "--batch-size", "64", "--seq-len", "50"]      # and --lr 5e-3 (1e-3 above 1,000 symbols): fixed_flags
CONTESTANTS = ("plain", "fixed", "rnnkit")


def fixed_flags(corpus: str) -> list[str]:
    symbols = len(set(Path(corpus).read_text(encoding="utf-8")))
    return FIXED + ["--lr", "1e-3" if symbols > 1000 else "5e-3"]


def last_json(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON summary in the output:\n" + stdout[-2000:])


def run_plain(corpus: str, budget: float) -> dict:
    env = dict(os.environ, BUDGET_S=str(budget))
    done = subprocess.run([sys.executable, str(PLAIN), corpus], env=env, capture_output=True, text=True, check=True)
    r = last_json(done.stdout)
    return {"best_val": r["best_val_nats"], "steps": r["steps"], "chars_per_s": r["train_chars_per_s"],
            "train_s": r["train_time_s"], "what": r["model"]}


def run_rnnkit(corpus: str, budget: float | None, flags: list[str]) -> dict:
    """``rnnkit train CORPUS FLAGS`` for ``budget`` seconds of training (None: the budget is in FLAGS)."""
    rnnkit = Path(sys.executable).with_name("rnnkit")
    with tempfile.TemporaryDirectory(prefix="rnnkit-quality-") as tmp:
        cmd = [str(rnnkit), "train", corpus, *(["--time-budget", f"{budget:g}s"] if budget else []),
               "--out", f"{tmp}/run", "--quiet", "--json", "--threads", "2", *flags]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = last_json(done.stdout)
        run = json.loads(Path(tmp, "run", "run.json").read_text())
        params = load(Path(tmp, "run")).model.num_parameters()
    m, t = run["model"], run["train"]
    return {"best_val": r["val_nats_per_char"], "steps": r["step"], "chars_per_s": r["chars_per_s"],
            "train_s": r["train_time_s"], "params": params,
            "what": f"{m['num_layers']}x{m['hidden_size']} {m['cell']} emb{m['embed_size']} dropout {m['dropout']:g} "
                    f"lr {t['lr']:g}", "recipe": run.get("recipe", {}).get("reason", "")}


def quality_parser(doc: str) -> tuple[argparse.ArgumentParser, list[str], list[str]]:
    """The options every quality benchmark takes (CORPUS, --label, --no-write), the command line before
    ``--`` and the rnnkit train flags after it."""
    argv = sys.argv[1:]
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", help="UTF-8 text file")
    ap.add_argument("--label", help="section name in docs/benchmarks.md (default: the file's name)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    return ap, argv, flags


def shown_path(corpus: str) -> str:
    """The corpus as the docs name it: relative to the repository where it is near (``../shared``)."""
    return os.path.relpath(corpus, ROOT) if Path(corpus).is_relative_to(ROOT.parent) else corpus


def main() -> None:
    ap, argv, flags = quality_parser(__doc__)
    ap.add_argument("--only", type=lambda s: s.split(","), default=list(CONTESTANTS),
                    help="comma-separated contestants to run: plain, fixed, rnnkit (default all three)")
    args = ap.parse_args(argv)
    budget = float(os.environ.get("BUDGET_S", 600))
    corpus = str(Path(args.corpus).resolve())
    label = args.label or Path(corpus).stem
    unknown = sorted(set(args.only) - set(CONTESTANTS))
    if unknown:
        ap.error(f"--only: unknown contestant(s) {', '.join(unknown)}; choose from {', '.join(CONTESTANTS)}")
    results = {}
    if "plain" in args.only:
        results["plain trainer"] = run_plain(corpus, budget)
        print("plain", results["plain trainer"], file=sys.stderr, flush=True)
    if "fixed" in args.only:
        results["rnnkit, fixed recipe"] = run_rnnkit(corpus, budget, fixed_flags(corpus))
        print("fixed", results["rnnkit, fixed recipe"], file=sys.stderr, flush=True)
    if "rnnkit" in args.only:
        results["rnnkit"] = run_rnnkit(corpus, budget, flags)
        print("rnnkit", results["rnnkit"], file=sys.stderr, flush=True)
    rows = [[name, r["what"], f"{r['best_val']:.4f}", r["steps"], r["chars_per_s"], r["train_s"]]
            for name, r in results.items()]
    text = table(["trainer", "model / recipe", "best val nats/char", "steps", "train chars/s", "train s"], rows)
    if "rnnkit" in results and results["rnnkit"]["recipe"]:
        text += f"\n\nrnnkit's recipe: {results['rnnkit']['recipe']}"
    print(text)
    if not args.no_write:
        body = (f"Corpus `{shown_path(corpus)}` (last 10% held out), training budget {budget:g} s "
                f"(evaluation not counted). rnnkit flags: `{shlex.join(flags) or '(defaults)'}`; the fixed recipe: "
                f"`{shlex.join(fixed_flags(corpus))}`.\n\n" + text)
        write_section("bench_quality_" + re.sub(r"\W+", "_", label), f"Quality per budget: {label}, {budget:g} s", body)


if __name__ == "__main__":
    main()
