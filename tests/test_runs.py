"""Run directories written by rnnkit 0.1 (tests/fixtures/v0.1-*, made by that version) load, sample, score,
classify and resume with today's code, giving what 0.1 itself gave (tests/fixtures/v0.1-expected.json)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import torch

from rnnkit import checkpoint as ckpt
from rnnkit import classify
from rnnkit.config import SampleConfig
from rnnkit.inference.sampling import generate
from rnnkit.runs import load
from rnnkit.training.lm import resume

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "v0.1-expected.json").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)       # the fixtures were made on one thread; conftest restores the count


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_an_old_run_samples_what_it_sampled(cell):
    lm = load(FIXTURES / f"v0.1-{cell}")
    for key, texts in EXPECTED[cell]["samples"].items():
        n, t = key.split("-")
        cfg = SampleConfig(prompt="the ", length=60, seed=5, num_samples=int(n), temperature=float(t))
        assert generate(lm.model, lm.vocab, cfg) == texts, key


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_an_old_run_resumes_exactly(cell, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(FIXTURES / f"v0.1-{cell}", out)
    resume(out, overrides={"steps": 9}, data_path=str(FIXTURES / "corpus.txt"), quiet=True, log=lambda m: None)
    keep = ("step", "train_loss", "val_loss", "val_bpc")
    assert [{k: r[k] for k in keep} for r in ckpt.read_metrics(out)] == \
        [{k: r[k] for k in keep} for r in EXPECTED[cell]["metrics_to_step_9"]]


def test_an_old_classifier_predicts_what_it_predicted():
    clf = classify.load(FIXTURES / "v0.1-classifier")
    got = [p.to_dict() for p in classify.predict(clf, ["a moving film", "a dull mess"])]
    assert got == EXPECTED["classifier"]["predict"]


def test_an_old_classifier_resumes(tmp_path):
    out = tmp_path / "run"
    shutil.copytree(FIXTURES / "v0.1-classifier", out)
    summary = classify.resume(out, overrides={"epochs": 3}, data_path=str(FIXTURES / "reviews.csv"), quiet=True,
                              log=lambda m: None)
    assert summary["step"] == 12 and [r["step"] for r in ckpt.read_metrics(out)] == [4, 8, 12]


def test_loading_scoring_sampling_and_predicting_in_two_threads_at_once():
    """What a server does for two requests at once gives what doing them one after the other gives."""
    from rnnkit.evaluate import evaluate_stream

    def work(i: int):
        lm = load(FIXTURES / f"v0.1-{('lstm', 'gru')[i % 2]}")
        ids = lm.vocab.encode((FIXTURES / "corpus.txt").read_text(encoding="utf-8"))
        text = generate(lm.model, lm.vocab, SampleConfig(prompt="the ", length=80, seed=i, num_samples=1 + i % 2))
        clf = classify.load(FIXTURES / "v0.1-classifier")
        labels = [p.label for p in classify.predict(clf, ["a moving film", "a dull mess", "fine"] * (i + 1))]
        return evaluate_stream(lm.model, ids).nats, text, labels

    expected = [work(i) for i in range(6)]
    got: dict[int, tuple] = {}

    def run(indices):
        for i in indices:
            got[i] = work(i)
    threads = [threading.Thread(target=run, args=(range(k, 6, 2),)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [got.get(i) for i in range(6)] == expected
