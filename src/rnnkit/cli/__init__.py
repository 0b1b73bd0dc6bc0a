"""Layer 6, the command line: ``rnnkit train | eval | sample | export | corpora | classify | plot | viz | serve``. It only parses flags,
builds configs and calls the library. Errors a user can fix print one line, ``rnnkit: error: ...``, and
exit with status 2."""

from __future__ import annotations

import os
import re
import sys
from typing import Callable, Mapping, Sequence


def main(argv: Sequence[str] | None = None, commands: Mapping[str, Callable] | None = None) -> int:
    """Run one command. ``commands`` adds the commands of layers beside this one (``serve``), which the
    package's entry point, ``rnnkit.main``, passes in."""
    from ..checkpoint import CheckpointError
    from ..config import ConfigError
    from ..data.corpus import CorpusError
    from ..data.streams import CorpusTooShort
    from ..training.distributed import writes
    from ..training.trainer import TrainingStopped
    from .commands import COMMANDS
    from .parser import build_parser

    args = build_parser().parse_args(argv)
    table = {**COMMANDS, **(commands or {})}
    key = (args.command, args.classify_command) if args.command == "classify" else args.command
    if key not in table:
        print(f"rnnkit: error: rnnkit {args.command} runs from the rnnkit command (rnnkit.main), not "
              f"rnnkit.cli.main", file=sys.stderr)
        return 2
    command = table[key]
    try:
        return command(args)
    except TrainingStopped as e:
        if writes():                                # a distributed run: one line, from rank 0
            print(f"rnnkit: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # e.g. `rnnkit sample ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ConfigError, CorpusError, CheckpointError, CorpusTooShort, ValueError, OSError) as e:
        print(f"rnnkit: error{_rank()}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as e:       # torch reports a failed CPU allocation as a RuntimeError
        wanted = re.search(r"tried to allocate (\d+) bytes", str(e))
        if not (isinstance(e, MemoryError) or wanted or "out of memory" in str(e)):
            if _rank() and any(w in str(e).lower() for w in ("gloo", "nccl", "timed out", "connection")):
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
                print(f"rnnkit: error{_rank()}: the processes lost each other ({first}); another process may "
                      f"have failed or been stopped (see its lines), or set RNNKIT_DIST_TIMEOUT=SECONDS to wait "
                      f"longer", file=sys.stderr)
                return 2
            raise
        size = f" ({int(wanted[1]) / 2**30:,.1f} GiB asked for)" if wanted else ""
        print(f"rnnkit: error{_rank()}: not enough memory{size}; lower --hidden-size, --layers, --batch-size, "
              f"--seq-len or --num-samples", file=sys.stderr)
        return 2


def _rank() -> str:
    """`` (rank 1 of 4)`` in a distributed run, else nothing."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return f" (rank {os.environ.get('RANK', '0')} of {size})" if size > 1 else ""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
