"""Generation speed: characters per second at batch 1 and batch 64, rnnkit vs the naive torch.nn step loop.

Contenders, on the same untrained 2x512 model (vocab 65, embedding 256, random weights, temperature 1):

  naive      Embedding -> nn.LSTM/nn.GRU -> Linear called once per character with torch's defaults
             (on the CPU nn.LSTM then runs oneDNN's RNN primitive), softmax + multinomial: what a user writes
  reference  rnnkit.generate(..., fast=False): ``model(x, state)`` per character with torch's defaults (at
             batch 1 on the CPU that is oneDNN's RNN primitive for the LSTM)
  fast       rnnkit.generate(...), the default: at batch 1 the Stepper (rnnkit/inference/fast.py: ATen's
             native CPU kernels called directly), with each layer's recurrent matmul on a second thread
             if timing 32 characters each way at start says that is faster (2 threads); at batch 64 the
             same as reference. Its text is checked to be identical to the
             reference path's run on the kernels it mirrors (``torch.backends.mkldnn.flags(enabled=False)``)
  fast, pipelined       generate(..., pipeline=True): the Stepper with the second thread, always
  fast, not pipelined   generate(..., pipeline=False): the Stepper on one thread
  onnxruntime  the model exported by rnnkit.inference.export (the step model), run by onnxruntime one
             character at a time with NumPy sampling, as examples/onnx_generate.py does (batch 1 only)

Beam search (--beam-width, default 8): rnnkit.beam_search at that width against sampling as many streams
as one batch (generate(num_samples=width)): the beam's bookkeeping against the forward steps they share.

usage: python benchmarks/bench_generate.py [--rounds 3] [--seconds 1.0] [--beam-width 8] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from _common import alternate, table, timed, write_section

from rnnkit.config import BeamConfig, ModelConfig, SampleConfig
from rnnkit.inference.beam import beam_search
from rnnkit.inference.sampling import generate
from rnnkit.nn.models import CharLM
from rnnkit.data.vocab import CharVocab

VOCAB = CharVocab([chr(c) for c in range(32, 96)] + ["\n"])       # 65 characters
HIDDEN, LAYERS, EMBED = 512, 2, 256


class NaiveLM(nn.Module):
    """The bare torch.nn model, with the same parameter names as rnnkit's CharLM so weights copy over."""

    def __init__(self, cell: str):
        super().__init__()
        self.embed = nn.Embedding(len(VOCAB), EMBED)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](EMBED, HIDDEN, LAYERS, batch_first=True)
        self.head = nn.Linear(HIDDEN, len(VOCAB))

    def forward(self, x, state=None):
        out, state = self.rnn(self.embed(x), state)
        return self.head(out), state


@torch.inference_mode()
def naive_loop(model: NaiveLM, steps: int, batch: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x, state = torch.zeros(batch, 1, dtype=torch.long), None
    for _ in range(steps):
        logits, state = model(x, state)
        x = torch.multinomial(torch.softmax(logits[:, -1], -1), 1, generator=gen)    # (B, 1)


def onnx_loop(path: Path, steps: int, seed: int) -> None:
    """examples/onnx_generate.py's loop: one session.run per character, NumPy sampling at temperature 1."""
    import json

    import numpy as np
    import onnxruntime as ort
    session = onnx_loop.sessions.get(path) or onnx_loop.sessions.setdefault(
        path, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))
    parts = json.loads(session.get_modelmeta().custom_metadata_map["rnnkit.state"])
    names = [f"state_{p['name']}" for p in parts]
    state = [np.zeros([p["shape"][0], 1, *p["shape"][1:]], dtype=np.float32) for p in parts]
    rng, token = np.random.default_rng(seed), np.zeros(1, dtype=np.int64)
    for _ in range(steps):
        logits, *state = session.run(None, {"token": token, **dict(zip(names, state))})
        z = logits[0].astype(np.float64)
        p = np.exp(z - z.max())
        token = np.array([rng.choice(len(p), p=p / p.sum())], dtype=np.int64)


