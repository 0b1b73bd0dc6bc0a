"""The bad-input matrix of issue 6, part 4, through the command line (``cli.main``, in process).

Every mistake gets one line on stderr that says what is wrong and what to do, a non-zero exit status, no
traceback, and leaves every file as it was: the inputs, and a finished run sitting in the same folder.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from rnnkit import checkpoint as ckpt
from rnnkit import cli

TINY = ["--hidden-size", "8", "--embed-size", "4", "--layers", "1", "--batch-size", "2", "--seq-len", "8",
        "--threads", "1", "--device", "cpu", "--quiet"]
TEXT = "the cat sat on the mat. " * 40                            # 960 characters
CLF = ["--hidden-size", "8", "--embed-size", "8", "--batch-size", "4", "--threads", "1", "--device", "cpu", "--quiet"]
REVIEWS = "text,label\n" + "".join(f"{t},{lab}\n" for t, lab in [("great film", "pos"), ("awful film", "neg"),
                                                                  ("loved it", "pos"), ("hated it", "neg")] * 8)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a busy 2-core machine OpenMP's spinning threads can make a 10 ms evaluation take
    seconds. (conftest's autouse fixture restores the count afterwards, also after in-process `--threads`.)"""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    return make_inputs(tmp_path_factory.mktemp("inputs"))


