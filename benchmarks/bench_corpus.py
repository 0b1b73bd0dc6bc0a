"""Reading and encoding a 100 MB corpus: time and peak memory.

Builds /tmp/rnnkit-bench-corpus.txt (Molière repeated to --mb megabytes of UTF-8; never committed), then,
in a fresh child process each (so that peak memory is the child's own), measures

  rnnkit      corpus.read_text + CharVocab.from_text + CharVocab.encode: the work the target is about
  train data  train.prepare_data: the same plus cleaning options, the content fingerprint and the split,
              which is what ``rnnkit train`` runs before its first step

Peak memory is the child's maximum resident set size (getrusage), the torch import included; the
baseline line shows how much of it is the interpreter and torch alone. A second child run under
tracemalloc gives the peak of Python-level allocations (the text itself; torch tensors are not traced).
Targets: <= 10 s and <= 1 GB.

usage: python benchmarks/bench_corpus.py [--mb 100] [--keep] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import SHARED, table, write_section

CORPUS = Path("/tmp/rnnkit-bench-corpus.txt")


def make_corpus(mb: int) -> Path:
    source = SHARED / "data" / "moliere.txt"
    if source.exists():
        text = source.read_text(encoding="utf-8")
    else:                                   # the bundled copy holds the dialogue only, which does as well
        from rnnkit.data.corpus import bundled_corpus
        text = bundled_corpus("moliere")
    unit = text.encode("utf-8")
    target = mb * 1_000_000
    reps, left = divmod(target, len(unit))
    tail = unit[:left]
    tail = tail[: tail.rfind(b"\n") + 1]                  # end on a line break, never inside a character
    with open(CORPUS, "wb") as f:
        for _ in range(reps):
            f.write(unit)
        f.write(tail)
    return CORPUS


def child(path: str, what: str, trace: bool) -> None:
    """Runs in the child process: one measurement, printed as JSON."""
    import torch  # noqa: F401  (imported first so the baseline includes it)

    from rnnkit.config import DataConfig
    from rnnkit.data.corpus import read_text
    from rnnkit.data.charlm import prepare_data
    from rnnkit.data.vocab import CharVocab
    torch.set_num_threads(2)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # KiB -> MiB
    if trace:
        import tracemalloc
        tracemalloc.start()
    out: dict = {"baseline_mib": base}
    t0 = time.perf_counter()
    if what == "rnnkit":
        text = read_text(path)
        t1 = time.perf_counter()
        vocab = CharVocab.from_text(text)
        t2 = time.perf_counter()
        ids = vocab.encode(text)
        t3 = time.perf_counter()
        out.update(read_s=t1 - t0, vocab_s=t2 - t1, encode_s=t3 - t2, chars=len(text), vocab=len(vocab),
                   ids_dtype=str(ids.dtype), ids_mib=ids.numel() * ids.element_size() / 2**20)
    else:
        data = prepare_data(DataConfig(path=path))
        out.update(chars=data.chars, vocab=len(data.vocab))
    out["total_s"] = time.perf_counter() - t0
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if trace:
        out["python_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    print(json.dumps(out))


def run_child(path: Path, what: str, trace: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", str(path), what] + (["--trace"] if trace else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], "--trace" in sys.argv)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=100, help="corpus size in megabytes (10^6 bytes) of UTF-8")
    ap.add_argument("--keep", action="store_true", help=f"keep {CORPUS} afterwards")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    path = make_corpus(args.mb)
    try:
        rows = []
        for what, label in (("rnnkit", "read_text + CharVocab.from_text + encode"),
                            ("prepare", "prepare_data (what `rnnkit train` runs)")):
            r = run_child(path, what)
            traced = run_child(path, what, trace=True)
            detail = (f"read {r['read_s']:.2f} s, vocab {r['vocab_s']:.2f} s, encode {r['encode_s']:.2f} s; "
                      f"ids {r['ids_mib']:.0f} MiB {r['ids_dtype']}" if what == "rnnkit" else "")
            rows.append([label, f"{r['chars']:,}", r["vocab"], f"{r['total_s']:.2f}", f"{r['peak_rss_mib']:,.0f}",
                         f"{r['baseline_mib']:,.0f}", f"{traced['python_peak_mib']:,.0f}", detail])
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
    text = table(["work", "characters", "vocab", "seconds", "peak RSS MiB", "of which baseline MiB",
                  "Python peak MiB (tracemalloc)", "detail"], rows)
    print(text)
    if not args.no_write:
        body = (f"A {args.mb} MB UTF-8 corpus (Molière repeated, built in /tmp and deleted afterwards), each "
                f"measurement in a fresh process. Peak RSS includes the interpreter and torch (the baseline "
                f"column, measured after `import torch`). Targets: <= 10 s, <= 1 GB.\n\n" + text)
        write_section("bench_corpus", f"Reading and encoding a {args.mb} MB corpus", body)


if __name__ == "__main__":
    main()
