"""The classifier's word-by-word reading against ``predict`` on each prefix, and the pages' contents: data
that reads back exactly, hostile text kept as text, a policy that allows no request, and the size bound."""

from __future__ import annotations

import json
import re

import pytest
import torch

from rnnkit.inference.predict import predict
from rnnkit.runs import load, load_classifier
from rnnkit.viz.page import classifier_page, describe_model, lm_page, render
from rnnkit.viz.reading import read
from rnnkit.viz.trace import TextError, trace_lm

HOSTILE = 'Tom & "Jerry" </script><script>alert(1)</script> <b>bold</b> \u2028 it\'s'


def page_data(page: str) -> dict:
    m = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S)
    assert m, "no data block"
    return json.loads(m.group(1))


def test_the_reading_is_the_classifier_on_every_prefix(classifier_run):
    clf = load_classifier(classifier_run)
    text = "A joy to watch, <br />but tedious and slow. Hated it!"
    rd = read(clf, text)
    assert rd.words == ["a", "joy", "to", "watch", "but", "tedious", "and", "slow", "hated", "it"]
    assert [text[a:b].lower() for a, b in rd.spans] == rd.words
    for i in range(1, len(rd.words) + 1):       # brute force: the prefix as a text of its own
        expected = predict(clf, [" ".join(rd.words[:i])])[0]
        assert rd.probs[i - 1].tolist() == pytest.approx([expected.probabilities[l] for l in clf.labels], abs=1e-6)
    whole = predict(clf, [text])[0]
    assert clf.labels[rd.label] == whole.label and rd.probs.sum(1).tolist() == pytest.approx([1.0] * len(rd.words))
    assert float(rd.moved.sum()) == pytest.approx(float(rd.probs[-1, rd.label] - rd.start[rd.label]))
    with pytest.raises(TextError, match="no words"):
        read(clf, "  <br /> ... ")


def test_lm_page_holds_the_trace_and_hostile_text_stays_text(lm_run):
    lm = load(lm_run)
    text = HOSTILE * 3
    tr = trace_lm(lm.model, lm.vocab, text)
    page = lm_page(tr, lm.vocab.chars, describe_model(lm.run, str(lm_run), lm.weights.name), 8,
                   source="<i>x</i>.txt")
    assert page.count("<script") == 2 and page.count("</script>") == 2     # the data block and the viewer
    assert "<script>alert" not in page and "<b>bold" not in page
    data = page_data(page)
    assert data["text"] == text and data["source"] == "<i>x</i>.txt"
    assert data["bpc"] == pytest.approx(tr.bits_per_char, abs=1e-4) and len(data["units"]) == 8
    assert data["bits"][0] is None and len(data["bits"]) == len(tr.ids) and len(data["top"][1]) == 5
    assert sum(data["topp"][1]) <= 1.0 + 1e-3
    assert all(-1 <= v <= 1 for u in data["units"] for v in u["values"])
    assert data["positions"] == tr.positions.tolist()        # some characters are outside the vocabulary
    assert set(data["gates"]) == {"0", "1"} and set(data["gates"]["0"]) == {"i", "f", "o"}
    assert "&lt;i&gt;" in page.split("<title>")[1].split("</title>")[0]


def test_policy_allows_only_the_pages_own_script_and_style():
    page = render({"kind": "lm"}, "t")
    csp = re.search(r'Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp and "http" not in csp
    import base64
    import hashlib
    script = re.findall(r"<script>(.*?)</script>", page, re.S)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    assert not re.search(r"(src|href)=\"?(https?:)?//", page)            # nothing fetched from anywhere


def test_a_10000_character_page_with_32_units_stays_under_5_mb(lm_run, shakespeare_text):
    lm = load(lm_run)
    tr = trace_lm(lm.model, lm.vocab, shakespeare_text[:10_000])
    page = lm_page(tr, lm.vocab.chars, describe_model(lm.run, str(lm_run), lm.weights.name), 32)
    assert len(page.encode()) < 5_000_000


def test_classifier_page(classifier_run):
    clf = load_classifier(classifier_run)
    rd = read(clf, HOSTILE)
    page = classifier_page(rd, describe_model(clf.run, str(classifier_run), clf.weights.name))
    data = page_data(page)
    assert data["text"] == HOSTILE and data["labels"] == clf.labels and len(data["probs"]) == len(rd.words)
    assert "<script>alert" not in page
    assert torch.tensor(data["probs"]).sum(1).allclose(torch.ones(len(rd.words), dtype=torch.float32), atol=1e-3)
