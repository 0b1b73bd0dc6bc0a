import json
import math

import pytest
import torch

from rnnkit import checkpoint as ckpt
from rnnkit.config import DataConfig, ModelConfig, TrainConfig
from rnnkit.data.charlm import prepare_data
from rnnkit.runs import load
from rnnkit.training.lm import resume, train

SMALL = ModelConfig(cell="lstm", hidden_size=24, num_layers=2, embed_size=8, dropout=0.1)


def _cfg(**kw):
    base = dict(batch_size=4, seq_len=16, steps=12, eval_every=4, eval_chars=600, seed=7, threads=1, lr=3e-3,
                warmup_steps=3, device="cpu")          # exact resume is a CPU promise (tests/test_cuda.py)
    base.update(kw)
    return TrainConfig(**base)


def _losses(run_dir):
    return [(r["step"], r["train_loss"], r["val_loss"]) for r in ckpt.read_metrics(run_dir)]


def test_train_writes_a_complete_run(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    summary = train(DataConfig(path=str(tiny_corpus)), SMALL, _cfg(), out, quiet=True)
    assert {p.name for p in out.iterdir()} >= {"run.json", "model.safetensors", "best.safetensors", "state.pt",
                                              "metrics.jsonl"}
    run = json.loads((out / "run.json").read_text())
    assert run["task"] == "charlm" and run["model"]["vocab_size"] == len(run["vocab"]["chars"])
    records = ckpt.read_metrics(out)
    assert [r["step"] for r in records] == [4, 8, 12]
    assert set(records[0]) >= {"step", "elapsed_s", "train_loss", "val_loss", "val_bpc", "chars_per_s"}
    assert records[-1]["val_bpc"] == pytest.approx(records[-1]["val_loss"] / math.log(2))
    assert summary["step"] == 12 and summary["val_chars"] > 0


@pytest.mark.parametrize("ema", [8.0, 0.0])
def test_saved_model_gives_identical_logits(tiny_corpus, tmp_path, ema):
    """The weights file holds the weight average (what validation scored), or the raw weights with --ema 0."""
    out = tmp_path / "run"
    train(DataConfig(path=str(tiny_corpus)), SMALL, _cfg(steps=4, ema=ema), out, quiet=True)
    lm = load(out, weights="last")
    state = ckpt.load_state(out / ckpt.STATE)
    from rnnkit.nn.models import CharLM
    ref = CharLM(lm.model.config).eval()
    ref.load_state_dict(state["model"])
    if ema:
        assert state["average"]["gamma"] == ema
        assert not all(torch.equal(a, b) for a, b in zip(ref.parameters(), lm.model.parameters()))
        with torch.no_grad():
            for p, a in zip(ref.parameters(), state["average"]["avg"]):
                p.copy_(a)
    else:
        assert "average" not in state
    x = torch.randint(0, len(lm.vocab), (2, 30))
    assert torch.equal(lm.model(x)[0], ref(x)[0])


@pytest.mark.parametrize("batching", ["consecutive", "random"])
def test_resume_reproduces_the_uninterrupted_losses(tiny_corpus, tmp_path, batching):
    data, cfg = DataConfig(path=str(tiny_corpus)), _cfg(batching=batching)
    train(data, SMALL, cfg, tmp_path / "full", quiet=True)
    paused = train(data, SMALL, cfg, tmp_path / "split", quiet=True, pause_at=6)
    assert paused["paused"] and paused["step"] == 6
    resume(tmp_path / "split", quiet=True)
    assert _losses(tmp_path / "split") == _losses(tmp_path / "full")
    full, split = (ckpt.load_weights(tmp_path / d / ckpt.WEIGHTS, torch.device("cpu")) for d in ("full", "split"))
    assert full.keys() == split.keys() and all(torch.equal(full[k], split[k]) for k in full)   # the average too
    a = ckpt.load_weights(tmp_path / "full" / ckpt.WEIGHTS)
    b = ckpt.load_weights(tmp_path / "split" / ckpt.WEIGHTS)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_can_extend_the_budget_but_not_change_the_model(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    train(DataConfig(path=str(tiny_corpus)), SMALL, _cfg(steps=4), out, quiet=True)
    with pytest.raises(ValueError, match="already finished"):
        resume(out, quiet=True)
    with pytest.raises(ValueError, match="cannot change lr"):
        resume(out, overrides={"lr": 1.0}, quiet=True)
    summary = resume(out, overrides={"steps": 8}, quiet=True)
    assert summary["step"] == 8
    assert [r["step"] for r in ckpt.read_metrics(out)] == [4, 8]


def test_resume_refuses_different_text(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    train(DataConfig(path=str(tiny_corpus)), SMALL, _cfg(steps=4), out, quiet=True)
    tiny_corpus.write_text(tiny_corpus.read_text() + "more", encoding="utf-8")
    with pytest.raises(ValueError, match="differs"):
        resume(out, overrides={"steps": 8}, quiet=True)


def test_new_run_refuses_to_overwrite_another(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    train(DataConfig(path=str(tiny_corpus)), SMALL, _cfg(steps=2), out, quiet=True)
    with pytest.raises(ckpt.CheckpointError, match="--overwrite"):
        train(DataConfig(path=str(tiny_corpus)), SMALL, _cfg(steps=2), out, quiet=True)
    train(DataConfig(path=str(tiny_corpus)), SMALL, _cfg(steps=2), out, quiet=True, overwrite=True)


def test_split_is_contiguous_90_10(tiny_corpus):
    data = prepare_data(DataConfig(path=str(tiny_corpus)))
    text = tiny_corpus.read_text(encoding="utf-8")
    assert len(data.val) == round(len(text) * 0.1)
    assert data.vocab.decode(data.train) + data.vocab.decode(data.val) == text


def test_timed_evaluation_also_comes_once_per_epoch(tiny_corpus, tmp_path, monkeypatch):
    # A minute is many epochs of a small corpus: the best weights must not be missed between evaluations.
    from rnnkit.training import trainer
    monkeypatch.setattr(trainer, "MAX_EVAL_SHARE", 1.0)    # this tiny model evaluates as long as it trains
    out = tmp_path / "run"
    cfg = _cfg(batch_size=8, seq_len=32, steps=50, eval_every=None, eval_every_s=60.0)
    train(DataConfig(path=str(tiny_corpus)), SMALL, cfg, out, quiet=True)
    per_epoch = (round(len(tiny_corpus.read_text(encoding="utf-8")) * 0.9) - 1) // 8 // 32
    assert per_epoch == 21
    assert [r["step"] for r in ckpt.read_metrics(out)] == [21, 42, 50]


def test_epoch_end_evaluation_yields_to_training_when_it_is_slow(tiny_corpus, tmp_path, monkeypatch):
    from rnnkit.training import trainer
    monkeypatch.setattr(trainer, "MAX_EVAL_SHARE", 1e-9)   # any evaluation would take too large a share
    out = tmp_path / "run"
    cfg = _cfg(batch_size=8, seq_len=32, steps=50, eval_every=None, eval_every_s=60.0)
    train(DataConfig(path=str(tiny_corpus)), SMALL, cfg, out, quiet=True)
    assert [r["step"] for r in ckpt.read_metrics(out)] == [21, 50]   # the first costs nothing known yet


def test_training_lowers_the_loss(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    train(DataConfig(path=str(tiny_corpus)), SMALL, _cfg(steps=60, eval_every=30, lr=1e-2), out, quiet=True)
    first, last = ckpt.read_metrics(out)[0], ckpt.read_metrics(out)[-1]
    assert last["val_loss"] < first["val_loss"] < math.log(60)


def test_compile_trains_the_same_model_as_eager(tiny_corpus, tmp_path):
    # --compile changes how the step runs, not what it computes: same losses and weights within float32
    # rounding (Inductor fuses the element-wise work and may sum in another order).
    data = DataConfig(path=str(tiny_corpus))
    model = ModelConfig(cell="lstm", hidden_size=16, num_layers=1, embed_size=8, backend="scratch")
    cfg = _cfg(seq_len=8, steps=6, eval_every=3)
    train(data, model, cfg, tmp_path / "eager", quiet=True)
    train(data, model, TrainConfig(**{**cfg.__dict__, "compile": True}), tmp_path / "compiled", quiet=True)
    for (s1, t1, v1), (s2, t2, v2) in zip(_losses(tmp_path / "eager"), _losses(tmp_path / "compiled"), strict=True):
        assert s1 == s2 and t1 == pytest.approx(t2, rel=1e-5) and v1 == pytest.approx(v2, rel=1e-5)
    a = ckpt.load_weights(tmp_path / "eager" / ckpt.WEIGHTS)
    b = ckpt.load_weights(tmp_path / "compiled" / ckpt.WEIGHTS)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert json.loads((tmp_path / "compiled" / "run.json").read_text())["train"]["compile"] is True


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_nothing(tiny_corpus, tmp_path, monkeypatch):
    # e.g. --compile without a C++ compiler: a run.json with no checkpoint could be neither resumed nor
    # reused without --overwrite
    from rnnkit.training.trainer import Trainer

    def broken(self, **kw):
        raise ValueError("--compile: torch.compile failed")
    monkeypatch.setattr(Trainer, "fit", broken)
    with pytest.raises(ValueError):
        train(DataConfig(path=str(tiny_corpus)), SMALL, _cfg(), tmp_path / "new" / "run", quiet=True)
    assert not (tmp_path / "new").exists()


# a 1-step run: a large alphabet's rate for runs of under 1,000 steps
@pytest.mark.parametrize("alphabet, given, expected", [(60, None, 5e-3), (1200, None, 2e-3), (1200, 1e-2, 1e-2)])
def test_default_learning_rate_is_lower_for_a_large_alphabet(tmp_path, alphabet, given, expected):
    path = tmp_path / "text.txt"
    path.write_text("".join(chr(0x4E00 + i) for i in range(alphabet)) * 4, encoding="utf-8")
    cfg = _cfg(steps=1, batch_size=2, seq_len=8, eval_every=None, lr=given)
    said: list[str] = []
    train(DataConfig(path=str(path)), SMALL, cfg, tmp_path / "run", quiet=True, log=said.append)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["model"]["vocab_size"] == alphabet and run["train"]["lr"] == expected
    line = next(m for m in said if m.startswith("training:"))
    assert f"lr {expected:g}" in line
    recipe = next((m for m in said if m.startswith("recipe:")), "")
    assert ("alphabet of over 1,000 symbols" in recipe) == (alphabet == 1200 and given is None)
    assert (run.get("recipe", {}).get("chosen", {}).get("lr") == expected) == (given is None)
    assert ckpt.read_metrics(tmp_path / "run")[-1]["lr"] == pytest.approx(expected / 3)   # warm-up step 1 of 3
