"""rnnkit against another version of itself, side by side: training-loop speed, batch-1 generation speed,
and whether the same seed gives the same samples.

Each version runs in its own process (``python -c`` with that version's ``src`` first on sys.path), the
processes alternate A B A B, and only the public API is used (``rnnkit.train``, ``CharLM``, ``generate``),
which every version has. The other version is usually a ``git worktree`` of an older commit:

    git worktree add /tmp/rnnkit-old <commit>
    python benchmarks/bench_versions.py --other /tmp/rnnkit-old [--rounds 3]

Measured per process, on one bundled corpus (Tiny Shakespeare's first 300,000 characters):
  train     chars/s of ``rnnkit.train`` over --steps steps of the default 2x256 GRU, 64x50 batches
            (training time only, as the run's summary reports it; evaluation is not counted)
  generate  chars/s of one 2,000-character sample from a 2x512 LSTM (random weights, the fast batch-1 path)
  samples   a digest of samples for fixed seeds (batch 1 and 2, temperature 1 and 0): equal means the same text
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _common import ROOT, table, write_section

WORKER = r'''
import hashlib, json, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(int(sys.argv[3]))
import rnnkit
from rnnkit import CharLM, CharVocab, DataConfig, ModelConfig, SampleConfig, TrainConfig, generate, train
steps = int(sys.argv[2])
with tempfile.TemporaryDirectory() as d:
    summary = train(DataConfig(corpus="shakespeare", limit_chars=300_000), ModelConfig(),
                    TrainConfig(steps=steps, eval_every=steps, eval_chars=2_000, seed=1, device="cpu"),
                    d + "/run", quiet=True, log=lambda m: None)
vocab = CharVocab([chr(c) for c in range(32, 127)] + ["\n"])
torch.manual_seed(0)
model = CharLM(ModelConfig(vocab_size=len(vocab), cell="lstm", hidden_size=512, embed_size=64)).eval()
generate(model, vocab, SampleConfig(prompt="The ", length=50, seed=1))                  # warm up
t0 = time.perf_counter()
generate(model, vocab, SampleConfig(prompt="The ", length=2000, seed=2))
gen = 2000 / (time.perf_counter() - t0)
small = CharLM(ModelConfig(vocab_size=len(vocab), cell="gru", hidden_size=64, embed_size=16)).eval()
texts = [generate(m, vocab, SampleConfig(prompt="The ", length=300, seed=s, num_samples=n, temperature=t))
         for m in (model, small) for s in (1, 2) for n in (1, 2) for t in (1.0, 0.0)]
print(json.dumps({"train": summary["chars_per_s"], "generate": gen,
                  "samples": hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:12],
                  "version": rnnkit.__version__, "src": rnnkit.__file__}))
'''


def measure(src: Path, steps: int, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKER, str(src), str(steps), str(threads)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--other", required=True, help="the other version's checkout (its src/ is used)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60, help="training steps per measurement")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    other = Path(args.other).resolve()
    commit = subprocess.run(["git", "-C", str(other), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or other.name
    here = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    sources = {f"this ({here})": ROOT / "src", f"other ({commit})": other / "src"}
    seen: dict[str, list[dict]] = {name: [] for name in sources}
    for r in range(args.rounds):
        for name, src in sources.items():
            seen[name].append(measure(src, args.steps, args.threads))
            print(name, seen[name][-1], flush=True)
    med = {name: {k: statistics.median(m[k] for m in ms) for k in ("train", "generate")} for name, ms in seen.items()}
    digests = {name: {m["samples"] for m in ms} for name, ms in seen.items()}
    (a, b) = sources
    rows = [[name, med[name]["train"], med[name]["generate"], ", ".join(sorted(digests[name]))] for name in sources]
    rows.append(["this / other", med[a]["train"] / med[b]["train"], med[a]["generate"] / med[b]["generate"],
                 "same samples" if digests[a] == digests[b] and len(digests[a]) == 1 else "SAMPLES DIFFER"])
    body = (f"Medians of {args.rounds} alternating rounds, one process per measurement, {args.threads} threads.\n\n"
            + table(["version", "train chars/s", "generate chars/s (batch 1)", "sample digest"], rows))
    print(body)
    if not args.no_write:
        write_section("versions", "Side by side, in alternating processes", body)


if __name__ == "__main__":
    main()
