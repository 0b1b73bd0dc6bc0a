"""The scratch unroller against torch.nn.RNN/LSTM/GRU, key conversion, and the scratch backend in CharLM."""

import pytest
import torch
from torch import nn

from rnnkit.config import DataConfig, ModelConfig, TrainConfig
from rnnkit.nn.models import CharLM
from rnnkit.nn import device, fused
from rnnkit.nn.recurrent import Unrolled, fused_to_scratch_keys, make_recurrent, scratch_to_fused_keys
from rnnkit.nn.state import detach_state

B, T, I, H = 3, 6, 5, 4


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def fused_and_scratch(cell: str, layers: int):
    torch.manual_seed(0)
    fused = make_recurrent(cell, I, H, layers, backend="fused")
    scratch = make_recurrent(cell, I, H, layers, backend="scratch")
    scratch.load_state_dict(fused_to_scratch_keys(fused.state_dict()))
    return fused, scratch


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("given_state", [False, True])
def test_scratch_matches_fused_outputs_states_and_gradients(cell, layers, given_state):
    fused, scratch = fused_and_scratch(cell, layers)
    assert isinstance(fused, nn.RNNBase) and fused.batch_first and isinstance(scratch, Unrolled)
    x = torch.randn(B, T, I, requires_grad=True)
    state = None
    if given_state:
        h0 = torch.randn(layers, B, H, requires_grad=True)
        state = (h0, torch.randn(layers, B, H, requires_grad=True)) if cell == "lstm" else h0

    out_f, st_f = fused(x, state)
    out_s, st_s = scratch(x, state)
    assert out_s.shape == (B, T, H)
    torch.testing.assert_close(out_s, out_f, rtol=1e-5, atol=1e-6)
    for a, b in zip(as_tuple(st_s), as_tuple(st_f)):
        assert a.shape == (layers, B, H)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

    # One scalar that depends on the outputs and on every final state.
    w_out = torch.randn(B, T, H)
    w_st = [torch.randn(layers, B, H) for _ in as_tuple(st_f)]

    def scalar(out, st):
        return (w_out * out).sum() + sum((w * s).sum() for w, s in zip(w_st, as_tuple(st)))

    leaves = [x] + (list(as_tuple(state)) if given_state else [])
    fused_params = dict(fused.named_parameters())
    scratch_params = dict(scratch.named_parameters())
    names = list(fused_params)
    g_f = torch.autograd.grad(scalar(out_f, st_f), leaves + [fused_params[n] for n in names])
    g_s = torch.autograd.grad(scalar(out_s, st_s),
                              leaves + [scratch_params[fused_to_scratch_keys({n: 0}).popitem()[0]] for n in names])
    for name, a, b in zip(["x", "h0", "c0"][:len(leaves)] + names, g_s, g_f):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m: f"gradient of {name}: {m}")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_state_carried_across_chunks_equals_one_pass(cell):
    _, scratch = fused_and_scratch(cell, 2)
    x = torch.randn(B, T, I)
    out, st = scratch(x)
    out1, st1 = scratch(x[:, :2])
    out2, st2 = scratch(x[:, 2:], st1)
    torch.testing.assert_close(torch.cat([out1, out2], 1), out)
    for a, b in zip(as_tuple(st2), as_tuple(st)):
        torch.testing.assert_close(a, b)


def test_elman_is_always_scratch_and_errors_name_the_choices():
    assert isinstance(make_recurrent("elman", I, H, backend="fused"), Unrolled)
    with pytest.raises(ValueError, match="unknown cell 'tanh'"):
        make_recurrent("tanh", I, H)
    with pytest.raises(ValueError, match="unknown backend"):
        make_recurrent("lstm", I, H, backend="cudnn")


def test_dropout_only_between_layers_and_only_in_training():
    torch.manual_seed(0)
    one = make_recurrent("gru", I, H, 1, dropout=0.5, backend="scratch")
    assert one.dropout == 0.0                                        # nothing to drop between layers
    two = make_recurrent("gru", I, H, 2, dropout=0.5, backend="scratch")
    x = torch.randn(B, T, I)
    two.eval()
    a, _ = two(x)
    b, _ = two(x)
    torch.testing.assert_close(a, b)
    two.train()
    c, _ = two(x)
    assert not torch.allclose(a, c)


def test_key_conversion_round_trip_and_names():
    fused = nn.LSTM(I, H, num_layers=2, batch_first=True)
    sd = {f"rnn.{k}": v for k, v in fused.state_dict().items()} | {"head.weight": torch.zeros(1)}
    scratch = fused_to_scratch_keys(sd)
    assert "rnn.cells.1.weight_hh" in scratch and "rnn.weight_hh_l1" not in scratch
    assert scratch["head.weight"] is sd["head.weight"]
    assert scratch_to_fused_keys(scratch) == sd


def test_detach_state_cuts_history_keeps_values():
    h = torch.randn(2, 3, requires_grad=True) * 2
    pair = (h, h + 1)
    assert detach_state(None) is None
    d = detach_state(pair)
    assert isinstance(d, tuple) and not any(t.requires_grad for t in d)
    torch.testing.assert_close(d[1], pair[1].detach())
    assert detach_state(h).grad_fn is None


