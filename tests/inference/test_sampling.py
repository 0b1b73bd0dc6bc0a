"""inference/sampling.py and inference/fast.py: sampling semantics, and the fast path (Stepper) against the
reference ``model(x, state)`` on ATen's native CPU kernels."""

from __future__ import annotations

import contextlib
import math
import threading

import pytest
import torch

from rnnkit.config import ModelConfig, SampleConfig
from rnnkit.inference.fast import BlockStepper, Stepper, fast_path_supported
from rnnkit.inference.sampling import filter_logits, generate, next_ids
from rnnkit.nn.models import CharLM
from rnnkit.data.vocab import CharVocab

VOCAB = CharVocab(list("\n abcdefghijklmnopqrstuvwxyz.,;:!?'ABCDEFGHIJ"))


def make_model(cell="lstm", embed=8, hidden=32, layers=2, backend="fused", seed=0) -> CharLM:
    torch.manual_seed(seed)
    model = CharLM(ModelConfig(vocab_size=len(VOCAB), cell=cell, embed_size=embed, hidden_size=hidden,
                               num_layers=layers, backend=backend)).eval()
    with torch.no_grad():                      # larger weights than the default init: peaked, varied logits
        for p in model.parameters():
            p.mul_(3.0)
    return model


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is fastest, and immune to a busy second core (conftest restores the count)."""
    torch.set_num_threads(1)


@pytest.fixture
def steps_taken(monkeypatch):
    """Counts fast-path steps, to tell which path generate() took."""
    count = {"steps": 0, "pipelined": 0}
    for cls in (Stepper, BlockStepper):
        step, pipeline = cls.step, cls.pipeline

        def counting_step(self, ids, step=step):
            count["steps"] += 1
            return step(self, ids)

        def counting_pipeline(self, pipeline=pipeline):
            count["pipelined"] += 1
            return pipeline(self)
        monkeypatch.setattr(cls, "step", counting_step)
        monkeypatch.setattr(cls, "pipeline", counting_pipeline)
    return count


def native_kernels():
    """The reference the fast path is exact against: torch.nn's layers on ATen's native CPU kernels. Only
    tests flip this process-wide switch; rnnkit itself never does."""
    return torch.backends.mkldnn.flags(enabled=False)


def reference(model, cfg: SampleConfig) -> list[str]:
    """generate()'s reference path, on the kernels the fast path mirrors."""
    with native_kernels():
        return generate(model, VOCAB, cfg, fast=False)


def reference_logits(model, ids: list[list[int]], state=None):
    """Logits (N, V) before each step of ``ids`` (N rows, fed one column at a time), by model(x, state),
    on the kernels generate() uses: ATen's own for one row, torch's defaults for a batch."""
    out = []
    with torch.inference_mode(), native_kernels() if len(ids) == 1 else contextlib.nullcontext():
        x = torch.tensor(ids)
        for t in range(x.shape[1]):
            logits, state = model(x[:, t:t + 1], state)
            out.append(logits[:, -1])
    return out


# ----------------------------------------------------------------------------- fast == reference

