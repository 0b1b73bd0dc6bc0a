"""inference/export.py and examples/onnx_generate.py: ONNX models that onnxruntime runs as PyTorch does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
np = pytest.importorskip("numpy")

from rnnkit import classify  # noqa: E402
from rnnkit.cli import main  # noqa: E402
from rnnkit.config import ClassifierConfig, ClassifierTrainConfig, DataConfig, ModelConfig, TextDataConfig, TrainConfig  # noqa: E402
from rnnkit.inference.export import ExportError, export_run  # noqa: E402
from rnnkit.nn import registry  # noqa: E402
from rnnkit.nn.cells import Cell  # noqa: E402
from rnnkit.nn.state import parts  # noqa: E402
from rnnkit.runs import load  # noqa: E402
from rnnkit.training import lm as lm_task  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "onnx_generate.py"
QUIET = dict(quiet=True, log=lambda m: None)


def _train(tmp_path, corpus, **model) -> Path:
    out = tmp_path / "run"
    lm_task.train(DataConfig(path=str(corpus)), ModelConfig(**{"embed_size": 8, "hidden_size": 16, "num_layers": 2,
                                                               **model}),
                  TrainConfig(batch_size=4, seq_len=16, steps=6, eval_every=6, lr=1e-2, device="cpu", threads=1),
                  out, **QUIET)
    return out


def _check_against_torch(run: Path, path: Path) -> None:
    """ORT's logits and states equal the model's for several batch sizes, the state fed back three times."""
    lm = load(run)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()][1:]
    for batch in (1, 3, 6):
        torch.manual_seed(batch)
        state = lm.model.init_state(batch)
        ours = [t.numpy() for t in parts(state)]
        for _ in range(3):
            token = torch.randint(0, len(lm.vocab), (batch,))
            with torch.no_grad():
                logits, state = lm.model(token[:, None], state)
            logits_o, *ours = session.run(None, {"token": token.numpy(), **dict(zip(names, ours))})
            np.testing.assert_allclose(logits_o, logits[:, 0].numpy(), atol=1e-5, rtol=1e-5)
            for a, b in zip(ours, parts(state)):
                np.testing.assert_allclose(a, b.numpy(), atol=1e-5, rtol=1e-5)


CELLS = [("lstm", "fused"), ("gru", "scratch"), ("elman", "scratch"), ("mingru", "fused"), ("rglru", "fused"),
         pytest.param("rnn", "fused", marks=pytest.mark.slow), pytest.param("gru", "fused", marks=pytest.mark.slow),
         pytest.param("lstm", "scratch", marks=pytest.mark.slow), pytest.param("rnn", "scratch", marks=pytest.mark.slow)]


@pytest.mark.parametrize("cell,backend", CELLS)
def test_the_step_model_runs_in_onnxruntime_as_in_torch(cell, backend, tmp_path, tiny_corpus):
    run = _train(tmp_path, tiny_corpus, cell=cell, backend=backend)
    path = tmp_path / "m.onnx"
    assert export_run(run, path) == "charlm"
    onnx.checker.check_model(onnx.load(str(path)))
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["rnnkit.vocab"]) == load(run).vocab.to_dict() and meta["rnnkit.task"] == "charlm"
    _check_against_torch(run, path)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_sequence_model_scores_as_torch_does(cell, tmp_path, tiny_corpus):
    run = _train(tmp_path, tiny_corpus, cell=cell)
    export_run(run, tmp_path / "s.onnx", kind="sequence")
    lm = load(run)
    session = ort.InferenceSession(str(tmp_path / "s.onnx"))
    names = [i.name for i in session.get_inputs()][1:]
    for batch, length in ((1, 7), (4, 33)):
        tokens = torch.randint(0, len(lm.vocab), (batch, length))
        state = lm.model.init_state(batch)
        ours = [t.numpy() for t in parts(state)]
        for chunk in tokens.split(length // 3 + 1, dim=1):                  # state fed back over chunks
            with torch.no_grad():
                logits, state = lm.model(chunk, state)
            got, *ours = session.run(None, {"tokens": chunk.numpy(), **dict(zip(names, ours))})
            np.testing.assert_allclose(got, logits.numpy(), atol=1e-5, rtol=1e-5)
    scratch = _train(tmp_path / "x", tiny_corpus, cell="gru", backend="scratch")
    with pytest.raises(ValueError, match="a sequence model exports for fused LSTM and GRU runs"):
        export_run(scratch, tmp_path / "x.onnx", kind="sequence")


class Triple(Cell):
    """A cell of three state parts (h, c, and a (B, 2, H) window), as registry cells may have."""
    gates = 2

    def recur(self, xp_t, state):
        h, c, past = state
        u, v = torch.addmm(xp_t, h, self.weight_hh.t()).chunk(2, dim=-1)
        c = 0.5 * c + torch.tanh(u)
        past = torch.cat([past[:, 1:], c[:, None]], dim=1)
        return torch.sigmoid(v) * past.mean(1), c, past

    def init_state(self, batch_size):
        h = self.weight_hh.new_zeros(batch_size, self.hidden_size)
        return h, h.clone(), h.new_zeros(batch_size, 2, self.hidden_size)


def test_a_registered_cell_exports_too(tmp_path, tiny_corpus):
    registry.register(registry.CellSpec("triple", Triple, state=("h", "c", "past")))
    try:
        run = _train(tmp_path, tiny_corpus, cell="triple")
        export_run(run, tmp_path / "m.onnx")
        names = [i.name for i in ort.InferenceSession(str(tmp_path / "m.onnx")).get_inputs()]
        assert names == ["token", "state_h", "state_c", "state_past"]
        _check_against_torch(run, tmp_path / "m.onnx")
    finally:
        registry.unregister("triple")


def _without_torch(*args: str) -> subprocess.CompletedProcess:
    """The example in a Python where ``import torch`` (and rnnkit) fails."""
    block = "import sys, runpy; sys.modules['torch'] = None; sys.modules['rnnkit'] = None; " \
            f"sys.argv = {[str(EXAMPLE), *args]!r}; runpy.run_path({str(EXAMPLE)!r}, run_name='__main__')"
    return subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=120)


def test_greedy_text_through_onnxruntime_is_rnnkit_samples(tmp_path, tiny_corpus, capsys):
    run = _train(tmp_path, tiny_corpus, cell="gru")
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--prompt", "ROMEO:", "--length", "200", "--temperature", "0"]) == 0
    expected = capsys.readouterr().out
    got = _without_torch(str(tmp_path / "m.onnx"), "--prompt", "ROMEO:", "--length", "200", "--temperature", "0")
    assert got.returncode == 0, got.stderr
    assert got.stdout == expected
    sampled = _without_torch(str(tmp_path / "m.onnx"), "--length", "50", "--seed", "3")
    assert sampled.returncode == 0 and len(sampled.stdout) == 52          # "\n" prompt + 50 + "\n"


def _reviews_run(tmp_path, max_tokens=12, **model):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n" + "".join(f"a fine moving film {i} indeed,pos\na dull tedious mess {i},neg\n"
                                             for i in range(12)), encoding="utf-8")
    run = tmp_path / "crun"
    classify.train(TextDataConfig(path=str(data), min_freq=1, max_tokens=max_tokens),
                   ClassifierConfig(hidden_size=8, embed_size=8, **model),
                   ClassifierTrainConfig(batch_size=4, epochs=1, device="cpu", threads=1), run, **QUIET)
    return run


# LSTM and GRU export at any width; scan blocks and the tanh RNN at the run's --max-tokens (12 here); a Naive
# Bayes blend (buckets > 0) goes into the graph
@pytest.mark.parametrize("cell,bidirectional,pooling,buckets", [
    ("lstm", True, "max", 0), ("gru", False, "last", 0), ("mingru", True, "mean", 0), ("rglru", False, "max", 0),
    ("rglru", True, "last", 0), ("rnn", True, "max", 0), ("gru", True, "meanmax", 0), ("lstm", True, "mean", 4096),
    ("rglru", False, "last", 4096)])
def test_a_classifier_exports_with_its_probabilities(cell, bidirectional, pooling, buckets, tmp_path):
    run = _reviews_run(tmp_path, cell=cell, bidirectional=bidirectional, pooling=pooling, naive_bayes=buckets)
    if buckets:
        assert classify.load(run).model.blend[1] > 0           # the blend reads the Naive Bayes part
    export_run(run, tmp_path / "c.onnx")
    clf = classify.load(run)
    session = ort.InferenceSession(str(tmp_path / "c.onnx"))
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["rnnkit.labels"]) == clf.labels
    fixed = json.loads(meta["rnnkit.width"])
    assert fixed == (None if cell in ("lstm", "gru") else 12)
    for texts in (["a fine film", "a dull and tedious and long mess of a film"], ["fine"] * 5):
        seqs = clf.encode(texts)
        width = fixed or max(len(s) for s in seqs)
        tokens = torch.zeros(len(seqs), width, dtype=torch.long)
        for i, s in enumerate(seqs):
            tokens[i, :len(s)] = s
        lengths = torch.tensor([len(s) for s in seqs])
        logits = session.run(None, {"tokens": tokens.numpy(), "lengths": lengths.numpy()})[0]
        probs = torch.from_numpy(logits).softmax(-1)
        expected = torch.tensor([[p.probabilities[label] for label in clf.labels]
                                 for p in classify.predict(clf, texts)])
        torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-5)


def test_bad_exports_are_one_line(tmp_path, tiny_corpus, capsys):
    every_word = _reviews_run(tmp_path / "clf", max_tokens=None, cell="mingru")
    with pytest.raises(ExportError, match="keeps every word; retrain it with --max-tokens"):
        export_run(every_word, tmp_path / "b.onnx")
    assert not (tmp_path / "b.onnx").exists()
    run = _train(tmp_path, tiny_corpus)
    (tmp_path / "taken.onnx").write_bytes(b"keep me")
    cases = [(["export", str(run), "--out", str(tmp_path / "taken.onnx")], "exists; choose another --out"),
             (["export", str(run), "--format", "tflite", "--out", str(tmp_path / "x")], "invalid choice: 'tflite'"),
             (["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.onnx")], "no such run directory"),
             (["export", str(run), "--out", str(tmp_path)], "exists; choose another --out")]
    for argv, message in cases:
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert (tmp_path / "taken.onnx").read_bytes() == b"keep me"
    missing = _without_torch(str(tmp_path / "taken.onnx"))
    assert missing.returncode != 0 and "cannot load it" in missing.stderr and "Traceback" not in missing.stderr