onnx_loop.sessions = {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    ap.add_argument("--seconds", type=float, default=1.0, help="rough duration of one timed run")
    ap.add_argument("--batches", default="1,64", help="comma-separated batch sizes")
    ap.add_argument("--cells", default="lstm,gru", help="comma-separated cells")
    ap.add_argument("--beam-width", type=int, default=8, help="beam search against this many sampled streams")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    try:
        from rnnkit.inference.export import export_lm
        onnx_dir = Path(tempfile.mkdtemp(prefix="rnnkit-bench-"))
    except ImportError:
        export_lm = None

    rows, beam_rows = [], []
    for cell in args.cells.split(","):
        torch.manual_seed(0)
        model = CharLM(ModelConfig(vocab_size=len(VOCAB), cell=cell, embed_size=EMBED, hidden_size=HIDDEN,
                                   num_layers=LAYERS)).eval()
        naive = NaiveLM(cell).eval()
        naive.load_state_dict(model.state_dict())
        for batch in (int(b) for b in args.batches.split(",")):
            def cfg(steps: int) -> SampleConfig:
                return SampleConfig(prompt="\n", length=steps, num_samples=batch, temperature=1.0, seed=1)
            # Same seed, same text: the check the fast path promises, on this very model.
            with torch.backends.mkldnn.flags(enabled=batch > 1):
                reference = generate(model, VOCAB, cfg(300), fast=False)
            same = generate(model, VOCAB, cfg(300)) == reference

            # Calibrate the number of steps so that each timed run lasts about --seconds.
            def steps_for(run) -> int:
                dt = timed(lambda: run(20))
                return max(20, int(20 * args.seconds / max(dt, 1e-6)))
            runs = {
                "naive": lambda s: naive_loop(naive, s, batch, 1),
                "reference": lambda s: generate(model, VOCAB, cfg(s), fast=False),
                "fast": lambda s: generate(model, VOCAB, cfg(s)),
                "fast, pipelined": lambda s: generate(model, VOCAB, cfg(s), pipeline=True),
                "fast, not pipelined": lambda s: generate(model, VOCAB, cfg(s), pipeline=False),
            }
            if batch > 1:
                del runs["fast, pipelined"], runs["fast, not pipelined"]   # the fast path is for batch 1 only
            elif export_lm is not None:
                path = onnx_dir / f"{cell}.onnx"
                export_lm(model, VOCAB, path)
                runs["onnxruntime"] = lambda s: onnx_loop(path, s, 1)
            steps = {name: steps_for(run) for name, run in runs.items()}
            rates = alternate({name: (lambda name=name, run=run: batch * steps[name] / timed(lambda: run(steps[name])))
                               for name, run in runs.items()}, args.rounds)
            for name in runs:
                rows.append([f"2x{HIDDEN} {cell}", batch, name, rates[name], f"{rates[name] / rates['naive']:.2f}x",
                             ("yes" if same else "NO") if name == "fast" else ""])
                print(rows[-1], file=sys.stderr)

        # Beam search against sampling the same number of streams as one batch.
        k = args.beam_width
        beam_runs = {f"sample {k} streams": lambda s: generate(model, VOCAB, SampleConfig(length=s, num_samples=k, seed=1)),
                     f"beam search, width {k}": lambda s: beam_search(model, VOCAB, BeamConfig(length=s, beam=k))}
        beam_steps = {name: max(20, int(20 * args.seconds / max(timed(lambda run=run: run(20)), 1e-6)))
                      for name, run in beam_runs.items()}
        beam_rates = alternate({name: (lambda name=name, run=run: beam_steps[name] / timed(lambda: run(beam_steps[name])))
                                for name, run in beam_runs.items()}, args.rounds)
        base = beam_rates[f"sample {k} streams"]
        for name, rate in beam_rates.items():
            beam_rows.append([f"2x{HIDDEN} {cell}", name, rate, f"{rate / base:.2f}x"])
            print(beam_rows[-1], file=sys.stderr)

    text = table(["model", "batch", "path", "chars/s", "vs naive", "same text as reference"], rows)
    text += "\n\nBeam search against sampling as many streams in one batch (steps per second: one character of " \
            "every stream or hypothesis per step):\n\n" + table(["model", "path", "steps/s", "vs sampling"], beam_rows)
    print(text)
    if not args.no_write:
        body = (f"Generation with untrained 2x{HIDDEN} models (embedding {EMBED}, vocab {len(VOCAB)}), temperature 1, "
                f"{args.rounds} alternating rounds of about {args.seconds:g} s each, medians. chars/s counts every "
                f"sample of the batch. *naive*: nn.Embedding + nn.LSTM/GRU + nn.Linear called per character with "
                f"torch's defaults; *reference*: `generate(..., fast=False)`, `model(x, state)` per character with "
                f"torch's defaults; *fast*: `generate(...)` (default; at batch 1 ATen's kernels called directly, "
                f"pipelined over 2 threads where timing both ways at start says that is faster); *fast, pipelined*: "
                f"`generate(..., pipeline=True)`; *fast, not pipelined*: `generate(..., pipeline=False)`. At batch 64 "
                f"rnnkit runs `model(x, state)` with torch's defaults on both paths. *Same text*: the fast path's "
                f"sample equals the reference path's on the kernels it mirrors (oneDNN off at batch 1), same seed. "
                f"*onnxruntime*: the exported step model (`rnnkit export`), one `session.run` per character with "
                f"NumPy sampling, as `examples/onnx_generate.py` runs it."
                f"\n\n"
                + text)
        write_section("bench_generate", "Generation speed (chars/s)", body)


if __name__ == "__main__":
    main()