@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("embed", [8, 0])
@pytest.mark.parametrize("batch,pipelined", [(1, False), (1, True), (3, False)])
def test_stepper_is_bitwise_the_reference_step(cell, embed, batch, pipelined):
    torch.set_num_threads(2 if pipelined else 1)
    model = make_model(cell, embed)
    torch.manual_seed(1)
    ids = torch.randint(len(VOCAB), (batch, 40))
    with torch.inference_mode(), native_kernels():
        _, state = model(ids[:, :5], None)
        stepper = Stepper(model, state)
        if pipelined:
            stepper.pipeline()
        try:
            for t in range(5, 40):
                logits, state = model(ids[:, t:t + 1], state)
                fast = stepper.step(ids[:, t])
                assert torch.equal(fast, logits[:, -1]), f"step {t}: max diff {(fast - logits[:, -1]).abs().max()}"
            new = stepper.state()
        finally:
            stepper.close()
    for a, b in zip(new if isinstance(new, tuple) else (new,), state if isinstance(state, tuple) else (state,)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("num_samples,pipeline", [(1, False), (1, True), (3, None)])
def test_fast_path_gives_the_reference_text(cell, num_samples, pipeline, steps_taken):
    torch.set_num_threads(2 if pipeline else 1)
    model = make_model(cell)
    fast_steps = 199 if num_samples == 1 else 0                 # batches take model(x, state) on both paths
    for seed, temperature, top_k, top_p in [(1, 1.0, None, None), (2, 0.7, None, None), (3, 1.5, None, None),
                                            (4, 0.0, None, None), (5, 1.0, 5, None), (6, 1.0, None, 0.9)]:
        cfg = SampleConfig(prompt="the ", length=200, temperature=temperature, top_k=top_k, top_p=top_p,
                           num_samples=num_samples, seed=seed)
        steps_taken["steps"] = 0
        fast = generate(model, VOCAB, cfg, pipeline=pipeline)
        assert steps_taken["steps"] == fast_steps, "the fast path was not taken"
        assert fast == (reference(model, cfg) if num_samples == 1 else generate(model, VOCAB, cfg, fast=False))
        assert steps_taken["steps"] == fast_steps
    assert steps_taken["pipelined"] == (6 if num_samples == 1 and pipeline else 0)


@pytest.mark.parametrize("cell", ["mingru", "rglru"])
@pytest.mark.parametrize("batch", [1, 3])
def test_block_stepper_is_bitwise_the_reference_step(cell, batch):
    """Scan blocks: the stepper (first block's input part looked up per character) gives what
    model(x, state) gives one character at a time, logits and every part of the state."""
    model = make_model(cell, hidden=24)
    assert fast_path_supported(model)
    torch.manual_seed(1)
    ids = torch.randint(len(VOCAB), (batch, 40))
    with torch.inference_mode():
        _, state = model(ids[:, :5], None)
        stepper = BlockStepper(model, state)
        for t in range(5, 40):
            logits, state = model(ids[:, t:t + 1], state)
            fast = stepper.step(ids[:, t])
            assert torch.equal(fast, logits[:, -1]), f"step {t}: max diff {(fast - logits[:, -1]).abs().max()}"
        assert all(torch.equal(a, b) for a, b in zip(stepper.state(), state))


@pytest.mark.parametrize("cell", ["mingru", "rglru"])
@pytest.mark.parametrize("backend", ["fused", "scratch"])
def test_block_models_sample_the_reference_text_on_the_fast_path(cell, backend, steps_taken):
    model = make_model(cell, hidden=24, backend=backend)
    for seed, temperature, top_k in [(1, 1.0, None), (4, 0.0, None), (5, 0.8, 5)]:
        cfg = SampleConfig(prompt="the ", length=120, temperature=temperature, top_k=top_k, seed=seed)
        steps_taken["steps"] = 0
        fast = generate(model, VOCAB, cfg)
        assert steps_taken["steps"] == 119, "the fast path was not taken"
        assert fast == generate(model, VOCAB, cfg, fast=False)


@pytest.mark.parametrize("pipelined_is_faster", [True, False])
def test_generate_times_both_ways_and_keeps_the_faster_with_the_same_text(pipelined_is_faster, steps_taken,
                                                                         monkeypatch):
    """pipeline=None with two threads: PIPELINE_TRIAL characters pipelined, as many not, then the faster
    (a clock that says which), and the text is the reference's either way."""
    import rnnkit.inference.sampling as sampling
    torch.set_num_threads(2)
    plain = 1000 if pipelined_is_faster else 10                 # the plain trial's time; the pipelined one's: 100
    readings = [0, 100, 100, 100 + plain]
    calls = []

    def clock():
        calls.append(None)
        return readings[len(calls) - 1]
    monkeypatch.setattr(sampling, "_clock", clock)
    model = make_model("gru")
    cfg = SampleConfig(prompt="the ", length=8 * sampling.PIPELINE_TRIAL + 50, seed=7)
    text = generate(model, VOCAB, cfg)
    assert len(calls) == 4
    assert steps_taken["pipelined"] == (2 if pipelined_is_faster else 1)
    assert text == reference(model, cfg)


def test_one_hot_inputs_take_the_fast_path_too(steps_taken):
    model = make_model("lstm", embed=0)
    cfg = SampleConfig(prompt="ab", length=100, seed=3)
    assert generate(model, VOCAB, cfg) == reference(model, cfg)
    assert steps_taken["steps"] == 99


@pytest.mark.parametrize("cell,backend", [("elman", "scratch"), ("lstm", "scratch"), ("gru", "scratch")])
def test_scratch_models_fall_back_to_the_reference_path(cell, backend, steps_taken):
    model = make_model(cell, backend=backend)
    assert not fast_path_supported(model)
    cfg = SampleConfig(prompt="a", length=50, seed=1)
    assert generate(model, VOCAB, cfg) == generate(model, VOCAB, cfg, fast=False)
    assert steps_taken["steps"] == 0


def test_fast_path_refused_where_it_would_not_be_exact():
    assert fast_path_supported(make_model("lstm"))
    assert not fast_path_supported(make_model("lstm").to(torch.float64))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("prompt_length", [1, 2, 37])
def test_priming_is_bitwise_the_reference_forward(cell, prompt_length):
    """Stepper.prime reads a prompt as torch.nn's layer does on ATen's kernels: same logits, same state."""
    model = make_model(cell)
    torch.manual_seed(2)
    ids = torch.randint(len(VOCAB), (prompt_length,))
    with torch.inference_mode(), native_kernels():
        logits, state = model(ids[None], None)
    with torch.inference_mode():
        stepper = Stepper(model)
        assert torch.equal(stepper.prime(ids), logits[:, -1])
    assert all(torch.equal(a, b) for a, b in zip(stepper.state() if cell == "lstm" else (stepper.state(),),
                                                 state if cell == "lstm" else (state,)))


# ----------------------------------------------------------------------------- sampling semantics

def test_same_seed_same_sample_other_seed_other_sample():
    model = make_model("lstm")
    cfg = SampleConfig(prompt="the", length=120, seed=11)
    a, b = generate(model, VOCAB, cfg), generate(model, VOCAB, cfg)
    assert a == b and len(a[0]) == 120
    assert a != generate(model, VOCAB, SampleConfig(prompt="the", length=120, seed=12))


def test_sampling_leaves_the_global_rng_alone():
    model = make_model("gru")
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    generate(model, VOCAB, SampleConfig(length=30, seed=1))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "elman"])
def test_temperature_zero_is_argmax_of_the_reference_logits(cell):
    model = make_model(cell, backend="scratch" if cell == "elman" else "fused")
    text = generate(model, VOCAB, SampleConfig(prompt="a", length=60, temperature=0.0, seed=None))[0]
    # Greedy by hand: feed the prompt, then always the most likely character (on the fast path's kernels).
    with torch.inference_mode(), native_kernels():
        logits, state = model(torch.tensor([[VOCAB.index["a"]]]), None)
        expected = []
        for _ in range(60):
            i = int(logits[0, -1].argmax())
            expected.append(VOCAB.chars[i])
            logits, state = model(torch.tensor([[i]]), state)
    assert text == "".join(expected)


