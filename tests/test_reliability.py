"""Crash safety and exact resume, with real processes and real signals (issue 6, parts 1-3).

A tiny LSTM trains on the bundled alphabet corpus in a child process; the test stops it at a random instant
with SIGTERM, SIGINT or SIGKILL, checks what is left on disk, resumes, and compares the end result with an
uninterrupted run of the same flags in this process: weights and every metrics record must be equal, bit
for bit (CPU, one thread).

Children come two ways. ``python -m rnnkit train`` is the real entry point, but importing torch and its
optimizer machinery costs about 5 s of CPU per process, so the fast tests use it once and otherwise fork
children from a ``multiprocessing`` fork server that has those imports done: still separate processes,
killed by real signals, running ``cli.main`` exactly as the entry point does. The slow kill -9 loop uses
the real entry point throughout.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnkit import checkpoint as ckpt
from rnnkit import cli
from rnnkit.runs import load

STEPS, EVAL_EVERY = 200, 5
TINY = ["--corpus", "alphabet", "--cell", "lstm", "--hidden-size", "16", "--embed-size", "8", "--layers", "1",
        "--batch-size", "4", "--seq-len", "16", "--eval-every", str(EVAL_EVERY), "--eval-chars", "200",
        "--threads", "1", "--device", "cpu", "--quiet", "--seed", "7"]
COMPARED = ("step", "train_loss", "val_loss", "val_bpc", "lr")   # elapsed_s and chars_per_s are timings

_FORKSERVER = multiprocessing.get_context("forkserver")
_FORKSERVER.set_forkserver_preload(["torch", "torch._dynamo", "rnnkit.cli", "rnnkit.training.lm"])


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a busy 2-core machine OpenMP's spinning threads can make a 10 ms evaluation take
    seconds. (conftest's autouse fixture restores the count afterwards, also after in-process `--threads`.)"""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "run"
    n = torch.get_num_threads()
    try:
        assert cli.main(["train", *TINY, "--steps", str(STEPS), "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(n)
    return out


# ----------------------------------------------------------------------------- children

def _cli_child(argv: list[str], log: str) -> None:
    """Body of a fork-server child: ``rnnkit ARGV`` with stderr to ``log``, exiting with its status."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    code = cli.main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Child:
    """A training process, started through the real entry point or forked from the fork server."""

    def __init__(self, argv: list[str], log: Path, *, entry_point: bool):
        if entry_point:
            self.proc = subprocess.Popen([sys.executable, "-m", "rnnkit", *argv], stdout=subprocess.DEVNULL,
                                         stderr=open(log, "w"))
            self.pid = self.proc.pid
        else:
            self.proc = _FORKSERVER.Process(target=_cli_child, args=(argv, str(log)))
            self.proc.start()
            self.pid = self.proc.pid

    def poll(self):
        if isinstance(self.proc, subprocess.Popen):
            return self.proc.poll()
        return None if self.proc.is_alive() else self.proc.exitcode

    def wait(self) -> int:
        if isinstance(self.proc, subprocess.Popen):
            return self.proc.wait(timeout=120)
        self.proc.join(timeout=120)
        return self.proc.exitcode


def interrupt(args: list[str], out: Path, sig: int, log: Path, **kwargs) -> int:
    """Run `rnnkit train ARGS`, send ``sig`` at a random instant of training, return the exit status."""
    return interrupt_argv(["train", *args], out, sig, log, **kwargs)


def interrupt_argv(argv: list[str], out: Path, sig: int, log: Path, *, entry_point: bool = False,
                   max_records: int = 3, max_delay: float = 0.03) -> int:
    """Run `rnnkit ARGV`, send ``sig`` at a random instant of training, return the exit status.

    The signal goes out once the child has logged 1 to ``max_records`` new evaluations (so training, and
    its signal handlers, are running) and a first checkpoint exists (a kill before it leaves nothing to
    resume from; `rnnkit train --resume` then says state.pt is missing), after a random delay of up to
    ``max_delay`` seconds. A record is logged just before its checkpoint is written, so this lands in
    checkpoint writes as well as in steps and evaluations. Waiting for records rather than seconds bounds
    the steps one child takes on a fast machine, so that several interruptions fit into one short run.
    """
    wanted = len(ckpt.read_metrics(out)) + random.randint(1, max_records)
    child = Child(argv, log, entry_point=entry_point)
    deadline = time.monotonic() + 120
    while len(ckpt.read_metrics(out)) < wanted or not (out / ckpt.STATE).exists():   # a first checkpoint to keep
        if child.poll() is not None:
            pytest.fail(f"training ended (status {child.poll()}) before it could be interrupted: "
                        f"{log.read_text()[-500:] if log.exists() else ''}")
        if time.monotonic() > deadline:
            os.kill(child.pid, signal.SIGKILL)
            pytest.fail("training did not start in time")
        time.sleep(0.005)
    time.sleep(random.uniform(0.0, max_delay))
    os.kill(child.pid, sig)
    return child.wait()


# ----------------------------------------------------------------------------- checks

def assert_loadable(out: Path) -> int:
    """Everything a user opens after a crash loads; returns the step of the resumable state."""
    run = ckpt.read_run(out)
    assert run["task"] == "charlm"
    state = ckpt.load_state(out / ckpt.STATE)
    for name in (ckpt.WEIGHTS, ckpt.BEST):
        if (out / name).exists():
            ckpt.load_weights(out / name)
    load(out, weights="last")
    load(out, weights="best")
    records = ckpt.read_metrics(out)
    assert all(isinstance(r["step"], int) for r in records)
    return int(state["progress"]["step"])


def assert_same_run(out: Path, reference: Path, steps: int = STEPS) -> None:
    ours, theirs = ckpt.read_metrics(out), ckpt.read_metrics(reference)
    assert [r["step"] for r in ours] == list(range(EVAL_EVERY, steps + 1, EVAL_EVERY))   # no duplicates, no gaps
    assert [{k: r[k] for k in COMPARED} for r in ours] == [{k: r[k] for k in COMPARED} for r in theirs]
    for name in (ckpt.WEIGHTS, ckpt.BEST):
        a, b = ckpt.load_weights(out / name), ckpt.load_weights(reference / name)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}:{k} differs from the uninterrupted run"
    assert not list(out.glob(".*.tmp")), "temporary files were left behind"


def assert_stopped_cleanly(status: int, log: Path, out: Path, code: int, name: str) -> None:
    err = log.read_text()
    assert status == code, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"rnnkit: {name}: saved a resumable checkpoint at step "), last
    assert last.endswith(f"continue with: rnnkit train --resume {out}"), last
    step = assert_loadable(out)
    assert 0 < step < STEPS and f"at step {step} " in last


# ----------------------------------------------------------------------------- tests

def test_sigterm_through_entry_point_then_exact_resume(tmp_path, reference):
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    status = interrupt([*TINY, "--steps", str(STEPS), "--out", str(out)], out, signal.SIGTERM, log,
                       entry_point=True)
    assert_stopped_cleanly(status, log, out, 143, "SIGTERM")
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 0
    assert_same_run(out, reference)


def test_kill9_ctrl_c_kill9_then_exact_resume(tmp_path, reference):
    """SIGKILL at a random instant, resume and Ctrl-C, resume and SIGKILL again, resume to the end."""
    out = tmp_path / "run"
    status = interrupt([*TINY, "--steps", str(STEPS), "--out", str(out)], out, signal.SIGKILL, tmp_path / "1.txt")
    assert status == -signal.SIGKILL
    first = assert_loadable(out)

    log = tmp_path / "2.txt"
    status = interrupt(["--resume", str(out), "--quiet"], out, signal.SIGINT, log)
    assert_stopped_cleanly(status, log, out, 130, "Ctrl-C")
    assert log.read_text().startswith(f"resuming {out} at step {first} ")
    second = assert_loadable(out)

    status = interrupt(["--resume", str(out), "--quiet"], out, signal.SIGKILL, tmp_path / "3.txt")
    assert status == -signal.SIGKILL
    third = assert_loadable(out)
    assert first <= second <= third < STEPS

    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 0
    assert_same_run(out, reference)


def test_ctrl_c_twice_stops_at_once_and_files_stay_whole(tmp_path, reference):
    """An impatient second Ctrl-C interrupts even the checkpoint being written; the previous one stays."""
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    child = Child(["train", *TINY, "--steps", str(STEPS), "--out", str(out)], log, entry_point=False)
    while not ckpt.read_metrics(out):
        assert child.poll() is None, log.read_text()
        time.sleep(0.005)
    time.sleep(random.uniform(0.0, 0.2))
    os.kill(child.pid, signal.SIGINT)
    time.sleep(random.uniform(0.0, 0.005))
    os.kill(child.pid, signal.SIGINT)
    status, err = child.wait(), log.read_text()
    assert status == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] in ("rnnkit: interrupted", f"rnnkit: Ctrl-C: saved a resumable checkpoint "
                                            f"at step {assert_loadable(out)} in {out}; continue with: "
                                            f"rnnkit train --resume {out}")
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 0
    assert_same_run(out, reference)


@pytest.mark.slow
def test_kill9_loop_through_entry_point(tmp_path):
    ref, out, n = tmp_path / "ref", tmp_path / "run", 3000      # more than ten short lives train on a fast CPU
    assert cli.main(["train", *TINY, "--steps", str(n), "--out", str(ref)]) == 0
    args, steps = [*TINY, "--steps", str(n), "--out", str(out)], []
    for i in range(10):
        status = interrupt(args, out, signal.SIGKILL, tmp_path / f"{i}.txt", entry_point=True, max_delay=0.1)
        assert status == -signal.SIGKILL
        steps.append(assert_loadable(out))
        args = ["--resume", str(out), "--quiet"]
    assert steps == sorted(steps) and steps[-1] < n, steps
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 0
    assert_same_run(out, ref, n)


def test_disk_full_while_saving_keeps_last_checkpoint_and_resume_is_exact(tmp_path, reference, monkeypatch, capsys):
    """The third checkpoint write finds the disk full after writing part of the file."""
    out, real_save, calls = tmp_path / "run", torch.save, []

    def full_disk(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 3:
            Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    assert cli.main(["train", *TINY, "--steps", str(STEPS), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"rnnkit: error: {out / ckpt.STATE}: could not be saved (No space left on device); " \
                  f"the previous version of it is kept"
    assert assert_loadable(out) == 2 * EVAL_EVERY and not list(out.glob(".*.tmp"))
    monkeypatch.setattr(torch, "save", real_save)                   # space freed
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 0
    assert_same_run(out, reference)


# ----------------------------------------------------------------------------- the classifier

CLF_STEPS = 120
CLF = ["--hidden-size", "8", "--embed-size", "8", "--batch-size", "4", "--eval-every", "4", "--threads", "1",
       "--device", "cpu", "--quiet", "--seed", "3", "--steps", str(CLF_STEPS)]


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    rng = random.Random(0)
    good, bad = ["great", "fine", "loved", "superb", "fun"], ["awful", "dull", "hated", "poor", "slow"]
    rows = [(" ".join(rng.choices(good if y else bad, k=4) + rng.choices(good + bad, k=2)), "pos" if y else "neg")
            for y in (rng.random() < 0.5 for _ in range(200))]
    path = tmp_path_factory.mktemp("reviews") / "reviews.csv"
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows), encoding="utf-8")
    return path


def test_classifier_sigterm_then_exact_resume(tmp_path, reviews):
    ref, out, log = tmp_path / "ref", tmp_path / "run", tmp_path / "stderr.txt"
    assert cli.main(["classify", "train", str(reviews), *CLF, "--out", str(ref)]) == 0
    status = interrupt_argv(["classify", "train", str(reviews), *CLF, "--out", str(out)], out, signal.SIGTERM, log)
    err = log.read_text()
    assert status == 143 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].endswith(f"continue with: rnnkit classify train --resume {out}")
    ckpt.load_state(out / ckpt.STATE)
    assert cli.main(["classify", "train", "--resume", str(out), "--quiet"]) == 0
    ours, theirs = ckpt.read_metrics(out), ckpt.read_metrics(ref)
    keys = [k for k in theirs[0] if k not in ("elapsed_s", "tokens_per_s")]
    assert [r["step"] for r in ours] == list(range(4, CLF_STEPS + 1, 4))
    assert [{k: r.get(k) for k in keys} for r in ours] == [{k: r.get(k) for k in keys} for r in theirs]
    for name in (ckpt.WEIGHTS, ckpt.BEST):
        a, b = ckpt.load_weights(out / name), ckpt.load_weights(ref / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name


# ----------------------------------------------------------------------------- safe loading

@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small") / "run"
    n = torch.get_num_threads()
    try:
        assert cli.main(["train", *TINY, "--steps", "6", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(n)
    return out


class _WriteFile:
    """Unpickling this calls ``open(target, "w")``, creating the file: proof of code execution if it runs."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in ckpt.OWN_FILES:
        if (src / name).exists():
            (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_pickle_payload_in_state_is_refused_and_not_run(tmp_path, small_run, capsys):
    run = copy_run(small_run, tmp_path / "run")
    marker = tmp_path / "pwned"
    state = torch.load(run / ckpt.STATE, weights_only=True)
    state["task"] = {"state": _WriteFile(str(marker))}
    torch.save(state, run / ckpt.STATE)
    with pytest.raises(Exception):                              # the payload really is live pickle
        torch.load(run / ckpt.STATE, weights_only=True)
    before = {p.name: p.read_bytes() for p in run.iterdir()}

    assert cli.main(["train", "--resume", str(run), "--steps", "12", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rnnkit: error: {run / ckpt.STATE}: refused") and "not executed" in err
    assert err.count("\n") == 1
    assert not marker.exists()
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before    # nothing written, nothing deleted

    # Ordinary unpickling would have run it: the payload is real.
    torch.load(run / ckpt.STATE, weights_only=False)
    assert marker.exists()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(0, min(len(data), 64)):                      # the header: length and JSON of safetensors
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def _gut_json(path: Path) -> None:
    """Valid JSON, wrong shape: every table of run.json replaced by null (a hand edit gone wrong)."""
    data = json.loads(path.read_text())
    path.write_text(json.dumps({k: (None if isinstance(v, (dict, list)) else v) for k, v in data.items()}))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


COMMANDS = {
    ckpt.WEIGHTS: [["sample", "{run}", "--weights", "last", "--length", "5"], ["eval", "{run}", "--weights", "last"]],
    ckpt.BEST: [["sample", "{run}", "--length", "5"], ["eval", "{run}"]],
    ckpt.RUN_FILE: [["sample", "{run}", "--length", "5"], ["eval", "{run}"], ["train", "--resume", "{run}"]],
    ckpt.STATE: [["train", "--resume", "{run}", "--steps", "12"]],
}
DAMAGED = [(name, damage) for name in COMMANDS for damage in (_truncate, _flip, _empty, _gut_json)
           if damage is not _gut_json or name == ckpt.RUN_FILE]


@pytest.mark.parametrize("name, damage", DAMAGED, ids=[f"{n}-{d.__name__.strip('_')}" for n, d in DAMAGED])
def test_damaged_checkpoint_file_gives_one_line_naming_it(tmp_path, small_run, capsys, name, damage):
    run = copy_run(small_run, tmp_path / "run")
    damage(run / name)
    for command in COMMANDS[name]:
        code = cli.main([c.format(run=run) for c in command] + (["--quiet"] if command[0] == "train" else []))
        out, err = capsys.readouterr()
        assert code == 2, (command, err)
        assert err.startswith(f"rnnkit: error: {run / name}") and err.count("\n") == 1, err
        assert "Traceback" not in err


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(list(COMMANDS)), where=st.floats(0, 1), length=st.integers(1, 64),
       junk=st.binary(min_size=1, max_size=64), command=st.integers(0, 2))
def test_random_damage_never_tracebacks(tmp_path_factory, small_run, capsys, name, where, length, junk, command):
    """Bytes overwritten anywhere in any checkpoint file: the command works (the damage hit tensor data,
    which has no checksum), says in one line which file is damaged, or (resuming from weights the damage
    made inf/nan) stops on the non-finite loss with its usual message."""
    run = copy_run(small_run, tmp_path_factory.mktemp("damage") / "run")
    data = bytearray((run / name).read_bytes())
    at = int(where * (len(data) - 1))
    data[at:at + length] = (junk * length)[:length]
    (run / name).write_bytes(bytes(data))
    argv = [c.format(run=run) for c in COMMANDS[name][command % len(COMMANDS[name])]]
    if argv[0] == "train":
        argv += ["--steps", "12", "--quiet"] if "--steps" not in argv else ["--quiet"]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1] if err.strip() else ""
    # run.json is read field by field: a damaged value gets that field's own message ("unknown corpus 'alp abet'")
    assert (code == 0 or (code == 2 and err.count("\n") == 1 and (f"{run}" in err or name == ckpt.RUN_FILE))
            or (code == 3 and "loss became" in last and f"{run}" in last)), (code, err)


def test_state_from_another_model_is_refused(tmp_path, small_run, capsys):
    run = copy_run(small_run, tmp_path / "run")
    info = json.loads((run / ckpt.RUN_FILE).read_text())
    info["model"]["hidden_size"] = 12                             # run.json edited after training
    (run / ckpt.RUN_FILE).write_text(json.dumps(info))
    assert cli.main(["train", "--resume", str(run), "--steps", "12", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rnnkit: error: {run / ckpt.STATE}: does not fit") and err.count("\n") == 1
    assert cli.main(["sample", str(run), "--length", "3"]) == 2
    err = capsys.readouterr().err
    assert "weights do not fit the model in run.json" in err and err.count("\n") == 1


def test_a_second_training_in_the_same_run_directory_is_refused(tmp_path, capsys):
    """Two processes checkpointing into one directory would interleave their files: the second is refused
    with one line, and the first one's files are untouched."""
    from rnnkit import checkpoint as ckpt
    from rnnkit.cli import main

    corpus = tmp_path / "c.txt"
    corpus.write_text("abcdefghijklmnopqrstuvwxyz\n" * 200, encoding="utf-8")
    run = tmp_path / "run"
    flags = ["--steps", "2", "--hidden-size", "8", "--embed-size", "4", "--batch-size", "2", "--seq-len", "8",
             "--quiet", "--threads", "1"]
    assert main(["train", str(corpus), "--out", str(run), *flags]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    capsys.readouterr()
    with ckpt.run_lock(run):                                   # as if another process were training there
        assert main(["train", "--resume", str(run), "--steps", "4", "--quiet"]) == 2
        assert main(["train", str(corpus), "--out", str(run), "--overwrite", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("is in use by another rnnkit process" in line for line in err)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert main(["train", "--resume", str(run), "--steps", "4", "--quiet"]) == 0    # free again


def test_a_failed_new_run_leaves_no_directory_behind(tmp_path):
    from rnnkit.cli import main

    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    assert main(["train", str(empty), "--out", str(tmp_path / "a" / "b"), "--quiet"]) == 2
    assert not (tmp_path / "a").exists()
