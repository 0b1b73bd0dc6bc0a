"""nn/registry.py: a cell type is declared once. A toy cell with a three-part state, declared here in the
test alone, trains, evaluates, samples and resumes through the library and the command line."""

from __future__ import annotations

import json

import pytest
import torch

from rnnkit import checkpoint as ckpt
from rnnkit.cli import main
from rnnkit.config import ConfigError, DataConfig, ModelConfig, SampleConfig, TrainConfig
from rnnkit.inference.sampling import generate
from rnnkit.nn import registry
from rnnkit.nn.cells import Cell
from rnnkit.nn.models import CharLM
from rnnkit.runs import load
from rnnkit.training.lm import resume, train


class WindowCell(Cell):
    """h' = σ(v) ⊙ mean(window of the last c's), c' = c/2 + tanh(u), with [u v] = W_ih x + W_hh h + b: a state
    of three parts, one of them (B, window, H), and a hyperparameter of its own."""

    gates = 2

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, window: int = 3):
        super().__init__(input_size, hidden_size, bias)
        self.window = window

    def recur(self, xp_t, state):
        h, c, past = state                                          # (B, H), (B, H), (B, W, H)
        u, v = torch.addmm(xp_t, h, self.weight_hh.t()).chunk(2, dim=-1)
        c = 0.5 * c + torch.tanh(u)
        past = torch.cat([past[:, 1:], c[:, None]], dim=1)
        return torch.sigmoid(v) * past.mean(1), c, past

    def init_state(self, batch_size: int):
        h = self.weight_hh.new_zeros(batch_size, self.hidden_size)
        return h, h.clone(), h.new_zeros(batch_size, self.window, self.hidden_size)


@pytest.fixture
def window_cell():
    spec = registry.register(registry.CellSpec("window", WindowCell, "a test cell", state=("h", "c", "past"),
                                               options={"window": 3}))
    yield spec
    registry.unregister("window")


SMALL = dict(cell="window", embed_size=6, hidden_size=10, num_layers=2)


def _train_cfg(**kw):
    return TrainConfig(**{"batch_size": 4, "seq_len": 12, "steps": 8, "eval_every": 4, "seed": 3, "lr": 1e-2,
                          "warmup_steps": 2, "device": "cpu", "threads": 1, **kw})


def test_the_builtin_cells_are_one_entry_each():
    assert registry.names() == ("elman", "rnn", "lstm", "gru", "mingru", "rglru")
    assert registry.names(classifier=True) == ("rnn", "lstm", "gru", "mingru", "rglru")
    assert registry.get("lstm").state == ("h", "c") and registry.get("lstm").gates == ("i", "f", "g", "o")
    with pytest.raises(ValueError, match="unknown cell 'lstmm'; choose from elman, rnn, lstm, gru"):
        registry.get("lstmm")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.CellSpec("gru", WindowCell))


def test_a_new_cell_is_one_entry(window_cell, tiny_corpus, tmp_path):
    """Train, evaluate, sample and resume exactly a cell the library has never seen."""
    data, model = DataConfig(path=str(tiny_corpus)), ModelConfig(**SMALL, cell_options={"window": 2})
    full = train(data, model, _train_cfg(), tmp_path / "full", quiet=True, log=lambda m: None)
    assert full["step"] == 8 and full["val_nats_per_char"] < 4.0
    run = json.loads((tmp_path / "full" / "run.json").read_text())
    assert run["model"]["cell"] == "window" and run["model"]["cell_options"] == {"window": 2}

    paused = train(data, model, _train_cfg(), tmp_path / "split", quiet=True, pause_at=5, log=lambda m: None)
    assert paused["paused"]
    state = ckpt.load_state(tmp_path / "split" / ckpt.STATE)["task"]["state"]
    assert [tuple(t.shape) for t in state] == [(2, 4, 10), (2, 4, 10), (2, 4, 2, 10)]   # three parts, carried
    resume(tmp_path / "split", quiet=True, log=lambda m: None)
    keep = lambda d: [(r["step"], r["train_loss"], r["val_loss"]) for r in ckpt.read_metrics(d)]
    assert keep(tmp_path / "split") == keep(tmp_path / "full")

    lm = load(tmp_path / "full")
    assert lm.model.rnn.cells[0].window == 2
    cfg = SampleConfig(prompt="ROMEO:", length=80, seed=4)
    text = generate(lm.model, lm.vocab, cfg)[0]
    assert len(text) == 80 and generate(lm.model, lm.vocab, cfg) == [text]


def test_a_new_cell_from_the_command_line(window_cell, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(tiny_corpus), "--cell", "window", "--cell-option", "window=4", "--hidden-size", "8",
                 "--embed-size", "4", "--layers", "1", "--batch-size", "4", "--seq-len", "10", "--steps", "3",
                 "--threads", "1", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["model"]["cell_options"] == {"window": 4}
    capsys.readouterr()
    assert main(["sample", str(out), "--length", "30", "--seed", "1", "--no-prompt"]) == 0
    assert len(capsys.readouterr().out) == 31
    assert main(["train", str(tiny_corpus), "--cell", "window", "--cell-option", "width=4", "--out",
                 str(tmp_path / "bad")]) == 2
    assert "cell window has no option width (its options: window)" in capsys.readouterr().err


def test_cell_options_are_checked_and_recorded(window_cell):
    assert ModelConfig(cell="window").cell_options == {"window": 3}
    assert ModelConfig(cell="gru").cell_options == {}
    with pytest.raises(ConfigError, match="cell gru has no option window"):
        ModelConfig(cell="gru", cell_options={"window": 2})
    with pytest.raises(ConfigError, match="window must be an integer like its default 3"):
        ModelConfig(cell="window", cell_options={"window": "wide"})


def test_a_scratch_only_cell_is_not_offered_to_classifiers(window_cell):
    from rnnkit.config import ClassifierConfig
    with pytest.raises(ConfigError, match="cell must be one of rnn, lstm, gru"):
        ClassifierConfig(cell="window")
    assert CharLM(ModelConfig(vocab_size=5, **SMALL)).init_state(2)[2].shape == (2, 2, 3, 10)
