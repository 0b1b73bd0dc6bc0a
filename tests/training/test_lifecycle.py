"""training/lifecycle.py: both tasks go through one run lifecycle, so what it promises holds for each."""

from __future__ import annotations

import json
import os

import pytest
import torch

from rnnkit import checkpoint as ckpt
from rnnkit import classify
from rnnkit.checkpoint import CheckpointError
from rnnkit.cli import main
from rnnkit.config import ClassifierConfig, ClassifierTrainConfig, DataConfig, ModelConfig, TextDataConfig, TrainConfig
from rnnkit.training import lm


@pytest.fixture
def reviews(tmp_path):
    path = tmp_path / "reviews.csv"
    rows = ["text,label"] + [f"a fine and moving film number {i},pos" for i in range(12)] + \
           [f"a dull and tedious mess number {i},neg" for i in range(12)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _start(task, tiny_corpus, reviews, out, **train):
    quiet = dict(quiet=True, log=lambda m: None)
    if task == "lm":
        cfg = TrainConfig(**{"batch_size": 4, "seq_len": 10, "steps": 6, "eval_every": 3, "lr": 3e-3,
                             "device": "cpu", "threads": 1, **train})
        return lm.train(DataConfig(path=str(tiny_corpus)), ModelConfig(hidden_size=8, embed_size=4, num_layers=1),
                        cfg, out, pause_at=3, **quiet)
    cfg = ClassifierTrainConfig(**{"batch_size": 4, "epochs": 2, "device": "cpu", "threads": 1, **train})
    return classify.train(TextDataConfig(path=str(reviews), min_freq=1), ClassifierConfig(hidden_size=8, embed_size=8),
                          cfg, out, pause_at=3, **quiet)


def _resume(task, out):
    return (lm.resume if task == "lm" else classify.resume)(out, quiet=True, log=lambda m: None)


TASKS = ["lm", "classifier"]


@pytest.mark.parametrize("task", TASKS)
def test_threads_are_capped_at_the_cpus(task, tiny_corpus, reviews, tmp_path):
    cpus = os.cpu_count() or 1
    _start(task, tiny_corpus, reviews, tmp_path / "run", threads=cpus + 7)
    assert torch.get_num_threads() <= cpus


@pytest.mark.parametrize("task", TASKS)
def test_a_state_that_does_not_fit_is_one_line(task, tiny_corpus, reviews, tmp_path):
    out = tmp_path / "run"
    _start(task, tiny_corpus, reviews, out)
    state = ckpt.load_state(out / ckpt.STATE)
    state["model"] = {k: v[..., :1] for k, v in state["model"].items()}      # weights of another shape
    ckpt.save_state(out / ckpt.STATE, state)
    with pytest.raises(CheckpointError, match=r"state.pt: does not fit the run described in run.json \(.*\); "
                                              r"was either file edited or replaced\?"):
        _resume(task, out)


@pytest.mark.parametrize("task", TASKS)
def test_resume_clears_what_a_killed_writer_left(task, tiny_corpus, reviews, tmp_path):
    out = tmp_path / "run"
    _start(task, tiny_corpus, reviews, out)
    stale = out / ".model.safetensors.1a2b3c4d.tmp"
    stale.write_bytes(b"half a file")
    _resume(task, out)
    assert not stale.exists()
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("task", TASKS)
def test_run_json_records_the_world_and_the_versions(task, tiny_corpus, reviews, tmp_path):
    out = tmp_path / "run"
    _start(task, tiny_corpus, reviews, out)
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 1 and run["rnnkit_version"] == "0.1.0" and run["torch_version"] == torch.__version__
    assert run["task"] == ("charlm" if task == "lm" else "classifier")


def test_classify_train_reads_a_config_file(reviews, tmp_path, capsys):
    toml = tmp_path / "clf.toml"
    toml.write_text('[data]\nmin_freq = 1\nmax_tokens = 0\n[model]\nhidden_size = 6\nembed_size = 5\ncell = "gru"\n'
                    '[train]\nbatch_size = 4\nepochs = 1\ntime_budget = "5m"\nthreads = 1\ndevice = "cpu"\n',
                    encoding="utf-8")
    out = tmp_path / "run"
    assert main(["classify", "train", str(reviews), "--config", str(toml), "--hidden-size", "7", "--quiet",
                 "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["model"]["hidden_size"] == 7 and run["model"]["embed_size"] == 5 and run["model"]["cell"] == "gru"
    assert run["data"]["min_freq"] == 1 and run["data"]["max_tokens"] is None
    assert run["train"]["time_budget"] == 300 and run["train"]["lr"] == ClassifierTrainConfig.lr
    capsys.readouterr()
    assert main(["classify", "train", "--resume", str(out), "--config", str(toml)]) == 2
    assert "drop --config" in capsys.readouterr().err


@pytest.mark.parametrize("argv,shown", [
    (["train", "--help"], ["state width per layer (default the recipe's: the widest of 256-1024",
                           "sequences per step (default 64)",
                           "peak learning rate (default the recipe's: 0.005 up to 256 wide and for the LSTM, 0.003 wider, 0.001 "
                           "for alphabets of over 1,000 symbols (0.002 for runs of under 1,000 steps))"]),
    (["classify", "train", "--help"], ["state width per direction (default 128)", "peak learning rate (default 0.003)",
                                       "linear warm-up (cosine, linear, plateau) (default 100)", "(default each epoch)"]),
    (["sample", "--help"], ["characters to generate (default 500)", "(default 1)"]),
])
def test_help_shows_the_defaults_of_the_config_fields(argv, shown, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    text = " ".join(capsys.readouterr().out.split())
    for s in shown:
        assert s in text, s


def test_adam_beta2_reaches_the_optimizer_and_a_run_from_before_it_resumes_with_the_old_value(tiny_corpus, reviews,
                                                                                              tmp_path):
    from rnnkit.training import lifecycle
    from rnnkit.training.trainer import make_optimizer
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert make_optimizer(params, TrainConfig(lr=1e-3, beta2=0.95)).param_groups[0]["betas"] == (0.9, 0.95)
    assert make_optimizer(params, TrainConfig(lr=1e-3, optimizer="adamw", beta2=0.9)).param_groups[0]["betas"] == (0.9, 0.9)
    out = tmp_path / "run"
    _start("lm", tiny_corpus, reviews, out, beta2=0.95)
    run = json.loads((out / "run.json").read_text())
    assert run["train"]["beta2"] == 0.95
    del run["train"]["beta2"]                                     # as a run.json written before the field
    (out / "run.json").write_text(json.dumps(run))
    _, cfg = lifecycle.read_resumable(out, lm.LMJob.task, lm.LMJob.what, None, lm.RESUMABLE_FIELDS)
    assert cfg.beta2 == 0.999                                     # what torch's Adam used for such runs
    assert _resume("lm", out)["step"] == 6
