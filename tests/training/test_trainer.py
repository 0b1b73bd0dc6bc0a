"""The learning-rate schedules: their shapes against the formulas, and a run that follows one."""

from __future__ import annotations

import math

import pytest

from rnnkit import checkpoint as ckpt
from rnnkit.config import DataConfig, ModelConfig, TrainConfig
from rnnkit.training.lm import train
import torch

from rnnkit.training.trainer import WeightAverage, lr_factor


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"warmup_steps": 10, "min_lr_ratio": 0.1, **kw})


@pytest.mark.parametrize("schedule", ["cosine", "linear", "plateau"])
def test_warm_up_climbs_linearly_to_the_peak(schedule):
    cfg = _cfg(schedule=schedule)
    assert [lr_factor(cfg, s, 0.0) for s in range(10)] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lr_factor(cfg, 10, 0.0) == 1.0


def test_constant_is_the_peak_throughout():
    cfg = _cfg(schedule="constant")
    assert {lr_factor(cfg, s, p) for s, p in [(0, 0.0), (5, 0.5), (99, 1.0)]} == {1.0}


@pytest.mark.parametrize("schedule, shape", [
    ("cosine", lambda p: 0.5 * (1 + math.cos(math.pi * p))),
    ("linear", lambda p: 1 - p),
])
def test_decays_follow_their_shape_down_to_the_floor(schedule, shape):
    cfg = _cfg(schedule=schedule)
    for p in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0):
        assert lr_factor(cfg, 1000, p) == pytest.approx(0.1 + 0.9 * shape(p))
    assert lr_factor(cfg, 1000, 1.5) == pytest.approx(0.1)            # past the budget: the floor
    assert lr_factor(_cfg(schedule=schedule, min_lr_ratio=0.0), 1000, 1.0) == pytest.approx(0.0, abs=1e-12)


def test_a_run_with_the_linear_schedule_logs_its_learning_rates(tiny_corpus, tmp_path):
    cfg = TrainConfig(batch_size=4, seq_len=16, steps=40, eval_every=10, eval_chars=300, seed=3, threads=1,
                      lr=1e-2, warmup_steps=0, schedule="linear", min_lr_ratio=0.0, device="cpu")
    train(DataConfig(path=str(tiny_corpus)), ModelConfig(cell="gru", hidden_size=16, num_layers=1, embed_size=8),
          cfg, tmp_path / "run", quiet=True)
    logged = [(r["step"], r["lr"]) for r in ckpt.read_metrics(tmp_path / "run")]
    # the lr of step s (counted from 0) is set before it, at s/40 of the budget: the record of step 10 shows step 9's
    assert logged == [(s, pytest.approx(1e-2 * (1 - (s - 1) / 40))) for s in (10, 20, 30, 40)]


@pytest.mark.parametrize("gamma", [1.0, 4.0, 7.5])
def test_weight_average_weighs_steps_by_the_power_function(gamma):
    """After T steps the average is sum_t ((t/T)^(g+1) - ((t-1)/T)^(g+1)) * theta_t: weights that grow as
    t^g, sum to 1, and do not depend on when the average is read (the brute-force sum below)."""
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.zeros(3, 4, dtype=torch.float64))
    avg = WeightAverage([param], gamma)
    seen = []
    for t in range(1, 41):
        with torch.no_grad():
            param.copy_(torch.randn(3, 4, dtype=torch.float64))
        seen.append(param.detach().clone())
        avg.update(t)
        T, g = t, gamma + 1
        expected = sum(((s / T) ** g - ((s - 1) / T) ** g) * theta for s, theta in enumerate(seen, 1))
        torch.testing.assert_close(avg.avg[0], expected, rtol=1e-10, atol=1e-12)
    with avg.applied():                                  # the average in place of the parameters, then back
        torch.testing.assert_close(param.detach(), avg.avg[0], rtol=0, atol=0)
    torch.testing.assert_close(param.detach(), seen[-1], rtol=0, atol=0)
