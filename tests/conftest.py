"""Shared fixtures: tiny real text (from the bundled corpora) and the optional ../shared data folder."""

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
