"""inference/beam.py: beam search against brute force, greedy decoding and teacher-forced re-scoring."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.cli import main
from rnnkit.config import BeamConfig, ConfigError, ModelConfig, SampleConfig
from rnnkit.data.vocab import CharVocab
from rnnkit.inference.beam import beam_search
from rnnkit.inference.sampling import generate
from rnnkit.nn.models import CharLM

VOCAB = CharVocab(list("\n abcdefghijklmnopqrstuvwxyz.,"))


class Bigram(nn.Module):
    """A model whose next-character distribution is a fixed table row of the last character: its state
    is that character, kept as a (1, B, 1) tensor so the beam can reorder it like any recurrent state."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.logp = nn.Parameter(table.log(), requires_grad=False)        # (V, V) rows: log p(next | last)

    def forward(self, tokens, state=None):
        return self.logp[tokens], tokens[:, -1:].T[..., None].float()       # (B, T, V), (1, B, 1)


TOY = CharVocab(list("abc"))
# From 'a', greedy takes 'b' (0.5) but everything after 'b' is flat; 'c' (0.4) leads to a sure 'c' -> 'c'.
TABLE = torch.tensor([[0.1, 0.5, 0.4],       # after a
                      [0.34, 0.33, 0.33],    # after b
                      [0.02, 0.02, 0.96]])   # after c


def brute_force(length: int) -> tuple[str, float]:
    best = max(itertools.product(range(3), repeat=length),
               key=lambda seq: sum(math.log(TABLE[p, n]) for p, n in zip((0,) + seq[:-1], seq)))
    return "".join("abc"[i] for i in best), sum(math.log(TABLE[p, n]) for p, n in zip((0,) + best[:-1], best))


def test_a_beam_as_wide_as_the_search_space_finds_the_optimum():
    model = Bigram(TABLE)
    text, logp = brute_force(4)
    greedy = beam_search(model, TOY, BeamConfig(prompt="a", length=4, beam=1))[0]
    assert greedy.text != text                                   # greedy is not optimal here
    found = beam_search(model, TOY, BeamConfig(prompt="a", length=4, beam=27, num_return=5))
    assert found[0].text == text and found[0].logprob == pytest.approx(logp, abs=1e-5)
    assert len({h.text for h in found}) == 5                     # distinct, best first
    assert [h.logprob for h in found] == sorted((h.logprob for h in found), reverse=True)


def make_model(cell="lstm", seed=0, backend="fused"):
    torch.manual_seed(seed)
    model = CharLM(ModelConfig(vocab_size=len(VOCAB), cell=cell, embed_size=8, hidden_size=24, num_layers=2,
                               backend=backend)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


def rescore(model, prompt: str, text: str) -> float:
    """Summed log-probability of ``text`` after ``prompt`` by one teacher-forced pass."""
    ids = VOCAB.encode(prompt + text).long()[None]
    with torch.no_grad():
        logp = F.log_softmax(model(ids[:, :-1])[0].float(), -1)[0]
    n = len(prompt)
    return float(logp[torch.arange(n - 1, ids.shape[1] - 1), ids[0, n:]].sum())


@pytest.mark.parametrize("cell,backend", [("lstm", "fused"), ("gru", "fused"), ("elman", "scratch"),
                                          ("lstm", "scratch")])
def test_width_one_is_greedy_and_scores_are_the_texts_log_probabilities(cell, backend):
    model = make_model(cell, backend=backend)
    greedy = generate(model, VOCAB, SampleConfig(prompt="the ", length=40, temperature=0.0), fast=False)[0]
    one = beam_search(model, VOCAB, BeamConfig(prompt="the ", length=40, beam=1))[0]
    assert one.text == greedy
    wide = beam_search(model, VOCAB, BeamConfig(prompt="the ", length=40, beam=6, num_return=6))
    for h in wide:
        assert len(h.text) == 40 and h.chars == 40 and not h.stopped
        assert h.logprob == pytest.approx(rescore(model, "the ", h.text), abs=1e-3)   # rows reordered right


def test_the_result_does_not_depend_on_the_other_rows():
    """The best hypothesis of a beam of 8 is the same when the search runs beside other work."""
    model = make_model("lstm", seed=4)
    cfg = BeamConfig(prompt="on ", length=25, beam=8, num_return=3)
    a = beam_search(model, VOCAB, cfg)
    generate(model, VOCAB, SampleConfig(length=10, num_samples=5, seed=1))
    assert beam_search(model, VOCAB, cfg) == a


def test_a_stop_string_ends_hypotheses_and_is_left_out():
    model = Bigram(TABLE)
    found = beam_search(model, TOY, BeamConfig(prompt="a", length=10, beam=4, num_return=4, stop="cc",
                                               length_penalty=0.0))
    assert found[0].stopped and found[0].text == "" and found[0].chars == 2        # 'cc' at once: log .4*.96
    assert found[0].logprob == pytest.approx(math.log(0.4 * 0.96), abs=1e-6)
    assert all(not h.text.endswith("cc") for h in found)
    for h in found:                                         # score = log p / L^alpha
        assert h.score == pytest.approx(h.logprob / h.chars ** 0.0)
    long = beam_search(model, TOY, BeamConfig(prompt="a", length=10, beam=4, stop="cc", length_penalty=2.0))[0]
    assert long.score == pytest.approx(long.logprob / long.chars ** 2.0)


@pytest.mark.parametrize("kw,message", [({"beam": 0}, "beam must be an integer >= 1"),
                                        ({"beam": 5000}, "beam must be at most 1,024"),
                                        ({"beam": 2, "num_return": 3}, "num_return (3) must be at most the beam width (2)"),
                                        ({"stop": ""}, "stop must be a non-empty string"),
                                        ({"length_penalty": -1.0}, "length_penalty must be a number >= 0")])
def test_bad_settings_are_refused(kw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BeamConfig(**kw)


def test_beam_from_the_command_line(tmp_path, tiny_corpus, capsys):
    out = tmp_path / "run"
    assert main(["train", str(tiny_corpus), "--hidden-size", "16", "--embed-size", "8", "--layers", "1",
                 "--batch-size", "4", "--seq-len", "16", "--steps", "20", "--threads", "1", "--device", "cpu",
                 "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["sample", str(out), "--prompt", "ROMEO:", "--beam", "4", "--num-return", "2", "--length", "30",
                 "--separator", "\n---\n"]) == 0
    got = capsys.readouterr()
    texts = got.out[:-1].split("\n---\n")             # the output ends with one line break
    assert len(texts) == 2 and all(t.startswith("ROMEO:") and len(t) == 36 for t in texts)
    assert got.err.count("log-probability") == 2
    for argv, message in [(["--beam", "4", "--temperature", "0.5"], "--beam searches instead of sampling; drop --temperature"),
                          (["--num-return", "2"], "--num-return go with --beam N"),
                          (["--beam", "0"], "--beam: must be at least 1"),
                          (["--beam", "2", "--num-return", "3"], "num_return (3) must be at most the beam width (2)")]:
        try:
            code = main(["sample", str(out), *argv])
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err
