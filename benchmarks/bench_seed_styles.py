"""The seeds' training styles vs rnnkit, at the same model size: characters trained per second.

  seed 000   Elman RNN (one-hot input joined with the state, sigmoid, hidden 128), plain SGD lr 0.1, one
             optimizer step per character with ``loss.item()`` each step and the state detached every
             step; on Molière's first 50,000 characters
  seed 002   Embedding 256 -> 1x512 nn.LSTM -> Linear, Adam, random 64 x 40 chunks, the LSTM called once
             per time step in a Python loop (``model(seq_batch[:, c], hidden, cell)``), losses summed over
             the steps

rnnkit trains the same model (elman: scratch cell, one-hot, hidden 128; LSTM: fused, embedding 256, 1x512)
with its ``Trainer`` on consecutive (000) or random (002) batches of its own defaults: 64 x 100 for the
Elman, 64 x 40 for the LSTM. The styles differ in what one character buys (seed 000 backpropagates through
one step only), so this compares throughput, not learning; quality per budget is bench_quality.py's job.

usage: python benchmarks/bench_seed_styles.py [--seconds 8] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from _common import table, write_section

from rnnkit.data.streams import make_batches
from rnnkit.checkpoint import prepare_run_dir
from rnnkit.config import ModelConfig, TrainConfig
from rnnkit.data.corpus import bundled_corpus
from rnnkit.nn.models import CharLM
from rnnkit.training.lm import LMTask
from rnnkit.training.trainer import Trainer
from rnnkit.data.vocab import CharVocab


class Seed000(nn.Module):
    """Mikolov-style Elman net as seed 000 builds it: Linear over [one-hot x, state], sigmoid."""

    def __init__(self, hidden: int, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.hidden_to_hidden = nn.Linear(hidden + vocab, hidden)
        self.hidden_to_output = nn.Linear(hidden, vocab)

    def forward(self, x, state):
        x = torch.cat((F.one_hot(x, self.vocab).float(), state), dim=-1)
        state = torch.sigmoid(self.hidden_to_hidden(x))
        return self.hidden_to_output(state), state.detach()


def seed000(ids: torch.Tensor, vocab: int, seconds: float) -> float:
    model = Seed000(128, vocab)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    state, n, t0 = torch.randn(128) * 0.1, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in range(len(ids) - 1):
            opt.zero_grad()
            y_pred, state = model(ids[i], state)
            loss = F.cross_entropy(y_pred, ids[i + 1])
            loss.item()                               # the seed accumulates a running loss every step
            loss.backward()
            opt.step()
            n += 1
            if n % 256 == 0 and time.perf_counter() - t0 >= seconds:
                break
    return n / (time.perf_counter() - t0)


class Seed002(nn.Module):
    def __init__(self, vocab: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, 256)
        self.rnn = nn.LSTM(256, 512, batch_first=True)
        self.fc = nn.Linear(512, vocab)

    def forward(self, x, hidden, cell):
        out, (hidden, cell) = self.rnn(self.embedding(x).unsqueeze(1), (hidden, cell))
        return self.fc(out).reshape(out.size(0), -1), hidden, cell


def seed002(ids: torch.Tensor, vocab: int, seconds: float) -> float:
    model = Seed002(vocab)
    opt = torch.optim.Adam(model.parameters(), lr=0.005)
    windows = ids.unfold(0, 41, 1)
    g = torch.Generator().manual_seed(0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        chunk = windows[torch.randint(len(windows), (64,), generator=g)]
        x, y = chunk[:, :-1], chunk[:, 1:]
        hidden, cell = torch.zeros(1, 64, 512), torch.zeros(1, 64, 512)
        opt.zero_grad()
        loss = 0
        for c in range(40):
            pred, hidden, cell = model(x[:, c], hidden, cell)
            loss += F.cross_entropy(pred, y[:, c])
        loss.backward()
        opt.step()
        loss.item()
        n += 64 * 40
    return n / (time.perf_counter() - t0)


def rnnkit_rate(ids, vocab: int, model_cfg: ModelConfig, train_cfg: TrainConfig, seconds: float, tmp: str) -> float:
    torch.manual_seed(0)
    model = CharLM(model_cfg)
    n_val = len(ids) // 10
    batches = make_batches(train_cfg.batching, ids[:-n_val], train_cfg.batch_size, train_cfg.seq_len, seed=0)
    task = LMTask(ids[-n_val:], torch.device("cpu"), "fp32", 1000)
    trainer = Trainer(model, task, batches, train_cfg, prepare_run_dir(tmp, overwrite=True), torch.device("cpu"),
                      quiet=True, log=lambda msg: None)
    trainer.fit()
    return trainer.progress.units / trainer.progress.train_time   # the Trainer's own clock: evaluation excluded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0, help="training time per contender")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    text = bundled_corpus("moliere")
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text).long()
    v, s = len(vocab), args.seconds
    common = dict(eval_every=None, eval_every_s=None, eval_chars=1000, device="cpu", time_budget=s, warmup_steps=0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rnnkit-styles-") as tmp:
        a = seed000(ids[:50_000], v, s)
        b = rnnkit_rate(ids[:50_000], v, ModelConfig(vocab_size=v, cell="elman", embed_size=0, hidden_size=128,
                                                     num_layers=1),
                        TrainConfig(optimizer="sgd", lr=0.1, schedule="constant", clip=0.0, **common), s, tmp + "/a")
        rows.append(["seed 000: Elman 1x128, one-hot, SGD, 1 char per step", a, b, f"{b / a:.1f}x"])
        print(rows[-1], file=sys.stderr, flush=True)
        c = seed002(ids, v, s)
        d = rnnkit_rate(ids, v, ModelConfig(vocab_size=v, cell="lstm", embed_size=256, hidden_size=512, num_layers=1),
                        TrainConfig(batching="random", seq_len=40, lr=0.005, **common), s, tmp + "/b")
        rows.append(["seed 002: LSTM 1x512, emb 256, 64x40, per-step loop", c, d, f"{d / c:.1f}x"])
        print(rows[-1], file=sys.stderr, flush=True)
    text_table = table(["style (same model in rnnkit)", "seed chars/s", "rnnkit chars/s", "rnnkit / seed"], rows)
    print(text_table)
    if not args.no_write:
        body = (f"Characters trained per second, {s:g} s of training each, on Molière (bundled), 2 threads. rnnkit: "
                f"the same model through `Trainer` (consecutive 64x100 batches for the Elman net, with backpropagation "
                f"through 100 steps where the seed goes through one; random 64x40 chunks for the LSTM, one fused call "
                f"per batch where the seed calls the layer once per time step).\n\n" + text_table)
        write_section("bench_seed_styles", "The seeds' training styles vs rnnkit", body)


if __name__ == "__main__":
    main()
