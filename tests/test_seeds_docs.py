"""The executable documents of the seed experiments: docs/examples/*.py run and assert what the docs say,
and every examples/*.toml builds valid configs with the seeds' hyper-parameters."""

import importlib.util
import runpy
from pathlib import Path

import pytest
import torch

from rnnkit.settings import read_toml as _read_toml
from rnnkit.config import DataConfig, ModelConfig, TrainConfig, from_dict

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples"
SHARED = ROOT / ".." / "shared"


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_manual_rnn_forward_example_asserts_the_match(capsys):
    runpy.run_path(str(ROOT / "docs" / "examples" / "manual_rnn_forward.py"), run_name="__main__")
    assert "rnnkit RNNCell: OK" in capsys.readouterr().out


def test_seed003_rerun_last_step_loss_fails_every_step_loss_generalises():
    """The evidence of docs/seeds.md (003) on one split: same model and windows, only the loss differs."""
    rerun = _module(ROOT / "docs" / "examples" / "alphabet_seed003.py")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)            # 1000 epochs of tiny tensors: extra threads only add overhead
    try:
        train, test, right, n, taught, p_answer, _ = rerun.run(2, "last")
        assert train < 1e-3 and test > 3.26 and right == 0 and taught == 0   # fits, and is confidently wrong
        train, test, right, n, taught, p_answer, _ = rerun.run(2, "every")
        assert right == n == 7 and taught == 7
    finally:
        torch.set_num_threads(threads)


def test_alphabet_example_reports_25_of_25(tmp_path, capsys):
    alphabet = _module(EXAMPLES / "alphabet.py")
    threads = torch.get_num_threads()
    try:
        assert alphabet.main(str(tmp_path / "run")) == 0        # trains with threads=1, a global setting
    finally:
        torch.set_num_threads(threads)
    assert "25/25: every letter a..y predicted correctly" in capsys.readouterr().out


CONFIGS = sorted(EXAMPLES.glob("*.toml"))


def test_there_is_a_config_per_seed_experiment():
    names = [p.name for p in CONFIGS]
    for seed in ("000", "001", "002", "004"):
        assert any(n.startswith(seed) for n in names), f"no examples/{seed}_*.toml"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_example_config_builds_and_names_shared_data(path):
    toml = _read_toml(str(path))
    data = from_dict(DataConfig, toml["data"])
    model = from_dict(ModelConfig, toml["model"])
    train = from_dict(TrainConfig, toml["train"])
    assert toml["out"].startswith("runs/")
    assert data.path.startswith("../shared/data/")             # relative to the repository root
    assert (ROOT / data.path).resolve() == (SHARED / "data" / Path(data.path).name).resolve()
    # the seeds' hyper-parameters, as docs/seeds.md states them ("better" files are rnnkit's own choice)
    seed = "better" if "better" in path.name else path.name[:3]
    if seed == "000":
        assert (model.cell, model.embed_size, model.hidden_size, data.limit_chars) == ("elman", 0, 128, 50000)
        if "batched" not in path.name:
            assert (train.batch_size, train.seq_len, train.optimizer, train.lr) == (1, 1, "sgd", 0.1)
    elif seed == "001":
        assert (model.cell, model.hidden_size, train.seq_len, train.batch_size) == ("rnn", 256, 35, 32)
        assert (train.lr, train.clip, train.optimizer, data.newlines_to_spaces) == (100.0, 0.01, "sgd", True)
    elif seed == "002":
        assert (model.embed_size, model.hidden_size, train.seq_len, train.batch_size) == (256, 512, 40, 64)
        assert (train.optimizer, train.lr, data.start_marker) == ("adam", 1e-3, "THE MYSTERIOUS ISLAND")
    elif seed == "004":
        assert (model.cell, model.hidden_size, train.seq_len, train.optimizer) == ("lstm", 128, 100, "adamw")
        assert data.limit_chars == 100000


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_example_config_trains_end_to_end_on_a_tiny_slice(path, tmp_path):
    """Each config runs through the CLI (a few steps on a few thousand characters of its own data)."""
    from rnnkit.cli import main

    toml = _read_toml(str(path))
    source = SHARED / "data" / Path(toml["data"]["path"]).name
    if not source.exists():
        pytest.skip(f"{source} is absent (the shared data live in ../shared/data beside the repository)")
    config = tmp_path / "c.toml"
    config.write_text(path.read_text(encoding="utf-8").replace('"../shared/data/', f'"{SHARED.resolve()}/data/'),
                      encoding="utf-8")
    code = main(["train", "--config", str(config), "--limit-chars", "6000", "--steps", "2",
                 "--hidden-size", "8", "--out", str(tmp_path / "run"), "--quiet"]
                + (["--embed-size", "4"] if toml["model"].get("embed_size") else []))
    assert code == 0
