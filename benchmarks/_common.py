"""Shared by the benchmark scripts: timing, the machine line, tables, and docs/benchmarks.md sections.

Each script owns one section of docs/benchmarks.md, delimited by ``<!-- name:start -->`` and
``<!-- name:end -->``; running the script replaces that section and leaves the others alone.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
# RNNKIT_BENCH_DOCS redirects the sections elsewhere (a run on a borrowed GPU machine writes its copy
# there, and ``python benchmarks/_common.py merge COPY`` brings its sections back into docs/benchmarks.md).
DOCS = Path(os.environ.get("RNNKIT_BENCH_DOCS") or ROOT / "docs" / "benchmarks.md")
SHARED = ROOT / ".." / "shared"
HEADER = """# Benchmarks

Figures measured by the scripts in `benchmarks/`, each run by hand on a shared machine and written here by
the script itself (command, machine, date). The machine is noisy: every comparison is run side by side in
one process, alternating A B A B, and the ratios (medians) are what to quote; absolute rates vary with load.
"""


def machine() -> str:
    """One line: CPU model, cores, vector extensions, torch version and threads."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", "unknown CPU", platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = "AVX-512" if "avx512f" in flags else "AVX2, no AVX-512" if "avx2" in flags else "no AVX2"
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        isa += ", bf16 instructions"
    gpu = (f"; GPU {torch.cuda.get_device_name()} (CUDA {torch.version.cuda}, "
           f"cuDNN {torch.backends.cudnn.version()})" if torch.cuda.is_initialized() else "")
    return (f"{model}, {os.cpu_count()} cores, {isa}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; Python {platform.python_version()}{gpu}")


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternate(runs: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Run every contender once per round, in turn (A B A B ...); the median of what each returns."""
    seen: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            seen[name].append(fn())
    return {name: statistics.median(v) for name, v in seen.items()}


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table (also readable as plain text)."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
    sep = "|" + "|".join(("-" * (w + 1) + ":") if i else (":" + "-" * (w + 1)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def _fmt(c: object) -> str:
    if isinstance(c, float):
        return f"{c:,.2f}" if abs(c) < 100 else f"{c:,.0f}"
    if isinstance(c, int):
        return f"{c:,}"
    return str(c)


COMMAND_ENV = ("BUDGET_S",)     # environment variables the benchmarks read, shown before their commands


def _from_root(arg: str) -> str:
    """A relative path that exists, as seen from the repository root (where the docs' commands run)."""
    return os.path.relpath(Path(arg).resolve(), ROOT) if not os.path.isabs(arg) and Path(arg).exists() else arg


def write_section(name: str, title: str, body: str) -> None:
    """Replace (or append) section ``name`` of docs/benchmarks.md with ``body``, stamped with the command,
    machine and date."""
    env = "".join(f"{k}={shlex.quote(os.environ[k])} " for k in COMMAND_ENV if k in os.environ)
    command = env + "python " + shlex.join(_from_root(a) for a in sys.argv)
    stamp = (f"Command: `{command}`  \nMachine: {machine()}  \n"
             f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    block = f"<!-- {name}:start -->\n### {title}\n\n{stamp}\n\n{body.strip()}\n<!-- {name}:end -->"
    _replace_block(name, block)
    print(f"wrote section {name!r} of {os.path.relpath(DOCS)}")


def _replace_block(name: str, block: str) -> None:
    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else HEADER
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    tmp = DOCS.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, DOCS)


def merge(path: Path) -> None:
    """Copy every section of another benchmarks.md (say, one written on a GPU machine) into DOCS."""
    text = path.read_text(encoding="utf-8")
    for m in re.finditer(r"<!-- (\S+):start -->.*?<!-- \1:end -->", text, flags=re.S):
        _replace_block(m.group(1), m.group(0))
        print(f"merged section {m.group(1)!r} into {os.path.relpath(DOCS)}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "merge":
        merge(Path(sys.argv[2]))
    else:
        sys.exit("usage: python benchmarks/_common.py merge OTHER_BENCHMARKS.md")
