"""The CUDA path: training, bf16 autocast, checkpoints that load on the CPU, scratch vs cuDNN, sampling,
classifiers. Skipped where PyTorch sees no CUDA GPU (CI has none; run on a GPU machine by hand:
``python -m pytest tests/test_cuda.py``)."""

import dataclasses
import math
import os

import pytest
import torch

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # deterministic cuBLAS (read when CUDA starts)

from rnnkit import checkpoint as ckpt
from rnnkit.cli import main
from rnnkit.config import DataConfig, ModelConfig, SampleConfig, TrainConfig
from rnnkit.inference.sampling import generate
from rnnkit.nn.models import CharLM
from rnnkit.nn.recurrent import fused_to_scratch_keys
from rnnkit.runs import load
from rnnkit.training.lm import resume, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")

SMALL = ModelConfig(cell="lstm", hidden_size=32, num_layers=2, embed_size=8, dropout=0.1)


def _cfg(**kw):
    base = dict(batch_size=8, seq_len=16, steps=12, eval_every=4, eval_chars=600, seed=7, lr=3e-3,
                warmup_steps=3, device="cuda")
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def exact_fp32():
    """TF32 off, so that cuDNN and plain matmuls agree with float32 references to float32 rounding."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "elman"])
def test_gpu_run_trains_and_loads_on_the_cpu(tiny_corpus, tmp_path, cell, exact_fp32):
    out = tmp_path / "run"
    summary = train(DataConfig(path=str(tiny_corpus)), dataclasses.replace(SMALL, cell=cell), _cfg(), out,
                    quiet=True)
    assert summary["step"] == 12 and math.isfinite(summary["val_nats_per_char"])
    gpu, cpu = load(out, device="cuda"), load(out, device="cpu")
    assert next(cpu.model.parameters()).device.type == "cpu"
    x = torch.randint(0, len(cpu.vocab), (3, 40))
    assert torch.allclose(gpu.model(x.cuda())[0].cpu(), cpu.model(x)[0], atol=1e-5, rtol=1e-5)


def test_resume_on_the_gpu_is_exact_with_deterministic_kernels(tiny_corpus, tmp_path, exact_fp32):
    # Two things make GPU runs inexact that the CPU does not have: kernels that sum with atomic adds in any
    # order (torch.use_deterministic_algorithms picks ordered ones), and cuDNN's own dropout generator
    # between stacked layers, which torch re-seeds on a restored RNG state instead of continuing it (so a
    # resumed run with dropout > 0 and several fused layers draws other masks; docs/reliability.md).
    data, cfg = DataConfig(path=str(tiny_corpus)), _cfg()
    model = dataclasses.replace(SMALL, dropout=0.0)
    torch.use_deterministic_algorithms(True)
    try:
        train(data, model, cfg, tmp_path / "full", quiet=True)
        assert train(data, model, cfg, tmp_path / "split", quiet=True, pause_at=6)["paused"]
        resume(tmp_path / "split", quiet=True)
    finally:
        torch.use_deterministic_algorithms(False)
    a, b = ckpt.read_metrics(tmp_path / "full"), ckpt.read_metrics(tmp_path / "split")
    assert [(r["step"], r["train_loss"], r["val_loss"]) for r in a] == \
        [(r["step"], r["train_loss"], r["val_loss"]) for r in b]


def test_bf16_autocast_tracks_fp32(tiny_corpus, tmp_path):
    data = DataConfig(path=str(tiny_corpus))
    fp32 = train(data, SMALL, _cfg(steps=40, eval_every=40), tmp_path / "fp32", quiet=True)
    bf16 = train(data, SMALL, _cfg(steps=40, eval_every=40, precision="bf16"), tmp_path / "bf16", quiet=True)
    assert abs(bf16["val_nats_per_char"] - fp32["val_nats_per_char"]) < 0.05


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_scratch_cells_match_cudnn(cell, exact_fp32):
    torch.manual_seed(0)
    fused = CharLM(ModelConfig(vocab_size=30, cell=cell, embed_size=16, hidden_size=48, num_layers=2)).cuda()
    scratch = CharLM(ModelConfig(vocab_size=30, cell=cell, embed_size=16, hidden_size=48, num_layers=2,
                                 backend="scratch")).cuda()
    scratch.load_state_dict(fused_to_scratch_keys(fused.state_dict()))
    x = torch.randint(0, 30, (4, 25), device="cuda")
    (a, sa), (b, sb) = fused(x), scratch(x)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    a.square().mean().backward()
    b.square().mean().backward()
    fused_grads = fused_to_scratch_keys({k: p.grad for k, p in fused.named_parameters()})
    for name, p in scratch.named_parameters():
        assert torch.allclose(fused_grads[name], p.grad, atol=1e-5, rtol=1e-3), name


def test_sampling_on_the_gpu_is_seeded(tiny_corpus, tmp_path):
    train(DataConfig(path=str(tiny_corpus)), SMALL, _cfg(steps=8), tmp_path / "run", quiet=True)
    lm = load(tmp_path / "run", device="cuda")
    cfg = SampleConfig(prompt="First", length=60, temperature=0.8, top_k=10, seed=3, num_samples=2)
    first, again = generate(lm.model, lm.vocab, cfg), generate(lm.model, lm.vocab, cfg)
    assert first == again and all(len(s) == 60 for s in first)


def test_cli_trains_on_cuda_and_evaluates_on_cpu(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(tiny_corpus), "--device", "cuda", "--steps", "6", "--hidden-size", "16",
                 "--embed-size", "8", "--batch-size", "4", "--seq-len", "16", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--device", "cpu", "--json"]) == 0
    assert '"bits_per_char"' in capsys.readouterr().out


def test_classifier_trains_on_cuda_with_packed_sequences(tmp_path, capsys):
    from test_classify import _labelled_csv
    data = _labelled_csv(tmp_path / "data.csv", 100)
    run = tmp_path / "clf"
    flags = ["--text-column", "review", "--label-column", "sentiment"]
    assert main(["classify", "train", str(data), *flags, "--out", str(run), "--cell", "lstm", "--bidirectional",
                 "--embed-size", "16", "--hidden-size", "16", "--dropout", "0", "--min-freq", "1",
                 "--batch-size", "16", "--lr", "0.02", "--epochs", "8", "--warmup-steps", "0", "--seed", "1",
                 "--device", "cuda", "--quiet", "--json"]) == 0
    assert '"val_accuracy": 1.0' in capsys.readouterr().out
    assert main(["classify", "eval", str(run), str(data), *flags, "--device", "cpu", "--json"]) == 0
    assert '"accuracy": 1.0' in capsys.readouterr().out
