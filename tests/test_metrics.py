import math

import pytest
import torch
import torch.nn.functional as F

from rnnkit.config import ModelConfig
from rnnkit.evaluate import evaluate_stream
from rnnkit.metrics import LMScore
from rnnkit.nn.models import CharLM


def test_scores_follow_cross_entropy_over_batches_of_unequal_size():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(n, 11, generator=g) * 3, torch.randint(0, 11, (n,), generator=g)) for n in (1, 7, 40)]
    total = LMScore(0.0, 0)
    for logits, y in batches:
        total = total + LMScore(float(F.cross_entropy(logits, y, reduction="sum")), len(y))
    everything = F.cross_entropy(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    assert total.chars == 48
    assert total.nats_per_char == pytest.approx(float(everything), rel=1e-6)
    assert total.perplexity == pytest.approx(math.exp(float(everything)), rel=1e-6)
    assert total.bits_per_char == pytest.approx(float(everything) / math.log(2), rel=1e-6)
    # the mean of per-batch means would be wrong here: sums are divided once
    assert total.nats_per_char != pytest.approx(sum(float(F.cross_entropy(l, y)) for l, y in batches) / 3)


def test_hand_computed_uniform_prediction():
    # uniform over 4 symbols: 2 bits per character, perplexity 4
    s = LMScore(nats=10 * math.log(4), chars=10)
    assert (s.bits_per_char, s.perplexity) == (pytest.approx(2.0), pytest.approx(4.0))
    assert s.to_dict()["chars"] == 10


@pytest.mark.parametrize("streams,chunk", [(1, 1000), (3, 7), (32, 5)])
def test_stream_evaluation_equals_one_pass_with_carried_state(streams, chunk):
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=13, hidden_size=16, num_layers=2, embed_size=8)).eval()
    ids = torch.randint(0, 13, (301,), dtype=torch.uint8)
    got = evaluate_stream(model, ids, streams=streams, chunk=chunk)
    assert got.chars == 300                                          # every character after the first
    if streams == 1:
        with torch.no_grad():
            logits, _ = model(ids[None, :-1].long())
        ref = F.cross_entropy(logits[0], ids[1:].long(), reduction="sum")
        assert got.nats == pytest.approx(float(ref), rel=1e-5)
    else:
        # rows start from a zero state; all predictions are still counted once
        assert math.isfinite(got.nats) and got.nats > 0


def test_untrained_model_scores_about_ln_vocab():
    torch.manual_seed(0)
    v = 65
    model = CharLM(ModelConfig(vocab_size=v, hidden_size=64, num_layers=2, embed_size=32))
    ids = torch.randint(0, v, (5000,), dtype=torch.uint8)
    s = evaluate_stream(model, ids)
    assert s.nats_per_char == pytest.approx(math.log(v), abs=0.05)


def test_a_capped_evaluation_samples_the_whole_text():
    """max_chars scores the beginning of every row: spread over the text, each row from a fresh state."""
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=7, cell="gru", embed_size=4, hidden_size=8, num_layers=1)).eval()
    ids = torch.randint(0, 7, (8 * 600 + 5,))
    got = evaluate_stream(model, ids, streams=8, chunk=64, max_chars=8 * 50)
    row = (len(ids) - 1) // 8
    nll = 0.0
    with torch.no_grad():
        for r in range(8):
            piece = ids[r * row:r * row + 51].long()[None]            # 50 predictions from the row's start
            logits, _ = model(piece[:, :-1])
            nll += F.cross_entropy(logits[0], piece[0, 1:], reduction="sum").item()
    assert got.chars == 400 and got.nats == pytest.approx(nll, rel=1e-5)
    assert evaluate_stream(model, ids, streams=8, chunk=64, max_chars=10 ** 6) == evaluate_stream(model, ids, streams=8, chunk=64)