@pytest.mark.parametrize("k", [1, 3])
def test_top_k_never_emits_outside_the_k_most_likely(k):
    model = make_model("lstm")
    prompt = "a"
    texts = generate(model, VOCAB, SampleConfig(prompt=prompt, length=150, temperature=2.0, top_k=k,
                                                 num_samples=4, seed=7))
    ids = [[VOCAB.index[c] for c in prompt + t] for t in texts]
    logits = reference_logits(model, ids)                    # logits[t] predicts ids[:, t + 1]
    for t in range(len(ids[0]) - 1):
        topk = logits[t].topk(k, dim=-1).indices
        for row in range(4):
            assert ids[row][t + 1] in topk[row].tolist()
    if k == 1:   # top-1 at any temperature is greedy
        assert texts[0] == generate(model, VOCAB, SampleConfig(prompt=prompt, length=150, temperature=0.0))[0]


@pytest.mark.parametrize("rows,temperature,top_k,top_p", [(1, 1.0, None, None), (3, 0.7, None, None),
                                                         (1, 1.3, 5, None), (2, 1.0, None, 0.9)])
def test_draws_are_torch_multinomial_draws(rows, temperature, top_k, top_p):
    """next_ids skips torch.multinomial's checks but must draw exactly what it draws from the same generator."""
    ours, theirs = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    torch.manual_seed(0)
    for _ in range(400):
        logits = torch.randn(rows, len(VOCAB)) * 4
        got = next_ids(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=ours)
        probs = filter_logits(logits / temperature, top_k=top_k, top_p=top_p).softmax(-1)
        assert torch.equal(got, torch.multinomial(probs, 1, generator=theirs).squeeze(-1))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_diverged_model_is_reported_not_sampled(bad):
    model = make_model("gru")
    with torch.no_grad():
        model.head.bias[3] = bad
    for fast in (True, False):
        with pytest.raises(ValueError, match="not finite"):
            generate(model, VOCAB, SampleConfig(prompt="ab", length=10, seed=1), fast=fast)


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    kept = lambda p: torch.isfinite(filter_logits(logits, top_p=p))[0].tolist()
    assert kept(0.7) == [True, True, False, False]       # 0.5 < 0.7 <= 0.8
    assert kept(0.5) == [True, False, False, False]      # the first alone already has 0.5
    assert kept(0.81) == [True, True, True, False]
    assert kept(1.0) == [True] * 4
    # Order in the vocabulary does not matter, only probability.
    shuffled = filter_logits(logits[:, [2, 0, 3, 1]], top_p=0.7)
    assert torch.isfinite(shuffled)[0].tolist() == [False, True, False, True]
    # The kept logits are unchanged (renormalised by the softmax that follows).
    assert torch.equal(filter_logits(logits, top_p=0.7)[0, :2], logits[0, :2])


