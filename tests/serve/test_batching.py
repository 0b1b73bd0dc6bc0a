"""Continuous batching against its references: a lone request is ``generate()`` for its seed, a row's logits
in a shared batch stay within 1e-5 of its solo logits, and greedy texts of requests that share every step
are their solo texts."""

from __future__ import annotations

import pytest
import torch

from rnnkit.config import SampleConfig
from rnnkit.inference import batching
from rnnkit.inference.sampling import generate
from rnnkit.runs import load

CONFIGS = [SampleConfig(prompt="ROMEO:", length=40, temperature=0.8, seed=1),
           SampleConfig(prompt="First Citizen:\n", length=40, temperature=1.0, top_k=5, seed=2),
           SampleConfig(prompt="A", length=40, temperature=0.7, top_p=0.9, num_samples=3, seed=3),
           SampleConfig(prompt="KING", length=40, temperature=0, seed=4)]


def run(model, vocab, configs, *, batched=True, join_at=None):
    """Generate for every config together (``join_at[i]``: the step at which request i joins)."""
    join_at = join_at or [0] * len(configs)
    groups = [None] * len(configs)
    t = 0
    while any(g is None or not g.done for g in groups):
        for i, c in enumerate(configs):
            if groups[i] is None and join_at[i] <= t:
                groups[i] = batching.start(model, vocab, c)
        live = [g for g in groups if g is not None and not g.done]
        ids = [batching.draw(g) for g in live]
        going = [(g, x) for g, x in zip(live, ids) if not g.done]
        batching.step(model, [g for g, _ in going], [x for _, x in going], batched=batched)
        t += 1
    return [[vocab.decode(row) for row in torch.stack(g.drawn, 1)] for g in groups]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_lone_request_is_generate_for_its_seed(cell, tiny_corpus, tmp_path):
    from rnnkit.config import DataConfig, ModelConfig, TrainConfig
    from rnnkit.training.lm import train
    train(DataConfig(path=str(tiny_corpus)), ModelConfig(cell=cell, hidden_size=24, num_layers=2, embed_size=8),
          TrainConfig(batch_size=4, seq_len=16, steps=20, eval_every=20, eval_chars=400, seed=1, threads=1,
                      lr=1e-2, warmup_steps=2, device="cpu"), tmp_path / "r", quiet=True)
    lm = load(tmp_path / "r")
    for c in CONFIGS:
        assert run(lm.model, lm.vocab, [c])[0] == generate(lm.model, lm.vocab, c), c


def test_batched_logits_stay_within_1e5_of_solo(lm_run):
    lm = load(lm_run)
    solo = [batching.start(lm.model, lm.vocab, c) for c in CONFIGS]
    shared = [batching.start(lm.model, lm.vocab, c) for c in CONFIGS]
    for _ in range(30):                          # the same characters fed to both
        ids = [batching.draw(g) for g in solo]
        for g, x in zip(shared, ids):
            g.drawn.append(x)
        batching.step(lm.model, solo, ids, batched=False)
        batching.step(lm.model, shared, ids, batched=True)
        for a, b in zip(solo, shared):
            assert (a.logits - b.logits).abs().max() <= 1e-5


def test_greedy_texts_of_concurrent_requests_are_their_solo_texts(lm_run):
    lm = load(lm_run)
    greedy = [SampleConfig(prompt=p, length=60, temperature=0, num_samples=n)
              for p, n in (("ROMEO:", 1), ("First", 2), ("\n", 1), ("All:\nSpeak", 1), ("Q", 3))]
    alone = [run(lm.model, lm.vocab, [c])[0] for c in greedy]
    together = run(lm.model, lm.vocab, greedy, join_at=[0, 3, 3, 10, 25])     # joining between steps
    assert together == alone
    assert alone[0] == generate(lm.model, lm.vocab, greedy[0])


def test_drawing_all_groups_at_once_draws_what_each_would_alone(lm_run):
    lm = load(lm_run)
    configs = [SampleConfig(prompt=p, length=30, temperature=t, top_k=k, top_p=tp, num_samples=n, seed=s)
               for p, t, k, tp, n, s in (("A", 0.8, None, None, 1, 1), ("B", 0.8, None, None, 3, 2),
                                         ("C", 0.8, None, None, 2, 3), ("D", 1.0, 5, None, 1, 4),
                                         ("E", 1.0, 5, None, 2, 5), ("F", 0.7, None, 0.9, 1, 6), ("G", 0, None, None, 2, 7))]
    one = [batching.start(lm.model, lm.vocab, c) for c in configs]
    many = [batching.start(lm.model, lm.vocab, c) for c in configs]
    for _ in range(30):
        alone = [batching.draw(g) for g in one]
        together = batching.draw_all(many)
        assert all(torch.equal(a, b) for a, b in zip(alone, together))
        batching.step(lm.model, one, alone)
        batching.step(lm.model, many, together)
