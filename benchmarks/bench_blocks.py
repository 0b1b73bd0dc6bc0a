"""minGRU and RG-LRU blocks against the GRU of about the same parameter count: training characters per second at
sequence lengths 50, 200 and 1,000, and batch-1 generation, side by side, alternating A B A B.

    python benchmarks/bench_blocks.py [--steps 6] [--rounds 2] [--seq-lens 50,200,1000] [--device cpu] [--gen-chars 2000] [--chars 3200]

A training step is rnnkit's: a CharLM forward over (B, T) characters with the carried state, the
cross-entropy, backward, gradient clipping and an Adam step; B·T is about ``--chars`` (3,200) characters at every length
(64x50, 16x200, 3x1,000). minGRU runs its
parallel scan (``--backend fused``) and its loop (``--backend scratch``), and so does RG-LRU.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

from _common import alternate, table, write_section

from rnnkit.config import ModelConfig, SampleConfig
from rnnkit.data.corpus import bundled_corpus
from rnnkit.data.vocab import CharVocab
from rnnkit.inference.sampling import generate
from rnnkit.nn.models import CharLM

CHARS = 3200
MODELS = {                       # about 0.6 M parameters each (65 symbols, embedding 64)
    "gru 2x256": dict(cell="gru", hidden_size=256, num_layers=2, embed_size=64),
    "mingru 2x160, scan": dict(cell="mingru", hidden_size=160, num_layers=2, embed_size=64, backend="fused"),
    "mingru 2x160, loop": dict(cell="mingru", hidden_size=160, num_layers=2, embed_size=64, backend="scratch"),
    "rglru 2x136, scan": dict(cell="rglru", hidden_size=136, num_layers=2, embed_size=64, backend="fused"),
    "rglru 2x136, loop": dict(cell="rglru", hidden_size=136, num_layers=2, embed_size=64, backend="scratch"),
}


def trainer(model: CharLM, ids: torch.Tensor, seq: int, steps: int, chars: int = CHARS):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = max(1, chars // seq)
    x = ids[:batch * seq].view(batch, seq)
    y = ids[1:batch * seq + 1].view(batch, seq)

    def run() -> float:
        state = None
        t0 = time.perf_counter()
        for _ in range(steps):
            logits, state = model(x, state)
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        if ids.is_cuda:
            torch.cuda.synchronize()                   # the clock stops when the GPU is done
        return steps * batch * seq / (time.perf_counter() - t0)
    run()                                              # warm-up: first calls, allocator
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seq-lens", default="50,200,1000")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gen-chars", type=int, default=2000, help="characters per generation round")
    ap.add_argument("--chars", type=int, default=CHARS, help="characters per training step (batch x seq len)")
    args = ap.parse_args()
    text = bundled_corpus("shakespeare")[:200_000]
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text).long().to(args.device)
    models = {}
    for name, m in MODELS.items():
        torch.manual_seed(0)
        models[name] = CharLM(ModelConfig(vocab_size=len(vocab), **m)).to(args.device)
    params = {name: m.num_parameters() for name, m in models.items()}
    rows = []
    for seq in [int(s) for s in args.seq_lens.split(",")]:
        rates = alternate({name: trainer(m, ids, seq, args.steps, args.chars) for name, m in models.items()}, args.rounds)
        base = rates["gru 2x256"]
        rows += [[name, f"{params[name]:,}", seq, f"{max(1, args.chars // seq)}x{seq}", round(rate),
                  f"{rate / base:.2f}x"] for name, rate in rates.items()]
        print(rows[-len(MODELS):], flush=True)
    gen = {}
    for name, m in models.items():
        m.eval()
        for fast in (True, False):
            def sample(m=m, fast=fast) -> float:
                cfg = SampleConfig(prompt="ROMEO:", length=args.gen_chars, seed=1)
                t0 = time.perf_counter()
                generate(m, vocab, cfg, fast=fast)
                return args.gen_chars / (time.perf_counter() - t0)
            sample()                                       # warm-up
            gen[(name, fast)] = sample
    gen = alternate(gen, args.rounds)
    base_gen = gen[("gru 2x256", True)]
    body = ("Training: chars/s of rnnkit's training step (forward, loss, backward, clip, Adam), about "
            f"{args.chars:,} characters per step, median of {args.rounds} rounds alternating.\n\n"
            + table(["model", "parameters", "seq len", "batch", "train chars/s", "vs GRU"], rows)
            + f"\n\nGeneration, batch 1, {args.gen_chars:,} characters, median of {args.rounds} rounds alternating: "
            "*fast* is `generate(...)` (the default: the GRU on ATen's kernels, the blocks' single-step form "
            "called directly), *reference* `generate(..., fast=False)`, `model(x, state)` per character:\n\n"
            + table(["model", "path", "chars/s", "vs GRU fast"],
                    [[n, "fast" if fast else "reference", round(r), f"{r / base_gen:.2f}x"]
                     for (n, fast), r in gen.items()]))
    print(body)
    cuda = args.device != "cpu"                        # a GPU's figures go to a section of their own
    write_section("bench_blocks_cuda" if cuda else "bench_blocks",
                  "Scan blocks against cuDNN's GRU" if cuda else "Scan blocks against the GRU", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
