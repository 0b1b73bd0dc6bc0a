"""Shared fixtures: tiny real text (from the bundled corpora), the optional ../shared data folder, and tiny
trained runs: a 2-layer LSTM on a few thousand characters of Tiny Shakespeare and a bidirectional GRU
classifier on the fixture reviews (each trains in about a second)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"


def shared_file(name: str) -> Path:
    """A file from ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (tests that need ../shared/data skip without it)")
    return path


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shakespeare_text() -> str:
    from rnnkit.data.corpus import bundled_corpus
    return bundled_corpus("shakespeare")


@pytest.fixture
def tiny_corpus(tmp_path, shakespeare_text) -> Path:
    """About 6,000 characters of Tiny Shakespeare in a plain UTF-8 file."""
    path = tmp_path / "tiny.txt"
    path.write_text(shakespeare_text[:6000], encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- tiny trained runs (viz, serve)

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory, shakespeare_text) -> Path:
    from rnnkit.config import DataConfig, ModelConfig, TrainConfig
    from rnnkit.training.lm import train

    d = tmp_path_factory.mktemp("viz")
    corpus = d / "tiny.txt"
    corpus.write_text(shakespeare_text[:8000], encoding="utf-8")
    train(DataConfig(path=str(corpus)), ModelConfig(cell="lstm", hidden_size=32, num_layers=2, embed_size=8),
          TrainConfig(batch_size=8, seq_len=32, steps=40, eval_every=20, eval_chars=800, seed=3, threads=1, lr=1e-2,
                      warmup_steps=2, device="cpu"), d / "lm", quiet=True)
    return d / "lm"


@pytest.fixture(scope="session")
def classifier_run(tmp_path_factory) -> Path:
    from rnnkit.config import ClassifierConfig, ClassifierTrainConfig, TextDataConfig
    from rnnkit.training.classifier import train

    d = tmp_path_factory.mktemp("viz-clf")
    train(TextDataConfig(path=str(FIXTURES / "reviews.csv")),
          ClassifierConfig(cell="gru", embed_size=8, hidden_size=8, bidirectional=True, pooling="mean"),
          ClassifierTrainConfig(batch_size=8, steps=12, seed=3, threads=1, device="cpu", warmup_steps=2),
          d / "clf", quiet=True)
    return d / "clf"
