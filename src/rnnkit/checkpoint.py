"""Run directories: self-describing, safe to load, written atomically.

    run.json           what the run is: task, model/data/train configs, vocabulary, data fingerprint
    model.safetensors  the latest weights            (safetensors: loading never executes code)
    best.safetensors   the best-validation weights
    state.pt           everything to resume exactly: weights, optimizer, scheduler, step, RNG states,
                       data position, carried hidden state; plain tensors and numbers, read back with
                       ``torch.load(weights_only=True)`` so a planted pickle payload is refused
    metrics.jsonl      one JSON record per evaluation

Every file is written to a temporary name, fsynced and renamed over the old one, so a crash at any
instant leaves the previous version whole. ``state.pt`` carries its own copy of the weights, so a resume
never pairs weights and optimizer state from different steps.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

try:
    import fcntl
except ImportError:             # Windows: no advisory locks; two trainings in one directory are not caught
    fcntl = None

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

FORMAT = "rnnkit.run"
FORMAT_VERSION = 1
RUN_FILE, WEIGHTS, BEST, STATE, METRICS = "run.json", "model.safetensors", "best.safetensors", "state.pt", "metrics.jsonl"
OWN_FILES = (RUN_FILE, WEIGHTS, BEST, STATE, METRICS)


class CheckpointError(ValueError):
    """A run directory or one of its files is missing, foreign or damaged; the message names the file."""


# ----------------------------------------------------------------------------- atomic writes

def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, fsync the file, rename it to ``path`` and fsync the directory."""
    path = Path(path)
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            # Created here with 0666 less the umask, as open() makes files; the writer reuses it (mode kept).
            # Never reading or setting the process's umask keeps this safe beside other threads.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise CheckpointError(f"{path}: could not be saved ({e.strerror or e}); "
                                  f"the previous version of it is kept") from None
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):          # disk full, quota, permissions: say which file, and that it is safe
            raise CheckpointError(f"{path}: could not be saved ({e.strerror or e}); "
                                  f"the previous version of it is kept") from None
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    atomic_write(path, write)


def write_json(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, allow_nan=True) + "\n")


def read_json(path: str | Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: damaged JSON ({e}); restore it or start a new run") from None


# ----------------------------------------------------------------------------- weights and state

def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    meta = {k: json.dumps(v) for k, v in metadata.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: missing")
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged or not a safetensors file ({_short(e)})") from None
    # safetensors has no checksum: damaged tensor bytes load silently, but inf/nan at least shows
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(f"{path}: {bad[0]} holds inf or nan values; the file is damaged (or was saved "
                              f"after training diverged): use the other weights (--weights) or retrain")
    return tensors


def read_weights_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata ``save_weights`` wrote beside the tensors of ``path``."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged or not a safetensors file ({_short(e)})") from None
    return {k: json.loads(v) for k, v in meta.items()}


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | Path) -> dict[str, Any]:
    """Training state, read with ``weights_only=True``: tensors and plain containers only, never code."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: missing; this run has no resumable state")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle safely is one message
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise CheckpointError(f"{path}: refused, it holds objects other than tensors and plain data "
                                  f"(possibly malicious); it was not executed") from None
        raise CheckpointError(f"{path}: damaged or truncated ({_short(e)})") from None


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else e.__class__.__name__)[:200]


# ----------------------------------------------------------------------------- run directory

def remove_stale_temps(directory: str | Path) -> None:
    """Delete temporary files that a killed writer left behind (only when nothing else writes here)."""
    for name in OWN_FILES:
        for tmp in Path(directory).glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def check_run_dir(directory: str | Path, *, overwrite: bool) -> list[str]:
    """Refuse ``directory`` for a new run if it is a file, or holds another run and not ``overwrite``;
    returns the run files it holds. Touches nothing, so a new run can check before reading its data."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise CheckpointError(f"{d} exists and is not a directory: choose another --out")
    ours = [name for name in OWN_FILES if (d / name).exists()]
    if ours and not overwrite:
        raise CheckpointError(f"{d} already holds a run ({', '.join(ours)}): resume it with "
                              f"--resume {d}, choose another --out, or pass --overwrite to replace it")
    return ours


