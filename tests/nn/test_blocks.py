"""minGRU and RG-LRU blocks: the parallel log-space scans against the loops (outputs, final state, gradients; float64
gradcheck), chunks with carried state against one pass, one step at a time against the parallel forward,
long sequences and extreme gates without NaN, and a language model that trains, resumes exactly and
samples like every other cell."""

from __future__ import annotations

import pytest
import torch

from rnnkit.config import DataConfig, ModelConfig, SampleConfig, TrainConfig
from rnnkit.inference.sampling import generate
from rnnkit.nn.blocks import MinGRUBlock, RGLRUBlock, linear_loop, linear_scan, mingru_loop, mingru_scan
from rnnkit.nn.models import CharLM
from rnnkit.runs import load
from rnnkit.training.lm import resume, train


BLOCKS = {"mingru": MinGRUBlock, "rglru": RGLRUBlock}


def scan_inputs(cell, *shape, scale=1.0, dtype=torch.float32):
    """The scan's, its loop's and their inputs: minGRU's gate and candidate pre-activations, or RG-LRU's
    log-decays (≤ 0, down to −30·scale) and inputs of either sign; h0 of the kind each carries."""
    g = torch.Generator().manual_seed(0)
    first = torch.randn(*shape, generator=g, dtype=dtype) * scale
    second = torch.randn(*shape, generator=g, dtype=dtype) * scale
    h0 = torch.rand(shape[0], shape[-1], generator=g, dtype=dtype) + 0.1
    if cell == "mingru":
        return mingru_scan, mingru_loop, first, second, h0
    return linear_scan, linear_loop, -first.abs(), second, h0 - 0.6


def blocks(cell="mingru", seed=0, **kw):
    torch.manual_seed(seed)
    a = BLOCKS[cell](6, 8, parallel=True, **kw)
    b = BLOCKS[cell](6, 8, parallel=False, **kw)
    b.load_state_dict(a.state_dict())
    return a, b


def run(block, x, state=None):
    return block.unroll(block.project(x), state if state is not None else block.init_state(x.shape[0]))


@pytest.mark.parametrize("cell", BLOCKS)
def test_scan_equals_the_loop_outputs_state_and_gradients(cell):
    par, seq = blocks(cell)
    x = torch.randn(3, 40, 6, requires_grad=True)
    (y1, s1), (y2, s2) = run(par, x), run(seq, x)
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    for a, b in zip(s1, s2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    g1 = torch.autograd.grad((y1 ** 2).sum(), [x, *par.parameters()])
    g2 = torch.autograd.grad((y2 ** 2).sum(), [x, *seq.parameters()])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)      # log and exp: float32 rounding, amplified


@pytest.mark.parametrize("cell", BLOCKS)
def test_the_scan_gradchecks_in_float64(cell):
    scan, loop, k, x, h0 = scan_inputs(cell, 2, 7, 3, dtype=torch.float64)
    k, x = k.requires_grad_(), x.requires_grad_()
    assert torch.autograd.gradcheck(lambda k, x: scan(k, x, h0), (k, x))
    if cell == "mingru":                                            # across its chunks too
        assert torch.autograd.gradcheck(lambda k, x: scan(k, x, h0, chunk=3), (k, x))
    torch.testing.assert_close(scan(k, x, h0), loop(k, x, h0))


@pytest.mark.parametrize("cell", BLOCKS)
@pytest.mark.parametrize("parallel", [True, False])
def test_chunks_with_carried_state_equal_one_pass_and_steps_equal_the_parallel_forward(cell, parallel):
    par, seq = blocks(cell, 1)
    block = par if parallel else seq
    x = torch.randn(2, 30, 6)
    with torch.no_grad():
        whole, final = run(block, x)
        y_a, s = run(block, x[:, :11])
        y_b, s = run(block, x[:, 11:], s)
        torch.testing.assert_close(torch.cat([y_a, y_b], 1), whole, rtol=1e-5, atol=1e-5)
        state = block.init_state(2)
        steps = []
        for t in range(30):                                 # generation: one character at a time
            state = block.recur(block.project(x[:, t]), state)
            steps.append(block.output(state))
        torch.testing.assert_close(torch.stack(steps, 1), run(par, x)[0], rtol=1e-5, atol=1e-5)
        for a, b in zip(state, final):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", BLOCKS)
