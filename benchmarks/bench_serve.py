"""Load on a real ``rnnkit serve``: concurrent streaming clients, batching on and off, side by side.

    python benchmarks/bench_serve.py [--clients 1,8,32,64] [--chars 500] [--runs RUN ...] [--json out.json]

For each model (by default three barely trained runs made here: rnnkit's default model for Molière, a
2x512 GRU; a 2x512 LSTM; and the 1x256 GRU of ``make run``; speed does not depend on the weights) and each mode (batching on, ``--no-batching``)
it starts the server in its own process on a free loopback port, and for each number of clients runs the
load generator in another process: every client streams one completion of ``--chars`` characters at
temperature 1 with its own seed, all started together. Reported per run: aggregate characters per second
(all characters / wall time), median and p95 time to the first character and to the last, and requests
that failed. The server, the load generator and this script share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_section  # noqa: E402

MODELS = {"gru-2x512": dict(cell="gru", hidden_size=512, num_layers=2, embed_size=64),     # rnnkit's default
          "lstm-2x512": dict(cell="lstm", hidden_size=512, num_layers=2, embed_size=64),
          "gru-1x256": dict(cell="gru", hidden_size=256, num_layers=1, embed_size=64)}     # make run's


def make_runs(root: Path) -> dict[str, Path]:
    from rnnkit.config import DataConfig, ModelConfig, TrainConfig
    from rnnkit.training.lm import train

    runs = {}
    for name, m in MODELS.items():
        out = root / name
        train(DataConfig(corpus="moliere"), ModelConfig(**m), TrainConfig(steps=2, eval_every=2, eval_chars=2000,
              lr=3e-3, device="cpu"), out, quiet=True, overwrite=True, log=lambda msg: None)
        runs[name] = out
    return runs


def start_server(run: Path, batching: bool) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "rnnkit", "serve", str(run), "--port", "0", "--max-streams", "256"]
    if not batching:
        cmd.append("--no-batching")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise RuntimeError(f"the server did not start: {line}{proc.stderr.read()}")
    return proc, line.split("http://", 1)[1].split("/", 1)[0]


# ----------------------------------------------------------------------------- the load generator process

async def _client(client, url: str, model: str, chars: int, seed: int) -> dict:
    body = {"model": model, "prompt": "\n", "max_tokens": chars, "temperature": 1.0, "seed": seed, "stream": True}
    t0 = time.perf_counter()
    first, got, error = None, 0, None
    try:
        async with client.stream("POST", f"http://{url}/v1/completions", json=body) as r:
            if r.status_code != 200:
                return {"error": f"HTTP {r.status_code}"}
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    error = chunk["error"]["message"]
                    break
                n = sum(len(c["text"]) for c in chunk["choices"])
                if n and first is None:
                    first = time.perf_counter() - t0
                got += n
    except Exception as e:                       # noqa: BLE001 - a lost request is a result here
        error = f"{type(e).__name__}: {e}"
    done = time.perf_counter() - t0
    if error or got != chars:
        return {"error": error or f"{got} of {chars} characters"}
    return {"first": first, "done": done, "chars": got}


async def _load(url: str, model: str, clients: int, chars: int) -> dict:
    import httpx
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        await _client(client, url, model, 20, 0)                      # warm-up: the kernels' first calls
        t0 = time.perf_counter()
        results = await asyncio.gather(*[_client(client, url, model, chars, 1000 + i) for i in range(clients)])
        wall = time.perf_counter() - t0
    ok = [r for r in results if "error" not in r]
    q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(round(p * (len(xs) - 1))))] if xs else None
    firsts, dones = [r["first"] for r in ok], [r["done"] for r in ok]
    return {"clients": clients, "ok": len(ok), "failed": len(results) - len(ok),
            "errors": sorted({r["error"] for r in results if "error" in r})[:3],
            "chars_per_s": sum(r["chars"] for r in ok) / wall, "wall_s": wall,
            "first_median_s": statistics.median(firsts) if firsts else None, "first_p95_s": q(firsts, 0.95),
            "done_median_s": statistics.median(dones) if dones else None, "done_p95_s": q(dones, 0.95)}


def client_main(args) -> int:
    print(json.dumps(asyncio.run(_load(args.client, args.model, args.clients[0], args.chars))))
    return 0


# ----------------------------------------------------------------------------- the benchmark

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="1,8,32,64", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--chars", type=int, default=500)
    ap.add_argument("--runs", nargs="*", help="run directories to serve instead of the two made here")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--client", help=argparse.SUPPRESS)       # internal: be the load generator for this server
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        return client_main(args)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {Path(r).name: Path(r) for r in args.runs} if args.runs else make_runs(Path(tmp))
        results = []
        for name, run in runs.items():
            for batching in (True, False):
                proc, url = start_server(run, batching)
                try:
                    for n in args.clients:
                        out = subprocess.run([sys.executable, __file__, "--client", url, "--model", run.name,
                                              "--clients", str(n), "--chars", str(args.chars)],
                                             capture_output=True, text=True, check=True)
                        r = {"model": name, "batching": batching, **json.loads(out.stdout)}
                        results.append(r)
                        print(f"{name:11} batching {'on ' if batching else 'off'} {n:3} clients: "
                              f"{r['chars_per_s']:8,.0f} chars/s, first char median {r['first_median_s']:.3f}s "
                              f"p95 {r['first_p95_s']:.3f}s, done median {r['done_median_s']:.2f}s "
                              f"p95 {r['done_p95_s']:.2f}s, failed {r['failed']}", flush=True)
                finally:
                    proc.terminate()
                    proc.wait(timeout=20)
    rows = []
    for name in runs:
        for n in args.clients:
            on = next(r for r in results if r["model"] == name and r["batching"] and r["clients"] == n)
            off = next(r for r in results if r["model"] == name and not r["batching"] and r["clients"] == n)
            rows.append([name, n, round(on["chars_per_s"]), round(off["chars_per_s"]),
                         f"{on['chars_per_s'] / off['chars_per_s']:.1f}x",
                         f"{on['first_median_s'] * 1000:.0f} / {on['first_p95_s'] * 1000:.0f} ms",
                         f"{off['first_median_s'] * 1000:.0f} / {off['first_p95_s'] * 1000:.0f} ms",
                         f"{on['done_median_s']:.2f} / {on['done_p95_s']:.2f} s",
                         f"{off['done_median_s']:.2f} / {off['done_p95_s']:.2f} s", on["failed"] + off["failed"]])
    body = (f"{args.chars} characters per client, temperature 1, all clients started together; server, load "
            f"generator and this script on the same {os.cpu_count()} cores.\n\n" + table(
                ["model", "clients", "batching on: chars/s", "off: chars/s", "on / off",
                 "first char p50 / p95, on", "first char p50 / p95, off", "done p50 / p95, on",
                 "done p50 / p95, off", "failed"], rows))
    print(body)
    if not args.runs:
        write_section("bench_serve", "Serving under load", body)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