def test_top_p_tiny_is_greedy_and_top_p_samples_only_the_nucleus():
    model = make_model("lstm")
    greedy = generate(model, VOCAB, SampleConfig(prompt="a", length=80, temperature=0.0))
    assert generate(model, VOCAB, SampleConfig(prompt="a", length=80, top_p=1e-6, seed=3)) == greedy
    p = 0.6
    texts = generate(model, VOCAB, SampleConfig(prompt="a", length=120, top_p=p, num_samples=3, seed=4))
    ids = [[VOCAB.index[c] for c in "a" + t] for t in texts]
    for t, logits in enumerate(reference_logits(model, ids)[:-1]):
        probs = logits.softmax(-1)
        for row in range(3):
            chosen = probs[row, ids[row][t + 1]]
            mass_above = probs[row][probs[row] > chosen].sum()
            assert mass_above < p + 1e-6        # otherwise the character lay outside the nucleus


def test_unknown_prompt_characters_are_skipped_with_a_warning():
    model = make_model("lstm")
    warnings: list[str] = []
    texts = generate(model, VOCAB, SampleConfig(prompt="ab€Zc", length=20, seed=1), warn=warnings.append)
    assert len(texts[0]) == 20 and set(texts[0]) <= set(VOCAB.chars)
    assert any("€" in w and "Z" in w for w in warnings)
    # Same text as the prompt without the unknown characters.
    assert texts == generate(model, VOCAB, SampleConfig(prompt="abc", length=20, seed=1), warn=warnings.append)
    # No known character at all: starts from a line break, still samples.
    warnings.clear()
    texts = generate(model, VOCAB, SampleConfig(prompt="€€", length=10, seed=1), warn=warnings.append)
    assert len(texts[0]) == 10 and any("starting from" in w for w in warnings)
    assert texts == generate(model, VOCAB, SampleConfig(prompt="\n", length=10, seed=1))


def test_streaming_sees_every_character_in_order():
    model = make_model("gru")
    got: list[list[str]] = []
    texts = generate(model, VOCAB, SampleConfig(length=40, num_samples=2, seed=2), on_chars=got.append)
    assert len(got) == 40
    assert ["".join(step[i] for step in got) for i in range(2)] == texts


def test_a_zero_length_is_refused():
    from rnnkit.config import ConfigError
    with pytest.raises(ConfigError, match="length must be an integer >= 1"):
        SampleConfig(length=0)


@pytest.mark.parametrize("length", [1, 2])
def test_short_lengths(length):
    model = make_model("lstm")
    cfg = SampleConfig(length=length, num_samples=2, seed=1)
    texts = generate(model, VOCAB, cfg)
    assert [len(t) for t in texts] == [length, length] and texts == generate(model, VOCAB, cfg, fast=False)


def test_generate_leaves_process_wide_switches_alone(monkeypatch):
    """What other threads see stays as it is: generate() never sets torch's oneDNN switch."""
    import torch.backends.mkldnn as mkldnn
    calls = []
    real = type(mkldnn).__setattr__
    monkeypatch.setattr(type(mkldnn), "__setattr__", lambda self, k, v: calls.append(k) or real(self, k, v))
    for fast in (True, False):
        generate(make_model("lstm"), VOCAB, SampleConfig(length=5, seed=1), fast=fast)
    assert calls == []


@pytest.mark.parametrize("pipeline", [False, True])
def test_two_threads_generate_what_one_after_the_other_gives(pipeline):
    """Loading, sampling and scoring may run in several threads at once (a server's requests)."""
    torch.set_num_threads(2)
    models = {"lstm": make_model("lstm", seed=1), "gru": make_model("gru", seed=2),
              "scratch": make_model("lstm", backend="scratch", seed=3)}
    jobs = [(name, SampleConfig(prompt="the ", length=150, seed=s, num_samples=n))
            for name in models for s, n in ((1, 1), (2, 1), (3, 2))]
    expected = [generate(models[name], VOCAB, cfg, pipeline=pipeline) for name, cfg in jobs]
    got: dict[int, list[str]] = {}

    def run(indices):
        for i in indices:
            name, cfg = jobs[i]
            got[i] = generate(models[name], VOCAB, cfg, pipeline=pipeline)
    threads = [threading.Thread(target=run, args=(range(k, len(jobs), 2),)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [got.get(i) for i in range(len(jobs))] == expected


def test_temperature_scales_logits():
    """temperature T samples from softmax(logits / T): a peaked distribution flattens as T grows."""
    model = make_model("lstm")
    n = 400
    low = generate(model, VOCAB, SampleConfig(prompt="a", length=1, num_samples=n, temperature=0.3, seed=1))
    high = generate(model, VOCAB, SampleConfig(prompt="a", length=1, num_samples=n, temperature=3.0, seed=1))
    entropy = lambda texts: -sum((c := texts.count(x) / n) * math.log(c) for x in set(texts))
    assert entropy(high) > entropy(low)
