"""The traced states, gates and surprisal against their references: the fused layers' own outputs, the
model's logits, ``evaluate_stream``, numpy's correlation, and features counted by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rnnkit.config import ModelConfig
from rnnkit.data.vocab import CharVocab
from rnnkit.evaluate import evaluate_stream
from rnnkit.nn.models import CharLM
from rnnkit.runs import load
from rnnkit.viz.trace import (TOP, TextError, Unit, correlations, pick_units, rank_units, text_features,
                              trace_lm)

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"


def _model(cell: str, backend: str = "fused", layers: int = 2) -> tuple[CharLM, CharVocab]:
    vocab = CharVocab.from_text(TEXT)
    torch.manual_seed(5)
    model = CharLM(ModelConfig(vocab_size=len(vocab), cell=cell, hidden_size=16, num_layers=layers, embed_size=6,
                               backend=backend)).eval()
    with torch.no_grad():                       # larger weights than the default: saturated gates occur
        for p in model.rnn.parameters():
            p.mul_(3)
    return model, vocab


@pytest.mark.parametrize("cell,backend", [("lstm", "fused"), ("gru", "fused"), ("rnn", "fused"),
                                          ("lstm", "scratch"), ("gru", "scratch"), ("elman", "scratch")])
def test_recomputed_states_equal_the_layers_outputs(cell, backend):
    model, vocab = _model(cell, backend)
    ids = vocab.encode(TEXT).long()
    tr = trace_lm(model, vocab, TEXT)
    with torch.no_grad():
        out, state = model.rnn(model.inputs(ids[None]))
        logp = torch.log_softmax(model.head(out)[0].double(), -1)
    top = tr.activations[-1]
    if cell == "lstm":                          # shown: tanh(c); the last step's c is the final state's
        c = state[1][-1, 0]
        assert torch.allclose(top[-1], c.tanh(), atol=1e-5)
        assert torch.allclose(tr.activations[0][-1], state[1][0, 0].tanh(), atol=1e-5)
    else:
        assert torch.allclose(top, out[0], atol=1e-5)
    expected = -logp[:-1].gather(1, ids[1:, None])[:, 0] / math.log(2)
    assert torch.allclose(tr.surprisal[1:], expected, atol=1e-5) and math.isnan(tr.surprisal[0])
    p, i = logp[:-1].exp().topk(TOP, -1)
    assert torch.equal(tr.top_ids[1:], i) and torch.allclose(tr.top_probs[1:], p, atol=1e-9)


def test_lstm_hidden_state_equals_the_fused_output():
    model, vocab = _model("lstm")
    ids = vocab.encode(TEXT).long()
    from rnnkit.viz.trace import layer_cell, run_layer
    with torch.no_grad():
        x = model.inputs(ids[None])
        out, _ = model.rnn(x)
        h0, _, gates = run_layer(layer_cell(model.rnn, 0, "lstm"), "lstm", x[0])
        h1, _, _ = run_layer(layer_cell(model.rnn, 1, "lstm"), "lstm", h0)
    assert torch.allclose(h1, out[0], atol=1e-5)
    assert gates.shape == (len(ids), 3, 16) and gates.min() >= 0 and gates.max() <= 1


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gate_saturation_is_a_fraction_per_unit(cell):
    model, vocab = _model(cell)
    tr = trace_lm(model, vocab, TEXT)
    gates = {"lstm": {"i", "f", "o"}, "gru": {"r", "z"}}[cell]
    assert set(tr.saturation) == {0, 1} and set(tr.saturation[0]) == gates
    for layer in tr.saturation.values():
        for left, right in layer.values():
            assert left.shape == (16,) and (left >= 0).all() and (right >= 0).all() and (left + right <= 1).all()
    assert any(float(r.max()) > 0 for layer in tr.saturation.values() for _, r in layer.values())


def test_surprisal_mean_is_the_librarys_bits_per_char_and_unknown_characters_are_left_out(lm_run):
    lm = load(lm_run)
    text = "KING RICHARD III:\nWhat say you, sir? Ⅻ ✓ Now, Ⅻ is the winter...\n" * 40   # > 2 chunks of 512
    tr = trace_lm(lm.model, lm.vocab, text)
    unknown = [c for c in text if c not in lm.vocab.index]
    assert {"Ⅻ", "✓"} <= set(unknown) and tr.unknown == len(unknown) and len(tr.ids) == len(text) - tr.unknown
    assert all(text[p] in lm.vocab.index for p in tr.positions.tolist())
    ids = lm.vocab.encode(text, skip_unknown=True)
    assert tr.bits_per_char == pytest.approx(evaluate_stream(lm.model, ids, streams=1).bits_per_char, rel=1e-6)
    assert tr.scored == len(ids) - 1


def test_bad_texts_get_one_line():
    model, vocab = _model("gru")
    with pytest.raises(TextError, match="empty"):
        trace_lm(model, vocab, "")
    with pytest.raises(TextError, match="cut it"):
        trace_lm(model, vocab, "a" * 20_001)
    with pytest.raises(TextError, match="vocabulary"):
        trace_lm(model, vocab, "ЖЖЖ")
    with pytest.raises(TextError, match="fewer than two"):
        trace_lm(model, vocab, "\n")


def test_text_features_by_hand():
    f = text_features(list('Ab "cd" (e)\nx «y»'))
    #                        A  b  ␠  "  c  d  "  ␠  (  e  )  ⏎  x  ␠  «  y  »
    assert f["in quotes"].tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    assert f["in brackets"].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert f["position in line"].tolist()[:13] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1]
    assert f["line break"].tolist()[11] == 1 and f["line break"].sum() == 1
    assert f["position in word"].tolist()[:7] == [1, 2, 0, 0, 1, 2, 0]
    assert f["capital letter"].tolist()[0] == 1 and f["capital letter"].sum() == 1
    blank = text_features(list('"a\n\nb'))      # an unclosed quote ends at a blank line
    assert blank["in quotes"].tolist() == [1, 1, 1, 0, 0]


def test_correlations_match_numpy_and_a_planted_unit_ranks_first():
    g = torch.Generator().manual_seed(0)
    text = ("to be, or not to be:\nthat is the question.\n" * 8)
    feats = text_features(list(text))
    acts = torch.rand(len(text), 6, generator=g) * 0.1
    acts[:, 4] = torch.tanh(feats["position in line"] / 10) + 0.05 * torch.rand(len(text), generator=g)
    r = correlations(acts, feats)
    names = list(feats)
    for u in range(6):
        for j, name in enumerate(names):
            if feats[name].std() == 0:          # no quotes in the text: no correlation (numpy: nan)
                assert float(r[u, j]) == 0
                continue
            expected = np.corrcoef(acts[:, u].numpy(), feats[name].numpy())[0, 1]
            assert float(r[u, j]) == pytest.approx(expected, abs=1e-6)

    class Fake:                                  # a trace with these activations on this text
        pass
    tr = Fake()
    tr.text, tr.positions, tr.activations = text, torch.arange(len(text)), [acts]
    ranked = rank_units(tr)
    assert ranked[0] == Unit(0, 4, "position in line", pytest.approx(ranked[0].r)) and ranked[0].r > 0.9
    assert [u.name for u in pick_units(tr, ranked, [(0, 2), (0, 4)])] == ["0:2", "0:4"]
    top = pick_units(tr, ranked, 3)             # in turn from each feature: three features, not one
    assert top[0] == ranked[0] and len({u.feature for u in top}) == 3
    assert {u.name for u in pick_units(tr, ranked, 100)} == {f"0:{i}" for i in range(6)}
    with pytest.raises(ValueError, match="not in the model"):
        pick_units(tr, ranked, [(1, 0)])