# ----------------------------------------------------------------------------- CharLM, both backends

@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_charlm_scratch_equals_fused_after_key_conversion(cell):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=11, cell=cell, embed_size=6, hidden_size=8, num_layers=2)
    fused = CharLM(cfg).eval()
    scratch = CharLM(ModelConfig(**{**cfg.__dict__, "backend": "scratch"})).eval()
    scratch.load_state_dict(fused_to_scratch_keys(fused.state_dict()))
    tokens = torch.randint(0, 11, (2, 9))
    lf, sf = fused(tokens)
    ls, ss = scratch(tokens)
    torch.testing.assert_close(ls, lf, rtol=1e-5, atol=1e-5)
    for a, b in zip(as_tuple(ss), as_tuple(sf)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(as_tuple(scratch.init_state(2)), as_tuple(fused.init_state(2))):
        assert a.shape == b.shape and not a.any()


@pytest.mark.parametrize("trained_on", ["fused", "scratch"])
def test_load_with_backend_override_gives_same_logits(tmp_path, trained_on):
    """A run trained on one backend, loaded on the other: same logits."""
    from rnnkit.runs import load
    from rnnkit.training.lm import train

    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    train(DataConfig(path=str(text)), ModelConfig(cell="lstm", embed_size=8, hidden_size=16, num_layers=2, backend=trained_on),
          TrainConfig(batch_size=4, seq_len=16, steps=3, eval_every=3, eval_every_s=None), tmp_path / "run",
          quiet=True, log=lambda m: None)
    fused = load(tmp_path / "run", backend="fused")
    scratch = load(tmp_path / "run", backend="scratch")
    assert isinstance(scratch.model.rnn, Unrolled) and isinstance(fused.model.rnn, nn.RNNBase)
    tokens = fused.vocab.encode("the mat sat").long()[None]
    with torch.no_grad():
        torch.testing.assert_close(scratch.model(tokens)[0], fused.model(tokens)[0], rtol=1e-5, atol=1e-5)


# --- CPU bf16 autocast and the fused LSTM --------------------------------------------------------------------

def _lstm_pair():
    torch.manual_seed(0)
    ours = fused.LSTM(6, 5, num_layers=2, batch_first=True)
    ref = nn.LSTM(6, 5, num_layers=2, batch_first=True)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


@pytest.mark.parametrize("packed", [False, True])
def test_lstm_under_cpu_bf16_autocast_runs_and_falls_back_to_fp32_where_the_cpu_cannot(monkeypatch, packed):
    ours, ref = _lstm_pair()
    monkeypatch.setattr(fused, "cpu_has_bf16_lstm", lambda: False)   # as on this AVX2 machine
    x = torch.randn(3, 4, 6)
    if packed:
        x = nn.utils.rnn.pack_padded_sequence(x, torch.tensor([4, 2, 1]), batch_first=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = ours(x)
    want, (hw, cw) = ref(x)
    if packed:
        out, want = out.data, want.data
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(h, hw)


def test_lstm_keeps_bf16_autocast_where_the_cpu_has_a_bf16_kernel(monkeypatch):
    # On CPUs with oneDNN's bf16 LSTM (AVX-512) the layer must run under autocast, which is where bf16 pays.
    ours, _ = _lstm_pair()
    monkeypatch.setattr(fused, "cpu_has_bf16_lstm", lambda: True)
    seen = []
    monkeypatch.setattr(nn.LSTM, "forward", lambda self, x, hx=None: seen.append(
        (torch.is_autocast_enabled("cpu"), x.dtype)) or (x, hx))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours(torch.randn(1, 2, 6))
    ours(torch.randn(1, 2, 6))
    assert seen == [(True, torch.float32), (False, torch.float32)]


def test_cpu_bf16_probe_agrees_with_torch_and_the_training_warning():
    from rnnkit.nn.device import precision_warning
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            nn.LSTM(3, 3)(torch.zeros(2, 1, 3))[0].float().sum().backward()
        works = True
    except RuntimeError:
        works = False
    assert device.cpu_has_bf16_lstm() is works
    cpu = torch.device("cpu")
    assert (precision_warning(cpu, "bf16") is None) is works
    assert precision_warning(cpu, "fp32") is None
    assert precision_warning(torch.device("cuda"), "bf16") is None


@pytest.mark.parametrize("packed", [False, True])
def test_classifier_lstm_trains_under_cpu_bf16_autocast(packed):
    from rnnkit.config import ClassifierConfig
    from rnnkit.nn.models import SequenceClassifier
    torch.manual_seed(0)
    m = SequenceClassifier(ClassifierConfig(vocab_size=12, num_classes=2, cell="lstm", embed_size=8,
                                            hidden_size=8, packed=packed))
    tokens, lengths = torch.randint(1, 12, (3, 5)), torch.tensor([5, 3, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = m(tokens, lengths)
    logits.float().sum().backward()
    assert torch.isfinite(logits.float()).all() and m.embed.weight.grad is not None
