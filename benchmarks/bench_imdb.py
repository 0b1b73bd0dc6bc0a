"""IMDb: training time per epoch with seed 002's batches (shuffled, padded to the longest review) against
rnnkit's length-bucketed batches, on the same model, side by side in one process.

Both sides train seed 002's classifier (embedding 20, one LSTM layer of 64, ReLU layer of 64, last valid
state, Adam 1e-3, batches of 32, whole reviews, every word in the vocabulary) with rnnkit's Trainer; only the
batch plan differs (``--bucket 0`` vs the default 50). Each round times STEPS steps of each side, in turn;
the time per epoch is the median seconds per step times the steps in an epoch. Batches differ in length
from step to step, so give it enough steps (the default 60 per round is about 10 s of the seed's side).

usage: python benchmarks/bench_imdb.py PATH/TO/aclImdb_v1.tar.gz [--steps 60] [--rounds 3] [--threads 1]
                                       [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from _common import table, write_section

from rnnkit.data.labelled import prepare_data
from rnnkit.data.padded import BucketBatches
from rnnkit.training.classifier import ClassifyTask
from rnnkit.config import ClassifierConfig, TextDataConfig, TrainConfig
from rnnkit.nn.models import SequenceClassifier
from rnnkit.training.trainer import make_optimizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", help="aclImdb_v1.tar.gz or the unpacked aclImdb directory")
    ap.add_argument("--steps", type=int, default=60, help="timed steps per side per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if not Path(args.path).exists():
        sys.exit(f"bench_imdb.py: {args.path} does not exist (give the path to aclImdb_v1.tar.gz)")
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    data_cfg = TextDataConfig(path=args.path, min_freq=1, max_vocab=None, max_tokens=None)
    data = prepare_data(data_cfg, seed=1)
    print(f"read and encoded {len(data.train_seqs):,} training reviews in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    model_cfg = ClassifierConfig(vocab_size=len(data.vocab), num_classes=len(data.labels), cell="lstm",
                                 embed_size=20, hidden_size=64, head_hidden=64, pooling="last", dropout=0.0)
    train_cfg = TrainConfig(batch_size=32, optimizer="adam", lr=1e-3, schedule="constant", clip=0.0)
    task = ClassifyTask(data.val_seqs, data.val_labels, torch.device("cpu"), "fp32")

    sides = {}
    for name, bucket in (("seed 002: shuffled, padded to the longest", 0), ("rnnkit: bucketed by length", 50)):
        torch.manual_seed(0)
        model = SequenceClassifier(model_cfg)
        batches = BucketBatches(data.train_seqs, data.train_labels, 32, bucket=bucket, seed=1)
        sides[name] = (model, make_optimizer(model.parameters(), train_cfg), batches, [], [])

    def run(model, opt, batches, n: int) -> tuple[float, int, int]:
        padded = real = 0
        start = time.perf_counter()
        for _ in range(n):
            batch = next(batches)
            loss = task.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            padded += batch.tokens.numel()
            real += int(batch.lengths.sum())
        return time.perf_counter() - start, padded, real

    for model, opt, batches, _, _ in sides.values():
        run(model, opt, batches, 3)                                 # warm-up
    for _ in range(args.rounds):
        for model, opt, batches, secs, pads in sides.values():
            s, padded, real = run(model, opt, batches, args.steps)
            secs.append(s / args.steps)
            pads.append(padded / real)
    steps_per_epoch = next(iter(sides.values()))[2].steps_per_epoch
    rows = []
    for name, (_, _, _, secs, pads) in sides.items():
        per_step = statistics.median(secs)
        rows.append([name, f"{per_step * 1000:.0f} ms", f"{statistics.median(pads):.2f}x",
                     f"{per_step * steps_per_epoch:.0f} s"])
    base = statistics.median(next(iter(sides.values()))[3])
    for row, (_, _, _, secs, _) in zip(rows, sides.values()):
        row.append(f"{base / statistics.median(secs):.2f}x")
    text = table(["batches", "per step", "padded / real words", f"per epoch ({steps_per_epoch} steps)",
                  "speed-up"], rows)
    print(text)
    if not args.no_write:
        body = (f"Seed 002's classifier (embedding 20, LSTM 64, ReLU 64, last state; "
                f"{sum(p.numel() for p in next(iter(sides.values()))[0].parameters()):,} parameters) on the "
                f"{len(data.train_seqs):,} training reviews of aclImdb (whole reviews, full vocabulary), batches "
                f"of 32, Adam 1e-3, {args.threads} thread(s). {args.rounds} alternating rounds of {args.steps} "
                f"steps per side; medians. The seed's own code (a separate faithful port, not run here) took "
                f"about 300 s per epoch on this machine.\n\n" + text)
        write_section("bench_imdb", "IMDb: time per epoch, seed 002's batches vs rnnkit's", body)


if __name__ == "__main__":
    main()
