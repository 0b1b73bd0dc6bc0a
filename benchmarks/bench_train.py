"""Training throughput: rnnkit's Trainer vs a bare PyTorch loop on the same model, batches and optimizer.

The bare loop is /work/shared/bench/bare_lstm.py's (Embedding -> nn.LSTM/GRU/RNN -> Linear, Adam, clip 1.0,
consecutive 64x100 batches with the state carried and detached), written here as a function so both run in
one process on the same encoded text, alternating A B A B. rnnkit runs its real ``Trainer`` with the
char-LM ``LMTask`` and ``ConsecutiveBatches``; the timed window runs from the first step after the warm-up
to the end of the last step and includes everything the loop does per step (learning-rate schedule,
batching, progress bar, loss bookkeeping), but not the single evaluation and checkpoint that ``fit`` makes
when its step budget is spent.

usage: python benchmarks/bench_train.py [--cells lstm,gru,rnn] [--sizes 256,512] [--precisions fp32,bf16]
                                        [--steps 10] [--warmup 2] [--rounds 2] [--device cpu|cuda]
                                        [--batch 64] [--no-write]
On a GPU, time more steps (the clock is read after torch.cuda.synchronize()), e.g.
    python benchmarks/bench_train.py --device cuda --steps 200 --warmup 20 --rounds 3
Each --cells selection writes its own section of docs/benchmarks.md; on a busy 2-core machine run one
cell at a time (about two minutes each):  for c in lstm gru rnn; do flock /tmp/rnnkit-cpu.lock python
benchmarks/bench_train.py --cells $c; done
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from _common import table, write_section

from rnnkit.data.streams import ConsecutiveBatches
from rnnkit.checkpoint import prepare_run_dir
from rnnkit.config import ModelConfig, TrainConfig
from rnnkit.data.corpus import bundled_corpus
from rnnkit.nn.models import CharLM
from rnnkit.training.lm import LMTask
from rnnkit.training.trainer import Trainer
from rnnkit.data.vocab import CharVocab

EMBED, LAYERS, SEQ, LR = 256, 2, 100, 2e-3
BATCH = 64                       # --batch changes it


class BareLM(nn.Module):
    """bare_lstm.py's model; parameter names follow CharLM's so the same initial weights load into both."""

    def __init__(self, cell: str, vocab: int, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, EMBED)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](EMBED, hidden, LAYERS, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

        self.fp32_rnn = False      # set when this CPU cannot run the layer in bf16 (see rnn_in_fp32)

    def forward(self, x, h):
        e = self.embed(x)
        if self.fp32_rnn:
            with torch.autocast("cpu", enabled=False):
                o, h = self.rnn(e.float(), h)
        else:
            o, h = self.rnn(e, h)
        return self.head(o), h


def rnn_in_fp32(model: BareLM, vocab: int, device: torch.device) -> bool:
    """True if the recurrent layer fails under CPU bf16 autocast, as nn.LSTM does on CPUs without
    AVX512-BF16 (oneDNN: "could not create a primitive descriptor"); the bare loop then keeps that layer in
    fp32, as rnnkit does, and the table says so."""
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16), torch.no_grad():
            model(torch.zeros(2, 3, dtype=torch.long, device=device) % vocab, None)
        return False
    except RuntimeError:
        return True


def precision_ctx(precision: str, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Bare:
    """bare_lstm.py's loop, resumable across timed runs (the state and the position carry on)."""

    def __init__(self, model: BareLM, data: torch.Tensor, precision: str, device: torch.device):
        self.model, self.precision, self.device = model, precision, device
        self.opt = torch.optim.Adam(model.parameters(), lr=LR)
        n = (len(data) - 1) // BATCH
        self.n = n
        self.x_all = data[: n * BATCH].long().view(BATCH, n).to(device)
        self.y_all = data[1: n * BATCH + 1].long().view(BATCH, n).to(device)
        self.h, self.step = None, 0

    def run(self, steps: int) -> float:
        model, opt, v = self.model, self.opt, self.model.head.out_features
        sync(self.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            i = (self.step * SEQ) % (self.n - SEQ)
            x, y = self.x_all[:, i: i + SEQ], self.y_all[:, i: i + SEQ]
            with precision_ctx(self.precision, self.device):
                logits, h = model(x, self.h)
                loss = F.cross_entropy(logits.reshape(-1, v), y.reshape(-1))
            self.h = h.detach() if isinstance(h, torch.Tensor) else tuple(t.detach() for t in h)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            self.step += 1
        loss.item()
        sync(self.device)
        return time.perf_counter() - t0


class _Clocked:
    """The batch iterator, noting when the timed window opens (at the request of batch ``start``)."""

    def __init__(self, batches, start: int, device: torch.device):
        self.batches, self.start, self.count, self.t0, self.device = batches, start, 0, None, device

    def __iter__(self):
        return self

    def __next__(self):
        if self.count == self.start:
            sync(self.device)
            self.t0 = time.perf_counter()
        self.count += 1
        return next(self.batches)

    def __getattr__(self, name):
        return getattr(self.batches, name)


def rnnkit_run(model: CharLM, data: torch.Tensor, val: torch.Tensor, precision: str, warmup: int,
               steps: int, run_dir: Path, device: torch.device) -> float:
    """Seconds for ``steps`` Trainer steps after ``warmup`` untimed ones (a fresh Trainer each run)."""
    cfg = TrainConfig(batch_size=BATCH, seq_len=SEQ, optimizer="adam", lr=LR, precision=precision,
                      steps=warmup + steps, eval_every=None, eval_every_s=None, eval_chars=SEQ * 2,
                      device=device.type)
    batches = _Clocked(ConsecutiveBatches(data, BATCH, SEQ, seed=0), warmup, device)
    task = LMTask(val, device, precision, cfg.eval_chars)
    trainer = Trainer(model, task, batches, cfg, prepare_run_dir(run_dir, overwrite=True), device,
                      total_steps=warmup + steps, quiet=True, log=lambda msg: None)
    ended = {}
    evaluate = trainer._evaluate

    def clocked_evaluate(*a, **k):               # fit() calls it once, when the step budget is spent
        sync(device)
        ended.setdefault("t", time.perf_counter())
        return evaluate(*a, **k)
    trainer._evaluate = clocked_evaluate
    trainer.fit()
    return ended["t"] - batches.t0


def main() -> None:
    global BATCH
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", default="lstm,gru,rnn")
    ap.add_argument("--sizes", default="256,512", help="hidden sizes (2 layers each)")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before each run")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (A B A B); medians reported")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--batch", type=int, default=BATCH, help="sequences per batch (64, as bare_lstm.py)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    BATCH = args.batch
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_train.py: --device cuda but PyTorch sees no CUDA GPU here")

    text = bundled_corpus("moliere")
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    n_val = len(ids) // 10
    train_ids, val_ids = ids[:-n_val], ids[-n_val:]
    chars = args.steps * BATCH * SEQ
    rows = []
    with tempfile.TemporaryDirectory(prefix="rnnkit-bench-") as tmp:
        for cell in args.cells.split(","):
            for hidden in (int(s) for s in args.sizes.split(",")):
                for precision in args.precisions.split(","):
                    torch.manual_seed(0)
                    model = CharLM(ModelConfig(vocab_size=len(vocab), cell=cell, embed_size=EMBED,
                                               hidden_size=hidden, num_layers=LAYERS)).to(device)
                    bare_model = BareLM(cell, len(vocab), hidden).to(device)
                    bare_model.load_state_dict(model.state_dict())
                    note = ""
                    if precision == "bf16" and rnn_in_fp32(bare_model, len(vocab), device):
                        bare_model.fp32_rnn = True
                        note = "*"
                    bare = Bare(bare_model, train_ids, precision, device)
                    bare.run(args.warmup)
                    rates: dict[str, list[float]] = {"bare": [], "rnnkit": []}
                    for r in range(args.rounds):
                        rates["bare"].append(chars / bare.run(args.steps))
                        rates["rnnkit"].append(chars / rnnkit_run(model, train_ids, val_ids, precision, args.warmup,
                                                                  args.steps, Path(tmp) / f"run{r}", device))
                    b, k = statistics.median(rates["bare"]), statistics.median(rates["rnnkit"])
                    rows.append([f"2x{hidden} {cell}", precision + note, b, k, f"{k / b:.3f}x"])
                    print(rows[-1], [round(x) for x in rates["bare"]], [round(x) for x in rates["rnnkit"]],
                          file=sys.stderr, flush=True)
    # bf16 speed-up over fp32, per contender, where both precisions were measured.
    fp32 = {(r[0]): r for r in rows if r[1] == "fp32"}
    for r in rows:
        if r[1].startswith("bf16") and r[0] in fp32:
            r.append(f"bare {r[2] / fp32[r[0]][2]:.2f}x, rnnkit {r[3] / fp32[r[0]][3]:.2f}x")
        else:
            r.append("")
    text_table = table(["model", "precision", "bare chars/s", "rnnkit chars/s", "rnnkit / bare", "bf16 / fp32"], rows)
    print(text_table)
    if not args.no_write:
        body = (f"Training throughput on Molière (bundled corpus), embedding {EMBED}, batch {BATCH} x seq {SEQ}, "
                f"Adam lr {LR:g}, clip 1.0, {args.threads} threads; {args.rounds} alternating rounds of {args.steps} "
                f"steps after {args.warmup} warm-up steps, medians. *bare*: the loop of "
                f"`../shared/bench/bare_lstm.py`; *rnnkit*: `Trainer.fit` with `LMTask` and `ConsecutiveBatches` "
                f"(final evaluation and checkpoint excluded). bf16 = {device.type.upper()} autocast to bfloat16."
                + (" On the GPU both use cuDNN's fused RNN kernels; the clock is read after "
                   "`torch.cuda.synchronize()`." if device.type == "cuda" else "")
                + ("\n\n\\* bare `nn.LSTM` fails under bf16 autocast on this CPU (oneDNN has no bf16 LSTM primitive "
                   "without AVX512-BF16: \"could not create a primitive descriptor\"); the bare loop keeps the "
                   "recurrent layer in fp32 there, as rnnkit's fused LSTM does." if any("*" in r[1] for r in rows) else "")
                + "\n\n" + text_table)
        # One section per selection of cells, so that the cells can be measured in separate short runs.
        where = "" if device.type == "cpu" else f", {device.type.upper()}"
        suffix = "" if device.type == "cpu" and BATCH == 64 else f"_{device.type}_b{BATCH}"
        write_section(f"bench_train_{args.cells.replace(',', '_')}{suffix}",
                      f"Training throughput: rnnkit Trainer vs bare PyTorch ({args.cells}{where}, batch {BATCH})", body)


if __name__ == "__main__":
    main()
