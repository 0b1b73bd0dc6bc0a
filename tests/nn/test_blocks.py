"""minGRU blocks: the parallel log-space scan against the loop (outputs, final state, gradients; float64
gradcheck), chunks with carried state against one pass, one step at a time against the parallel forward,
long sequences and extreme gates without NaN, and a language model that trains, resumes exactly and
samples like every other cell."""

from __future__ import annotations

import pytest
import torch

from rnnkit.config import DataConfig, ModelConfig, SampleConfig, TrainConfig
from rnnkit.inference.sampling import generate
from rnnkit.nn.blocks import MinGRUBlock, mingru_loop, mingru_scan
from rnnkit.nn.models import CharLM
from rnnkit.runs import load
from rnnkit.training.lm import resume, train


def blocks(seed=0, **kw):
    torch.manual_seed(seed)
    a = MinGRUBlock(6, 8, parallel=True, **kw)
    b = MinGRUBlock(6, 8, parallel=False, **kw)
    b.load_state_dict(a.state_dict())
    return a, b


def run(block, x, state=None):
    return block.unroll(block.project(x), state if state is not None else block.init_state(x.shape[0]))


def test_scan_equals_the_loop_outputs_state_and_gradients():
    par, seq = blocks()
    x = torch.randn(3, 40, 6, requires_grad=True)
    (y1, s1), (y2, s2) = run(par, x), run(seq, x)
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    for a, b in zip(s1, s2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    g1 = torch.autograd.grad((y1 ** 2).sum(), [x, *par.parameters()])
    g2 = torch.autograd.grad((y2 ** 2).sum(), [x, *seq.parameters()])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)      # log and exp: float32 rounding, amplified


def test_the_scan_gradchecks_in_float64():
    k = torch.randn(2, 7, 3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 7, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.rand(2, 3, dtype=torch.float64) + 0.1
    assert torch.autograd.gradcheck(lambda k, x: mingru_scan(k, x, h0), (k, x))
    torch.testing.assert_close(mingru_scan(k, x, h0), mingru_loop(k, x, h0))


@pytest.mark.parametrize("parallel", [True, False])
def test_chunks_with_carried_state_equal_one_pass_and_steps_equal_the_parallel_forward(parallel):
    par, seq = blocks(1)
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


def test_long_sequences_and_extreme_gates_stay_finite():
    torch.manual_seed(0)
    for scale in (1.0, 30.0):
        k = torch.randn(2, 4096, 16) * scale
        x = torch.randn(2, 4096, 16, requires_grad=True) * scale
        h = mingru_scan(k, x, torch.zeros(2, 16))
        assert torch.isfinite(h).all() and (h > 0).all()
        torch.testing.assert_close(h[:, -64:], mingru_loop(k, x, torch.zeros(2, 16))[:, -64:], rtol=2e-3, atol=1e-4)
        (grad,) = torch.autograd.grad(h.sum(), x)
        assert torch.isfinite(grad).all()


def test_a_mingru_language_model_trains_resumes_exactly_and_samples(tiny_corpus, tmp_path):
    model = ModelConfig(cell="mingru", hidden_size=32, num_layers=2, embed_size=16, dropout=0.1,
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


def test_bad_block_options_get_one_line():
    with pytest.raises(ValueError, match="has no option width"):
        CharLM(ModelConfig(vocab_size=10, cell="mingru", cell_options={"width": 3}))
    with pytest.raises(ValueError, match="expansion > 0"):
        CharLM(ModelConfig(vocab_size=10, cell="mingru", cell_options={"expansion": -1.0}))


def test_a_bidirectional_mingru_classifier_reads_each_text_as_if_alone(tmp_path):
    from rnnkit.config import ClassifierConfig, ClassifierTrainConfig, TextDataConfig
    from rnnkit.nn.models import SequenceClassifier
    from rnnkit.training.classifier import train as train_classifier
    from conftest import FIXTURES
    torch.manual_seed(0)
    model = SequenceClassifier(ClassifierConfig(vocab_size=30, num_classes=2, cell="mingru", embed_size=8,
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
                               ClassifierConfig(cell="mingru", embed_size=8, hidden_size=8, bidirectional=True),
                               ClassifierTrainConfig(batch_size=8, steps=8, seed=1, threads=1, device="cpu"),
                               tmp_path / "clf", quiet=True)
    assert summary["step"] == 8 and 0 <= summary["val_accuracy"] <= 1
    with pytest.raises(ValueError, match="packed sequences are for the classic cells"):
        ClassifierConfig(cell="mingru", packed=True)
