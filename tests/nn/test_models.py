import math

import pytest
import torch
import torch.nn.functional as F

from rnnkit.config import ConfigError, ModelConfig
from rnnkit.nn.models import CharLM
from rnnkit.nn.state import detach_state

CELLS = ["elman", "rnn", "lstm", "gru"]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("embed", [0, 8])
def test_shapes_state_and_streaming(cell, embed):
    model = CharLM(ModelConfig(vocab_size=10, cell=cell, hidden_size=12, num_layers=2, embed_size=embed)).eval()
    x = torch.randint(0, 10, (3, 9))
    logits, state = model(x)
    assert logits.shape == (3, 9, 10)
    h = state[0] if cell == "lstm" else state
    assert h.shape == (2, 3, 12)
    # reading in two pieces with the state carried equals reading at once
    a, s = model(x[:, :4])
    b, _ = model(x[:, 4:], s)
    assert torch.allclose(torch.cat([a, b], 1), logits, atol=1e-5)
    # init_state is the zero state the model starts from
    z, _ = model(x, model.init_state(3))
    assert torch.allclose(z, logits, atol=1e-6)


def test_elman_is_a_sigmoid_state():
    model = CharLM(ModelConfig(vocab_size=5, cell="elman", hidden_size=6, num_layers=1, embed_size=0))
    _, h = model(torch.randint(0, 5, (2, 4)))
    assert (h > 0).all() and (h < 1).all()


@pytest.mark.parametrize("cell", CELLS)
def test_loss_at_initialisation_is_about_ln_vocab(cell):
    torch.manual_seed(0)
    v = 50
    model = CharLM(ModelConfig(vocab_size=v, cell=cell, hidden_size=64, num_layers=2))
    x = torch.randint(0, v, (8, 50))
    logits, _ = model(x)
    loss = F.cross_entropy(logits.reshape(-1, v), torch.randint(0, v, (400,)))
    assert abs(loss.item() - math.log(v)) < 0.1


def test_detach_state_cuts_the_graph_but_keeps_values():
    model = CharLM(ModelConfig(vocab_size=5, cell="lstm", hidden_size=4, num_layers=1))
    _, state = model(torch.randint(0, 5, (2, 3)))
    cut = detach_state(state)
    assert all(not t.requires_grad for t in cut)
    assert all(torch.equal(a, b) for a, b in zip(cut, state))


def test_init_std_draws_weights_from_a_normal_and_zeroes_biases():
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=50, cell="rnn", embed_size=0, hidden_size=256, num_layers=1, init_std=0.01))
    weights = [p for p in model.parameters() if p.dim() > 1]
    biases = [p for p in model.parameters() if p.dim() == 1]
    assert len(weights) == 3 and len(biases) == 3                     # W_xh, W_hh, W_hq; b_ih, b_hh, b_q
    assert all(abs(w.std().item() - 0.01) < 0.001 and abs(w.mean().item()) < 0.001 for w in weights)
    assert all(torch.count_nonzero(b) == 0 for b in biases)
    with pytest.raises(ConfigError, match="init_std"):
        ModelConfig(init_std=-1.0)