def test_long_sequences_and_extreme_gates_stay_finite(cell):
    for scale in (1.0, 30.0):
        scan, loop, k, x, _ = scan_inputs(cell, 2, 4096, 16, scale=scale)
        x.requires_grad_()
        h = scan(k, x, torch.zeros(2, 16))
        assert torch.isfinite(h).all()
        if cell == "mingru":
            assert (h > 0).all()
        torch.testing.assert_close(h[:, -64:], loop(k, x, torch.zeros(2, 16))[:, -64:], rtol=2e-3, atol=1e-4)
        (grad,) = torch.autograd.grad(h.sum(), x)
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("cell", BLOCKS)
def test_under_bfloat16_autocast_the_recurrence_stays_float32(cell):
    """Mixed precision runs the projections in bfloat16 and the scan in float32: the carried state is float32
    and the outputs follow the float32 block to bfloat16's precision, also over a long sequence."""
    par, _ = blocks(cell)
    x = torch.randn(2, 512, 6)
    ref, ref_state = run(par, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, state = run(par, x)
    h, ref_h = state[1], ref_state[1]                       # (output, recurrence h, convolution window)
    assert h.dtype == torch.float32 and torch.isfinite(y).all()
    torch.testing.assert_close(h, ref_h, rtol=0.05, atol=0.05)
    torch.testing.assert_close(y.float(), ref, rtol=0.05, atol=0.05)


def test_rglru_decays_start_where_griffin_puts_them_and_blocks_keep_their_gradients_finite():
    block = RGLRUBlock(8, 64)
    a_c = torch.sigmoid(block.decay.detach()) ** RGLRUBlock.C          # a^c ~ U[0.9, 0.999] (Griffin §2.4)
    assert ((a_c >= 0.9 - 1e-6) & (a_c <= 0.999 + 1e-6)).all()
    with torch.no_grad():                                          # gates shut: r -> 0, a_t -> 1
        block.to_ri.bias.fill_(-200.0)
    x = torch.randn(2, 300, 8, requires_grad=True)
    y, _ = block.unroll(block.project(x), block.init_state(2))
    grads = torch.autograd.grad(y.sum(), [x, *block.parameters()])
    assert torch.isfinite(y).all() and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("cell", BLOCKS)
def test_a_block_language_model_trains_resumes_exactly_and_samples(cell, tiny_corpus, tmp_path):
    model = ModelConfig(cell=cell, hidden_size=32, num_layers=2, embed_size=16, dropout=0.1,
                        cell_options={"expansion": 1.5, "conv": 3})
    cfg = TrainConfig(batch_size=4, seq_len=16, steps=12, eval_every=4, eval_chars=600, seed=3, threads=1, lr=3e-3,
                      warmup_steps=2, device="cpu")
    data = DataConfig(path=str(tiny_corpus))
    full = train(data, model, cfg, tmp_path / "full", quiet=True)
    train(data, model, cfg, tmp_path / "split", quiet=True, pause_at=6)
    again = resume(tmp_path / "split", quiet=True)
    assert again["val_nats_per_char"] == full["val_nats_per_char"]
    lm = load(tmp_path / "full")
    assert lm.run["model"]["cell_options"] == {"expansion": 1.5, "conv": 3, "mlp": 4}    # defaults recorded too
    text = generate(lm.model, lm.vocab, SampleConfig(prompt="ROMEO:", length=40, seed=1))[0]
    assert len(text) == 40 and text == generate(lm.model, lm.vocab, SampleConfig(prompt="ROMEO:", length=40, seed=1))[0]
    loop = load(tmp_path / "full", backend="scratch")           # the same weights through the loop
    x = lm.vocab.encode("First Citizen:\nBefore we proceed").long()[None]
    with torch.no_grad():
        torch.testing.assert_close(loop.model(x)[0], lm.model(x)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cell", BLOCKS)
def test_bad_block_options_get_one_line(cell):
    with pytest.raises(ValueError, match="has no option width"):
        CharLM(ModelConfig(vocab_size=10, cell=cell, cell_options={"width": 3}))
    with pytest.raises(ValueError, match="expansion > 0"):
        CharLM(ModelConfig(vocab_size=10, cell=cell, cell_options={"expansion": -1.0}))


@pytest.mark.parametrize("cell", BLOCKS)
def test_a_bidirectional_block_classifier_reads_each_text_as_if_alone(cell, tmp_path):
    from rnnkit.config import ClassifierConfig, ClassifierTrainConfig, TextDataConfig
    from rnnkit.nn.models import SequenceClassifier
    from rnnkit.training.classifier import train as train_classifier
    from conftest import FIXTURES
    torch.manual_seed(0)
    model = SequenceClassifier(ClassifierConfig(vocab_size=30, num_classes=2, cell=cell, embed_size=8,
                                                hidden_size=8, bidirectional=True, pooling="mean")).eval()
    lengths = [5, 2, 7]
    tokens = torch.zeros(3, 7, dtype=torch.long)
    for b, n in enumerate(lengths):
        tokens[b, :n] = torch.randint(2, 30, (n,))
    with torch.no_grad():
        batch = model.features(tokens, torch.tensor(lengths))
        for b, n in enumerate(lengths):                   # the padding never reaches the valid steps
            alone = model.features(tokens[b:b + 1, :n], torch.tensor([n]))
            torch.testing.assert_close(batch[b:b + 1], alone, rtol=1e-5, atol=1e-5)
    summary = train_classifier(TextDataConfig(path=str(FIXTURES / "reviews.csv")),
                               ClassifierConfig(cell=cell, embed_size=8, hidden_size=8, bidirectional=True,
                                                cell_options={"conv": 2}),
                               ClassifierTrainConfig(batch_size=8, steps=8, seed=1, threads=1, device="cpu"),
                               tmp_path / "clf", quiet=True)
    assert summary["step"] == 8 and 0 <= summary["val_accuracy"] <= 1
    from rnnkit.runs import load_classifier
    clf = load_classifier(tmp_path / "clf")
    assert clf.run["model"]["cell_options"] == {"expansion": 1.5, "conv": 2, "mlp": 4}
    assert clf.model.layers[0][0].cells[0].kernel == 2                 # the options reach the blocks
    with pytest.raises(ValueError, match="packed sequences are for the classic cells"):
        ClassifierConfig(cell=cell, packed=True)