def prepare_run_dir(directory: str | Path, *, overwrite: bool) -> Path:
    """Create ``directory`` for a new run; refuse one that holds another run unless ``overwrite``."""
    d = Path(directory)
    ours = check_run_dir(d, overwrite=overwrite)
    if d.exists():
        for name in ours:
            (d / name).unlink()
        remove_stale_temps(d)
    d.mkdir(parents=True, exist_ok=True)
    return d


def discard_run(directory: str | Path) -> None:
    """Remove the files of a new run that failed before its first checkpoint (run.json, metrics)."""
    d = Path(directory)
    for name in (RUN_FILE, METRICS):
        (d / name).unlink(missing_ok=True)
    remove_stale_temps(d)


@contextmanager
def run_lock(directory: str | Path) -> Iterator[Path]:
    """Hold ``directory`` for one training process: a second ``train``/``resume`` on the same run directory
    (another terminal, a forgotten background job) is refused instead of interleaving its checkpoints with
    this one's. An advisory lock on the directory itself, released when the process ends however it ends.
    A directory created here and still empty on the way out (the run failed before writing) is removed."""
    d = Path(directory)
    created = [a for a in [d, *d.parents] if not a.exists()]     # innermost first
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d, os.O_RDONLY)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CheckpointError(f"{d} is in use by another rnnkit process that is training there; wait for "
                                      f"it to finish (or stop it: Ctrl-C saves a checkpoint), or choose another "
                                      f"--out") from None
        yield d
    finally:
        os.close(fd)
        for a in created:
            try:
                a.rmdir()          # fails, as it should, once the run has written anything
            except OSError:
                break


def read_run(directory: str | Path) -> dict[str, Any]:
    d = Path(directory)
    if not d.exists():
        raise CheckpointError(f"{d}: no such run directory")
    if not d.is_dir():
        raise CheckpointError(f"{d} is a file, not a run directory (rnnkit runs are directories made by `rnnkit train --out`)")
    if not (d / RUN_FILE).exists():
        raise CheckpointError(f"{d} is not an rnnkit run: it has no {RUN_FILE}")
    run = read_json(d / RUN_FILE)
    if not isinstance(run, dict) or run.get("format") != FORMAT:
        raise CheckpointError(f"{d / RUN_FILE}: not an rnnkit run file")
    if run.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{d / RUN_FILE}: written by a newer rnnkit (format {run.get('version')}); upgrade rnnkit")
    bad = [k for k, kind in (("task", str), ("model", dict), ("data", dict), ("train", dict), ("vocab", dict))
           if not isinstance(run.get(k), kind)]
    if bad:
        raise CheckpointError(f"{d / RUN_FILE}: damaged ({', '.join(bad)} missing or of the wrong type); "
                              f"restore it or start a new run")
    return run


def write_run(directory: str | Path, run: dict[str, Any]) -> None:
    write_json(Path(directory) / RUN_FILE, {"format": FORMAT, "version": FORMAT_VERSION, **run})


def weights_path(directory: str | Path, which: str = "best") -> Path:
    """``best`` falls back to the latest weights when no evaluation has produced a best yet."""
    d = Path(directory)
    if which not in ("best", "last"):
        raise CheckpointError(f"weights must be best or last, got {which!r}")
    if which == "best" and (d / BEST).exists():
        return d / BEST
    if (d / WEIGHTS).exists():
        return d / WEIGHTS
    raise CheckpointError(f"{d} holds no weights yet ({WEIGHTS} missing): train it first")


# ----------------------------------------------------------------------------- metrics log

def append_metrics(directory: str | Path, record: dict[str, Any]) -> None:
    line = json.dumps({k: _finite_or_none(v) for k, v in record.items()})
    with open(Path(directory) / METRICS, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(directory: str | Path) -> list[dict[str, Any]]:
    """Records of metrics.jsonl; a torn last line (a crash mid-write) is ignored."""
    path = Path(directory) / METRICS
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():   # a bad byte spoils one line
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(directory: str | Path, step: int) -> None:
    """Keep only records up to ``step``: a resumed run continues the log with no duplicates or gaps."""
    kept = [r for r in read_metrics(directory) if r.get("step", 0) <= step]
    write_text_atomic(Path(directory) / METRICS, "".join(json.dumps(r) + "\n" for r in kept))


def _finite_or_none(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v
