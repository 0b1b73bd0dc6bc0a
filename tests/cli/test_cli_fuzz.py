"""Fuzzing the command line's flag surface (issue 6, part 5).

Hypothesis draws flag sets for `train`, `sample` and `eval` from values that fit, values that don't
(negative, zero, not numbers, infinities, empty, odd Unicode) and files that are missing, binary or in
another encoding. Whatever it draws, rnnkit answers with status 0 or 2 (3: a run stopped on a non-finite
loss) and never with a traceback. Budgets stay tiny (one or two steps, hidden sizes up to 8).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rnnkit import cli

FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

JUNK = st.sampled_from(["", " ", "-1", "0", "-0", "nan", "inf", "-inf", "1e999", "abc", "1.5", "0x10", "1_000",
                        "٣", "\U0001F600", "--steps", "1e-320", "9" * 30, "-" * 3])
WORDS = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x10FFFF, categories=None), max_size=8)


def small_int(lo: int, hi: int):
    return st.integers(lo, hi).map(str)


def number(lo: float, hi: float):
    return st.floats(lo, hi, allow_nan=False).map(repr)


# Values that fit, so that training really runs; junk is mixed in by `messy`.
TRAIN_FLAGS = {
    "--cell": st.sampled_from(["elman", "rnn", "lstm", "gru"]),
    "--backend": st.sampled_from(["fused", "scratch"]),
    "--embed-size": small_int(0, 8),
    "--hidden-size": small_int(1, 8),
    "--layers": small_int(1, 2),
    "--dropout": number(0, 0.9),
    "--batching": st.sampled_from(["consecutive", "random"]),
    "--batch-size": small_int(1, 8),
    "--seq-len": small_int(1, 24),
    "--optimizer": st.sampled_from(["sgd", "adam", "adamw"]),
    "--lr": number(1e-6, 10),
    "--weight-decay": number(0, 1),
    "--momentum": number(0, 0.99),
    "--schedule": st.sampled_from(["constant", "cosine", "linear", "plateau"]),
    "--warmup-steps": small_int(0, 10**6),
    "--min-lr-ratio": number(0, 1),
    "--clip": number(0, 10),
    "--ema": number(0, 10),
    "--epochs": number(1e-3, 1e6),
    "--time-budget": st.sampled_from(["1s", "90", "1m", "1h30m", "2.5m", "0.5"]),
    "--eval-every": st.sampled_from(["1", "2", "1s", "5m"]),
    "--eval-chars": small_int(2, 100),
    "--seed": st.integers(-2**63, 2**64 - 1).map(str),
    "--device": st.sampled_from(["cpu", "auto"]),
    "--precision": st.sampled_from(["fp32", "bf16"]),
    "--threads": small_int(1, 2),
    "--val-fraction": number(0.05, 0.5),
    "--limit-chars": small_int(300, 2000),
    "--encoding": st.sampled_from(["utf-8", "utf-8-sig"]),
    "--errors": st.sampled_from(["strict", "replace", "ignore"]),
    "--end-marker": st.sampled_from(["souris", "chat"]),
}
MESSY_ONLY = {"--start-marker": WORDS, "--member": WORDS, "--device": st.sampled_from(["cuda"]),
              "--encoding": st.sampled_from(["latin-1", "utf-16", "ascii", "cp1252", "klingon"])}


def messy(flag: str):
    valid = TRAIN_FLAGS.get(flag, st.nothing())
    return st.one_of(valid, MESSY_ONLY.get(flag, st.nothing()), JUNK)


BASE = ["--hidden-size", "8", "--embed-size", "4", "--layers", "1", "--batch-size", "2", "--seq-len", "8",
        "--eval-chars", "50"]                                   # tiny defaults; drawn flags come later and win
SWITCHES = ["--strip-gutenberg", "--newlines-to-spaces", "--overwrite", "--json"]


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a busy 2-core machine OpenMP's spinning threads can make a 10 ms evaluation take
    seconds. (conftest's autouse fixture restores the count afterwards, also after in-process `--threads`.)"""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    (d / "text.txt").write_text("Le petit chat dort. Il rêve de souris. " * 30, encoding="utf-8")
    (d / "latin1.txt").write_bytes(("Molière écrit. " * 40).encode("latin-1"))
    (d / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (d / "empty.txt").write_bytes(b"")
    n = torch.get_num_threads()
    try:
        assert cli.main(["train", str(d / "text.txt"), "--hidden-size", "8", "--embed-size", "4", "--layers", "1",
                         "--batch-size", "2", "--seq-len", "8", "--steps", "2", "--threads", "1", "--device", "cpu",
                         "--quiet", "--out", str(d / "run")]) == 0
    finally:
        torch.set_num_threads(n)
    return d


def check(argv: list[str], capsys) -> None:
    try:
        code = cli.main(argv)
    except SystemExit as e:                                           # argparse's usage errors
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    assert code in (0, 2, 3), (code, err)
    event(f"exit {code}")
    if code == 2:
        lines = [line for line in err.splitlines() if "error:" in line]
        assert len(lines) == 1, err                                  # one error line
    if code == 3:
        assert "loss became" in err


@FUZZ
@given(data=st.data())
def test_train_flags_never_traceback(data, folder, capsys, tmp_path_factory):
    """Half the examples use only values that fit (they train), half mix in junk and bad files."""
    draw = data.draw
    clean = draw(st.booleans())
    flags = draw(st.lists(st.sampled_from(sorted(TRAIN_FLAGS if clean else {**TRAIN_FLAGS, **MESSY_ONLY})),
                          max_size=8, unique=True))
    sources = ["text.txt", "--corpus alphabet"] + ([] if clean else ["latin1.txt", "binary.bin", "empty.txt",
                                                                     "missing.txt", "--corpus hamlet"])
    source = draw(st.sampled_from(sources))
    argv = ["train", *(source.split() if source.startswith("--") else [str(folder / source)]), *BASE]
    for flag in flags:
        argv += [flag, draw(TRAIN_FLAGS[flag] if clean else messy(flag))]
    argv += draw(st.lists(st.sampled_from(SWITCHES if not clean else SWITCHES[1:]), max_size=2, unique=True))
    argv += ["--steps", draw(st.sampled_from(["1", "2"])), "--quiet", "--out", str(tmp_path_factory.mktemp("out") / "r")]
    if "--threads" not in flags:
        argv += ["--threads", "1"]
    check(argv, capsys)


def maybe_junk(valid):
    return st.one_of(valid, valid, valid, JUNK)


SAMPLE_FLAGS = {
    "--prompt": st.text(alphabet=st.characters(codec=None, categories=None), max_size=12),
    "--length": maybe_junk(small_int(0, 40)),
    "--temperature": maybe_junk(number(0, 5)),
    "--top-k": maybe_junk(small_int(1, 50)),
    "--top-p": maybe_junk(number(1e-3, 1)),
    "--num-samples": maybe_junk(small_int(1, 3)),
    "--seed": maybe_junk(st.integers(-2**63, 2**64 - 1).map(str)),
    "--weights": maybe_junk(st.sampled_from(["best", "last"])),
    "--device": maybe_junk(st.sampled_from(["cpu", "auto", "cuda"])),
    "--separator": WORDS,
    "--beam": maybe_junk(small_int(1, 6)),
    "--num-return": maybe_junk(small_int(1, 6)),
    "--stop": WORDS,
    "--length-penalty": maybe_junk(number(0, 2)),
}


@FUZZ
@given(data=st.data())
def test_sample_flags_never_traceback(data, folder, capsys):
    flags = data.draw(st.lists(st.sampled_from(sorted(SAMPLE_FLAGS)), max_size=6, unique=True))
    run = data.draw(st.sampled_from(["run", "run", "run", "text.txt", "missing"]))
    argv = ["sample", str(folder / run)]
    for flag in flags:
        argv += [flag, data.draw(SAMPLE_FLAGS[flag])]
    if data.draw(st.booleans()):
        argv += ["--no-prompt"]
    if data.draw(st.booleans()):
        argv += ["--prompt-file", str(folder / data.draw(st.sampled_from(["text.txt", "latin1.txt", "missing"])))]
    check(argv, capsys)


@FUZZ
@given(data=st.data())
def test_eval_flags_never_traceback(data, folder, capsys):
    argv = ["eval", str(folder / data.draw(st.sampled_from(["run", "run", "missing", "text.txt"])))]
    if data.draw(st.booleans()):
        argv += [str(folder / data.draw(st.sampled_from(["text.txt", "latin1.txt", "binary.bin", "empty.txt",
                                                          "missing.txt"])))]
    for flag, values in (("--encoding", messy("--encoding")), ("--errors", messy("--errors")),
                         ("--weights", SAMPLE_FLAGS["--weights"]), ("--device", SAMPLE_FLAGS["--device"]),
                         ("--member", WORDS)):
        if data.draw(st.booleans()):
            argv += [flag, data.draw(values)]
    if data.draw(st.booleans()):
        argv += ["--json"]
    check(argv, capsys)
