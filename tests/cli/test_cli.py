"""Every command end to end on a tiny corpus, through the real entry point."""

import json
import subprocess
import sys

import pytest

from rnnkit.cli import main

TINY = ["--hidden-size", "16", "--embed-size", "8", "--layers", "2", "--batch-size", "4", "--seq-len", "12",
        "--steps", "6", "--eval-every", "3", "--eval-chars", "400", "--threads", "1", "--quiet"]


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("cell", ["elman", "rnn", "lstm", "gru"])
def test_train_eval_sample_for_every_cell(cell, tiny_corpus, tmp_path, capsys):
    out = tmp_path / cell
    code, stdout, err = run(capsys, "train", tiny_corpus, "--cell", cell, "--out", out, *TINY)
    assert code == 0, err
    assert "validation:" in stdout and "bits/char" in stdout

    code, stdout, err = run(capsys, "eval", out, "--json")
    assert code == 0, err
    score = json.loads(stdout)
    assert set(score) >= {"nats_per_char", "perplexity", "bits_per_char", "chars"}

    code, stdout, err = run(capsys, "eval", out, tiny_corpus)
    assert code == 0 and "bits/char" in stdout

    code, a, err = run(capsys, "sample", out, "--prompt", "ROMEO:", "--length", "40", "--seed", "1",
                       "--temperature", "0.8", "--top-k", "5")
    assert code == 0, err
    assert a.startswith("ROMEO:") and len(a) == len("ROMEO:") + 40 + 1
    _, b, _ = run(capsys, "sample", out, "--prompt", "ROMEO:", "--length", "40", "--seed", "1",
                  "--temperature", "0.8", "--top-k", "5")
    assert a == b                                                   # same seed, same text


def test_resume_through_the_cli(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(capsys, "train", tiny_corpus, "--out", out, *TINY)[0] == 0
    code, _, err = run(capsys, "train", "--resume", out, "--steps", "9", "--quiet")
    assert code == 0, err
    code, _, err = run(capsys, "train", "--resume", out, "--hidden-size", "32")
    assert code == 2 and "--hidden-size" in err


def test_unknown_prompt_characters_are_skipped_with_a_warning(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    run(capsys, "train", tiny_corpus, "--out", out, *TINY)
    code, stdout, err = run(capsys, "sample", out, "--prompt", "Ωmega 🙂", "--length", "10", "--seed", "0")
    assert code == 0
    assert "not in the model's vocabulary" in err and "'Ω'" in err
    code, stdout, err = run(capsys, "sample", out, "--prompt", "🙂", "--length", "5", "--seed", "0", "--no-prompt")
    assert code == 0 and len(stdout) == 6


def test_eval_file_with_unknown_characters(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    run(capsys, "train", tiny_corpus, "--out", out, *TINY)
    other = tmp_path / "other.txt"
    text = "Some text with ünknown çharacters ☃ and more."
    other.write_text(text, encoding="utf-8")
    code, stdout, err = run(capsys, "eval", out, other, "--json")
    assert code == 0 and "skipped" in err
    from rnnkit.runs import load
    unknown = sum(load(out).vocab.unknown(text).values())
    assert unknown >= 3
    assert json.loads(stdout)["chars"] == len(text) - unknown - 1   # every known character after the first


def test_several_samples_come_as_one_batch(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    run(capsys, "train", tiny_corpus, "--out", out, *TINY)
    code, stdout, _ = run(capsys, "sample", out, "--num-samples", "3", "--length", "20", "--seed", "2",
                          "--separator", "\n---\n", "--prompt", "A")
    assert code == 0 and stdout.count("\n---\n") == 2


def test_toml_config_and_flags_override_it(tiny_corpus, tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'[data]\npath = "{tiny_corpus}"\nlimit_chars = 3000\n[model]\ncell = "gru"\nhidden_size = 12\n'
                   f'[train]\nsteps = 4\nbatch_size = 4\nseq_len = 10\ntime_budget = "1m"\n', encoding="utf-8")
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", "--config", cfg, "--hidden-size", "10", "--out", out, "--quiet")
    assert code == 0, err
    saved = json.loads((out / "run.json").read_text())
    assert saved["model"]["cell"] == "gru" and saved["model"]["hidden_size"] == 10
    assert saved["data"]["limit_chars"] == 3000 and saved["train"]["time_budget"] == 60


def test_bundled_corpus_by_name(tmp_path, capsys):
    code, stdout, err = run(capsys, "train", "--corpus", "alphabet", "--out", tmp_path / "a", *TINY)
    assert code == 0, err
    code, stdout, _ = run(capsys, "corpora")
    assert "moliere" in stdout and "shakespeare" in stdout and "alphabet" in stdout


@pytest.mark.parametrize("args,needle", [
    (["train", "missing.txt"], "no such file"),
    (["train"], "--corpus"),
    (["eval", "nowhere"], "no such run"),
    (["sample", "nowhere"], "no such run"),
])
def test_user_errors_are_one_line(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *args)
    assert code == 2
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_python_dash_m_and_console_script_work(tmp_path):
    r = subprocess.run([sys.executable, "-m", "rnnkit", "corpora"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "moliere" in r.stdout
