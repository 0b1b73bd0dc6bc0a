"""Generate text from a model exported by ``rnnkit export RUN --format onnx --out MODEL.onnx``, with
onnxruntime and NumPy alone (no PyTorch, no rnnkit):

    python examples/onnx_generate.py MODEL.onnx --prompt "VALÈRE." --length 300 --temperature 0.8 --seed 1

It prints what ``rnnkit sample`` prints: the prompt, then the text. The vocabulary and the shape of the
recurrent state come from the model file's metadata. Temperature 0 is greedy (argmax), and gives the
characters ``rnnkit sample --temperature 0`` gives; other temperatures draw from NumPy's generator, so the
text differs from rnnkit's for the same seed.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import onnxruntime as ort


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="an ONNX step model written by rnnkit export")
    ap.add_argument("--prompt", default="\n", help="text to start from (default: a line break)")
    ap.add_argument("--length", type=int, default=500, help="characters to generate")
    ap.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    ap.add_argument("--seed", type=int, default=None, help="seed of NumPy's generator")
    args = ap.parse_args()
    if args.length < 1 or args.temperature < 0:
        sys.exit("onnx_generate.py: error: --length must be at least 1 and --temperature at least 0")

    try:
        session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime's errors are one type per cause; say which file
        sys.exit(f"onnx_generate.py: error: {args.model}: cannot load it ({type(e).__name__})")
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("rnnkit.task") != "charlm":
        sys.exit(f"onnx_generate.py: error: {args.model} is not an rnnkit language model (rnnkit export makes one)")
    chars = json.loads(meta["rnnkit.vocab"])["chars"]
    index = {c: i for i, c in enumerate(chars)}
    parts = json.loads(meta["rnnkit.state"])                        # [{"name": "h", "shape": [L, H]}, ...]
    state = [np.zeros([p["shape"][0], 1, *p["shape"][1:]], dtype=np.float32) for p in parts]
    names = [f"state_{p['name']}" for p in parts]

    def step(char_id: int) -> np.ndarray:
        nonlocal state
        logits, *state = session.run(None, {"token": np.array([char_id], dtype=np.int64),
                                            **dict(zip(names, state))})
        return logits[0]                                            # (V,)

    ids = [index[c] for c in args.prompt if c in index] or [index.get("\n", 0)]
    for i in ids:
        logits = step(i)
    rng = np.random.default_rng(args.seed)
    out = []
    for n in range(args.length):
        if args.temperature == 0:
            nxt = int(np.argmax(logits))
        else:
            z = logits.astype(np.float64) / args.temperature
            p = np.exp(z - z.max())
            nxt = int(rng.choice(len(p), p=p / p.sum()))
        out.append(chars[nxt])
        if n + 1 < args.length:
            logits = step(nxt)
    sys.stdout.write(args.prompt + "".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