def make_inputs(d: Path) -> Path:
    """One folder with every kind of bad (and good) input, a finished language model run and a classifier."""
    (d / "good.txt").write_text(TEXT, encoding="utf-8")
    (d / "other.txt").write_text(TEXT.upper(), encoding="utf-8")
    (d / "empty.txt").write_bytes(b"")
    (d / "bom.txt").write_bytes(b"\xef\xbb\xbf")
    (d / "short.txt").write_text("a short text, a few dozen characters long.\n", encoding="utf-8")
    (d / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (d / "latin1.txt").write_bytes(("Molière écrit. " * 60).encode("latin-1"))
    with zipfile.ZipFile(d / "two.zip", "w") as z:
        z.writestr("a.txt", TEXT)
        z.writestr("b.txt", TEXT)
    (d / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    (d / "folder").mkdir()
    # labelled data for the classifier
    (d / "reviews.csv").write_text(REVIEWS, encoding="utf-8")
    (d / "one_label.csv").write_text("text,label\n" + "great film,pos\n" * 20, encoding="utf-8")
    (d / "columns.csv").write_text("review,sentiment\n" + "great film,pos\nawful film,neg\n" * 10, encoding="utf-8")
    (d / "unnamed.csv").write_text("words,mood\n" + "great film,pos\nawful film,neg\n" * 10, encoding="utf-8")
    (d / "header_only.csv").write_text("text,label\n", encoding="utf-8")
    (d / "unclosed.csv").write_text('text,label\n"great film,pos\n', encoding="utf-8")
    (d / "new_label.csv").write_text("text,label\ngreat,pos\nfine,meh\n", encoding="utf-8")
    (d / "reviews.jsonl").write_text('{"text": "great", "stars": 5}\n' * 20, encoding="utf-8")
    (d / "not_json.jsonl").write_text('{"text": "great", "label": "pos"}\nnot json\n', encoding="utf-8")
    n = torch.get_num_threads()
    try:
        assert cli.main(["train", str(d / "good.txt"), *TINY, "--steps", "4", "--eval-every", "2",
                         "--out", str(d / "run")]) == 0
        assert cli.main(["classify", "train", str(d / "reviews.csv"), *CLF, "--steps", "2", "--out", str(d / "crun")]) == 0
    finally:
        torch.set_num_threads(n)
    return d


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(d.rglob("*"))}


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``rnnkit ARGV``; an exception escaping ``main`` fails the test."""
    try:
        code = cli.main(argv)
    except SystemExit as e:                                      # argparse: usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# (argv, words the message must hold). {d} is the inputs folder, {run} its finished run.
CASES = {
    # --- paths and files
    "missing path": (["train", "{d}/nope.txt", "--out", "{d}/new"], ["nope.txt: no such file"]),
    "directory as file": (["train", "{d}/folder", "--out", "{d}/new"], ["is a directory"]),
    "empty file": (["train", "{d}/empty.txt", "--out", "{d}/new"], ["empty.txt is empty"]),
    "only a BOM": (["train", "{d}/bom.txt", "--out", "{d}/new"], ["bom.txt holds no text"]),
    "shorter than a batch": (["train", "{d}/short.txt", "--steps", "1", "--out", "{d}/new"],
                             ["fewer than one batch", "--batch-size 64 x --seq-len 50", "--seq-len"]),
    "shorter than a random chunk": (["train", "{d}/short.txt", "--batching", "random", "--steps", "1",
                                     "--out", "{d}/new"], ["fewer than --seq-len 50 + 1", "--seq-len"]),
    "binary file": (["train", "{d}/binary.bin", "--out", "{d}/new"], ["binary file", "NUL byte at offset 0"]),
    "invalid utf-8": (["train", "{d}/latin1.txt", "--out", "{d}/new"],
                      ["not valid utf-8", "byte 0xe8 at offset 4", "--encoding", "--errors replace"]),
    "zip with several members": (["train", "{d}/two.zip", "--out", "{d}/new"],
                                 ["holds 2 files (a.txt, b.txt)", "--member"]),
    "zip member absent": (["train", "{d}/two.zip", "--member", "c.txt", "--out", "{d}/new"], ["no member 'c.txt'"]),
    "not really a zip": (["train", "{d}/broken.zip", "--out", "{d}/new"], ["broken.zip: cannot read it"]),
    "--member without zip": (["train", "{d}/good.txt", "--member", "a.txt", "--out", "{d}/new"], ["is not a .zip"]),
    "unknown encoding": (["train", "{d}/good.txt", "--encoding", "klingon", "--out", "{d}/new"],
                         ["unknown encoding 'klingon'"]),
    "unknown corpus": (["train", "--corpus", "hamlet", "--out", "{d}/new"], ["unknown corpus 'hamlet'"]),
    "no data at all": (["train", "--out", "{d}/new"], ["give a text file"]),
    "marker not found": (["train", "{d}/good.txt", "--start-marker", "ACT I", "--out", "{d}/new"],
                         ["--start-marker 'ACT I' does not occur"]),
    "not gutenberg": (["train", "{d}/good.txt", "--strip-gutenberg", "--out", "{d}/new"], ["no '*** START OF'"]),
    "missing test file": (["train", "{d}/good.txt", *TINY, "--steps", "1", "--test", "{d}/nope.txt",
                           "--out", "{d}/new"], ["nope.txt: no such file"]),
    "missing config": (["train", "{d}/good.txt", "--config", "{d}/nope.toml", "--out", "{d}/new"],
                       ["--config", "no such file"]),
    # --- numbers: negative or zero lengths, sizes and budgets
    "steps 0": (["train", "{d}/good.txt", "--steps", "0"], ["--steps: must be at least 1, got 0"]),
    "steps -5": (["train", "{d}/good.txt", "--steps", "-5"], ["--steps: must be at least 1, got -5"]),
    "steps 1.5": (["train", "{d}/good.txt", "--steps", "1.5"], ["--steps: expected a whole number"]),
    "epochs 0": (["train", "{d}/good.txt", "--epochs", "0"], ["--epochs: must be > 0"]),
    "time budget 0": (["train", "{d}/good.txt", "--time-budget", "0"], ["--time-budget", "must be positive"]),
    "time budget -1m": (["train", "{d}/good.txt", "--time-budget=-1m"], ["--time-budget", "cannot read duration"]),
    "time budget nan": (["train", "{d}/good.txt", "--time-budget", "nan"], ["--time-budget", "cannot read duration"]),
    "hidden size 0": (["train", "{d}/good.txt", "--hidden-size", "0"], ["--hidden-size: must be at least 1"]),
    "layers 0": (["train", "{d}/good.txt", "--layers", "0"], ["--layers: must be at least 1"]),
    "embed size -1": (["train", "{d}/good.txt", "--embed-size", "-1"], ["--embed-size: must be 0 or more"]),
    "batch size 0": (["train", "{d}/good.txt", "--batch-size", "0"], ["--batch-size: must be at least 1"]),
    "seq len -3": (["train", "{d}/good.txt", "--seq-len", "-3"], ["--seq-len: must be at least 1"]),
    "lr 0": (["train", "{d}/good.txt", "--lr", "0"], ["--lr: must be > 0"]),
    "lr inf": (["train", "{d}/good.txt", "--lr", "inf"], ["--lr: must be a finite number"]),
    "lr word": (["train", "{d}/good.txt", "--lr", "fast"], ["--lr: expected a number, got 'fast'"]),
    "dropout 1": (["train", "{d}/good.txt", "--dropout", "1"], ["--dropout: must be < 1"]),
    "clip -1": (["train", "{d}/good.txt", "--clip", "-1"], ["--clip: must be >= 0"]),
    "val fraction 1": (["train", "{d}/good.txt", "--val-fraction", "1"], ["--val-fraction: must be < 1"]),
    "limit chars 0": (["train", "{d}/good.txt", "--limit-chars", "0"], ["--limit-chars: must be at least 1"]),
    "eval every 0": (["train", "{d}/good.txt", "--eval-every", "0"], ["--eval-every: must be at least 1"]),
    "eval chars 0": (["train", "{d}/good.txt", "--eval-chars", "0"], ["--eval-chars: must be at least 1"]),
    "threads 0": (["train", "{d}/good.txt", "--threads", "0"], ["--threads: must be at least 1"]),
    "sample length -1": (["sample", "{run}", "--length", "-1"], ["--length: must be at least 1, got -1"]),
    "sample length 0": (["sample", "{run}", "--length", "0"], ["--length: must be at least 1, got 0"]),
    "sample length huge": (["sample", "{run}", "--length", "9" * 30], ["length must be at most 1,000,000"]),
    "num samples 0": (["sample", "{run}", "--num-samples", "0"], ["--num-samples: must be at least 1"]),
    "num samples huge": (["sample", "{run}", "--num-samples", "999999999999999999999999"], ["num_samples must be at most 100,000"]),
    # --- sampling knobs
    "temperature -0.5": (["sample", "{run}", "--temperature", "-0.5"], ["--temperature: must be >= 0, got -0.5"]),
    "temperature nan": (["sample", "{run}", "--temperature", "nan"], ["--temperature: must be a finite number"]),
    "top-p 0": (["sample", "{run}", "--top-p", "0"], ["--top-p: must be > 0, got 0"]),
    "top-p 1.5": (["sample", "{run}", "--top-p", "1.5"], ["--top-p: must be <= 1, got 1.5"]),
    "top-p -0.1": (["sample", "{run}", "--top-p", "-0.1"], ["--top-p: must be > 0"]),
    "top-k 0": (["sample", "{run}", "--top-k", "0"], ["--top-k: must be at least 1, got 0"]),
    "top-k -2": (["sample", "{run}", "--top-k", "-2"], ["--top-k: must be at least 1, got -2"]),
    "prompt and prompt file": (["sample", "{run}", "--prompt", "a", "--prompt-file", "{d}/good.txt"],
                               ["--prompt or --prompt-file, not both"]),
    "prompt file missing": (["sample", "{run}", "--prompt-file", "{d}/nope.txt"], ["--prompt-file", "cannot read"]),
    "prompt file not utf-8": (["sample", "{run}", "--prompt-file", "{d}/latin1.txt"], ["--prompt-file", "cannot read"]),
    # --- runs
    "sample from nowhere": (["sample", "{d}/nope"], ["no such run directory"]),
    "sample from a file": (["sample", "{d}/good.txt"], ["is a file, not a run directory"]),
    "sample from a plain folder": (["sample", "{d}/folder"], ["is not an rnnkit run"]),
    "eval missing file": (["eval", "{run}", "{d}/nope.txt"], ["nope.txt: no such file"]),
    "eval binary file": (["eval", "{run}", "{d}/binary.bin"], ["binary file"]),
    "eval unknown chars only": (["eval", "{run}", "{d}/latin1.txt", "--encoding", "latin-1"], []),
    "out holds another run": (["train", "{d}/good.txt", *TINY, "--steps", "1", "--out", "{run}"],
                              ["already holds a run", "--resume", "--overwrite"]),
    "out is a file": (["train", "{d}/good.txt", *TINY, "--steps", "1", "--out", "{d}/good.txt"],
                      ["is not a directory"]),
    "overwrite with bad data": (["train", "{d}/nope.txt", "--out", "{run}", "--overwrite"], ["no such file"]),
    "resume with other data": (["train", "--resume", "{run}", "{d}/other.txt", "--steps", "8"],
                               ["differs from the text this run was trained on"]),
    "resume with changed model": (["train", "--resume", "{run}", "--hidden-size", "16", "--steps", "8"],
                                  ["--resume continues a run with its own data and model settings",
                                   "drop --hidden-size"]),
    "resume with changed batch": (["train", "--resume", "{run}", "--batch-size", "3", "--steps", "8"],
                                  ["cannot change batch_size when resuming"]),
    "resume a finished run": (["train", "--resume", "{run}"], ["already finished its budget at step 4",
                                                              "larger --steps"]),
    "resume nothing": (["train", "--resume", "{d}/nope"], ["no such run directory"]),
    "resume a plain folder": (["train", "--resume", "{d}/folder"], ["is not an rnnkit run"]),
    # --- the classifier
    "clf missing column": (["classify", "train", "{d}/unnamed.csv", "--out", "{d}/new"],
                           ["has no column 'text'", "'words', 'mood'", "--text-column"]),
    "clf missing jsonl key": (["classify", "train", "{d}/reviews.jsonl", "--out", "{d}/new"],
                              ["line 1: no key 'label'", "--label-column"]),
    "clf single label": (["classify", "train", "{d}/one_label.csv", "--out", "{d}/new"],
                         ["every training text has the label 'pos'", "at least two labels"]),
    "clf header only": (["classify", "train", "{d}/header_only.csv", "--out", "{d}/new"], ["no labelled texts"]),
    "clf unclosed quote": (["classify", "train", "{d}/unclosed.csv", "--out", "{d}/new"], ["unclosed.csv"]),
    "clf not json": (["classify", "train", "{d}/not_json.jsonl", "--out", "{d}/new"], ["line 2: not JSON"]),
    "clf unknown format": (["classify", "train", "{d}/good.txt", "--out", "{d}/new"], ["cannot tell the format"]),
    "clf missing file": (["classify", "train", "{d}/nope.csv", "--out", "{d}/new"], ["nope.csv"]),
    "clf binary file": (["classify", "train", "{d}/binary.bin", "--format", "csv", "--out", "{d}/new"],
                        ["binary.bin"]),
    "clf hidden size 0": (["classify", "train", "{d}/reviews.csv", "--hidden-size", "0"],
                          ["--hidden-size: must be at least 1"]),
    "clf max tokens -1": (["classify", "train", "{d}/reviews.csv", "--max-tokens", "-1"],
                          ["--max-tokens: must be 0 or more"]),
    "clf epochs 0": (["classify", "train", "{d}/reviews.csv", "--epochs", "0"], ["--epochs: must be > 0"]),
    "clf eval new label": (["classify", "eval", "{d}/crun", "{d}/new_label.csv"],
                           ["label(s) the model was not trained on: 'meh'"]),
    "clf predict with an LM": (["classify", "predict", "{run}", "great"], ["is a charlm run, not a classifier"]),
    "clf resume an LM": (["classify", "train", "--resume", "{run}"], ["is a charlm run"]),
    "clf out holds a run": (["classify", "train", "{d}/reviews.csv", *CLF, "--steps", "1", "--out", "{d}/crun"],
                            ["already holds a run", "--overwrite"]),
    "sample a classifier": (["sample", "{d}/crun"], ["is a classifier run, not a character language model"]),
    "resume a classifier as LM": (["train", "--resume", "{d}/crun"], ["is a classifier run"]),
    "resume a classifier with other data": (["classify", "train", "--resume", "{d}/crun", "{d}/columns.csv",
                                             "--steps", "4"], ["columns.csv"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_line_and_damages_nothing(name, files, capsys):
    argv, words = CASES[name]
    argv = [a.format(d=files, run=files / "run") for a in argv]
    before = snapshot(files)
    code, out, err = run_cli(argv, capsys)
    if name == "eval unknown chars only":             # not an error: every character of the file is known...
        assert code == 0 and "not in the model's vocabulary were skipped" in err, err   # ...or skipped, with a warning
        return
    assert code == 2, (code, err)
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err     # one line
    assert err.startswith(("rnnkit: error: ", "rnnkit train: error: ", "rnnkit sample: error: ",
                           "rnnkit classify train: error: ")), err
    assert "Traceback" not in err
    for w in words:
        assert w in err, f"{w!r} not in {err!r}"
    assert snapshot(files) == before                 # no file created, changed or deleted


def test_fixes_suggested_by_the_messages_work(files, capsys, tmp_path):
    """Following the advice of the encoding, zip and short-corpus messages makes training work."""
    for extra in (["latin1.txt", "--encoding", "latin-1"], ["latin1.txt", "--errors", "replace"],
                  ["two.zip", "--member", "b.txt"]):
        code, _, err = run_cli(["train", str(files / extra[0]), *extra[1:], *TINY, "--steps", "1",
                                "--out", str(tmp_path / extra[-1])], capsys)
        assert code == 0, err
    # The short-corpus message names flags that fit; use them.
    code, _, err = run_cli(["train", str(files / "short.txt"), "--steps", "1", "--out", str(tmp_path / "s")], capsys)
    suggestion = err.split("e.g. ")[1].split(")")[0].split()
    code, _, err = run_cli(["train", str(files / "short.txt"), *suggestion, "--steps", "1", *TINY[:4],
                            "--quiet", "--out", str(tmp_path / "s")], capsys)
    assert code == 0, (suggestion, err)


def test_overwrite_replaces_a_run_only_when_asked(files, capsys, tmp_path):
    out = tmp_path / "run"
    assert run_cli(["train", str(files / "good.txt"), *TINY, "--steps", "2", "--out", str(out)], capsys)[0] == 0
    first = json.loads((out / ckpt.RUN_FILE).read_text())["data_fingerprint"]
    code, _, err = run_cli(["train", str(files / "other.txt"), *TINY, "--steps", "2", "--out", str(out)], capsys)
    assert code == 2 and "already holds a run" in err
    code, _, err = run_cli(["train", str(files / "other.txt"), *TINY, "--steps", "2", "--out", str(out),
                            "--overwrite"], capsys)
    assert code == 0, err
    assert json.loads((out / ckpt.RUN_FILE).read_text())["data_fingerprint"] != first


def test_nan_loss_stops_keeps_last_good_checkpoint(files, capsys, tmp_path):
    """A learning rate of 1e38 without clipping sends a tiny LSTM's outputs to inf within a few steps."""
    out = tmp_path / "run"
    code, _, err = run_cli(["train", str(files / "good.txt"), *TINY, "--cell", "lstm", "--optimizer", "sgd", "--lr", "1e38",
                            "--clip", "0", "--steps", "50", "--eval-every", "2", "--out", str(out)], capsys)
    assert code == 3, err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err
    assert last.startswith(("rnnkit: loss became ", "rnnkit: validation loss became ")), last
    assert "Try a lower --lr (now 1e+38) or gradient clipping (--clip 1)" in last
    state = ckpt.load_state(out / ckpt.STATE)
    kept = state["progress"]["step"]
    assert f"The last good checkpoint (step {kept}) is kept in {out}" in last
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert all(torch.isfinite(v).all() for v in ckpt.load_weights(out / ckpt.WEIGHTS).values())
    assert [r["step"] for r in ckpt.read_metrics(out)][-1] == kept
    bad_step = int(last.split(" at step ")[1].split(";")[0])
    assert kept < bad_step
    # The kept checkpoint opens and scores (its loss is huge but finite: the lr was absurd from step 1).
    code, text, err = run_cli(["eval", str(out)], capsys)
    assert code == 0 and "nats/char" in text, err


def test_nan_before_first_checkpoint_says_none_was_saved(files, capsys, tmp_path):
    out = tmp_path / "run"
    code, _, err = run_cli(["train", str(files / "good.txt"), *TINY, "--optimizer", "adam", "--lr", "1e38",
                            "--clip", "0", "--steps", "50", "--eval-every", "40", "--out", str(out)], capsys)
    assert code == 3 and "No checkpoint had been saved yet" in err, err


def test_classifier_overwrite_with_bad_data_keeps_the_old_run(files, capsys, tmp_path):
    out = tmp_path / "crun"
    assert run_cli(["classify", "train", str(files / "reviews.csv"), *CLF, "--steps", "1", "--out", str(out)],
                   capsys)[0] == 0
    before = snapshot(out)
    code, _, err = run_cli(["classify", "train", str(files / "one_label.csv"), *CLF, "--steps", "1",
                            "--out", str(out), "--overwrite"], capsys)
    assert code == 2 and "at least two labels" in err
    assert snapshot(out) == before
