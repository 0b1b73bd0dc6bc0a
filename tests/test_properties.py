"""Hypothesis properties of the data pipeline (issue 6, part 5).

Vocabulary round trips on any Unicode (astral characters and lone surrogates included), the invariants
of both batchers for random corpus lengths, batch sizes and sequence lengths, the text readers and
cleaning options (they return text or raise ``CorpusError``, nothing else), and the classifier's word
tokenizer (never raises, and its vocabulary round-trips).
"""

from __future__ import annotations

import string

from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rnnkit.data.streams import ConsecutiveBatches, CorpusTooShort, RandomBatches
from rnnkit.config import DataConfig
from rnnkit.data.corpus import CorpusError, between_markers, load_text, read_text, strip_gutenberg
from rnnkit.data.words import UNK_ID, WordVocab, tokenize
from rnnkit.data.vocab import CharVocab, compact_dtype

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Every code point, surrogates too (they reach rnnkit through command-line prompts decoded with
# surrogateescape), with astral characters (emoji, CJK extension B) made likely.
any_char = st.one_of(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None),
                     st.sampled_from(["\U0001F600", "\U00020000", "\U0010FFFF", "\ud800", "\udfff", "\x00", "\n"]))
any_text = st.text(alphabet=any_char, min_size=1, max_size=200)


# ----------------------------------------------------------------------------- vocabulary

@FAST
@given(any_text)
def test_vocab_round_trip(text):
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.dtype == compact_dtype(len(vocab)) and ids.shape == (len(text),)
    assert int(ids.min()) >= 0 and int(ids.max()) < len(vocab)
    assert vocab.decode(ids) == text
    assert CharVocab.from_dict(vocab.to_dict()) == vocab            # the checkpoint form loses nothing


@FAST
@given(any_text, any_text)
def test_vocab_unknown_characters_are_counted_and_skipped(known, other):
    vocab = CharVocab.from_text(known)
    unknown = vocab.unknown(other)
    assert set(unknown) == set(other) - set(known)
    assert sum(unknown.values()) == sum(c not in vocab.index for c in other)
    assert vocab.decode(vocab.encode(other, skip_unknown=True)) == "".join(c for c in other if c in vocab.index)
    if unknown:
        with pytest.raises(KeyError):
            vocab.encode(other)


def test_vocab_encodes_in_chunks(monkeypatch):
    """Texts longer than one encoding chunk come out the same as chunk by chunk."""
    import rnnkit.data.vocab as vocab_module
    monkeypatch.setattr(vocab_module, "_CHUNK", 7)
    text = "h\U0001F600llo, w\udcffrld! " * 5
    vocab = CharVocab.from_text(text)
    assert vocab.decode(vocab.encode(text)) == text
    assert vocab.decode(vocab.encode(text + "\u00e9", skip_unknown=True)) == text


# ----------------------------------------------------------------------------- batching

def positions(n: int) -> torch.Tensor:
    """A corpus whose id at position i is i: every batch then shows where it was read from."""
    return torch.arange(n, dtype=torch.int32)


@FAST
@given(n=st.integers(2, 400), batch_size=st.integers(1, 12), seq_len=st.integers(1, 40), seed=st.integers(0, 2**32),
       steps=st.integers(1, 60))
def test_consecutive_batches(n, batch_size, seq_len, seed, steps):
    data = positions(n)
    try:
        it = ConsecutiveBatches(data, batch_size, seq_len, seed=seed)
    except CorpusTooShort as e:
        need = batch_size * seq_len + (seq_len + 1 if seq_len > 1 else 1)
        assert n < need and f"({need})" in str(e)
        return
    assert it.steps_in_epoch >= 1
    prev = None
    for _ in range(steps):
        b = next(it)
        x, y = b.x, b.y
        assert x.shape == y.shape == (batch_size, seq_len) and x.dtype == y.dtype == torch.int64
        assert torch.equal(y, x + 1)                                  # targets: the inputs one character ahead
        assert int(x.min()) >= 0 and int(y.max()) <= n - 1            # nothing read outside the text
        assert torch.equal(x[:, 1:], x[:, :-1] + 1)                   # each row is one contiguous piece
        if seq_len > 1:
            assert torch.all(x[1:, 0] - x[:-1, 0] >= seq_len)         # rows never overlap
        if b.reset:
            assert 0 <= int(x[0, 0]) < seq_len                        # an epoch starts at its offset
        else:
            assert torch.equal(x[:, 0], prev[:, -1] + 1)              # stream continuity across batches
        prev = x


@FAST
@given(n=st.integers(2, 300), batch_size=st.integers(1, 12), seq_len=st.integers(1, 40), seed=st.integers(0, 2**32),
       before=st.integers(0, 30), after=st.integers(1, 20))
def test_consecutive_batches_resume_exactly(n, batch_size, seq_len, seed, before, after):
    assume(n >= batch_size * seq_len + seq_len + 1)
    it = ConsecutiveBatches(positions(n), batch_size, seq_len, seed=seed)
    for _ in range(before):
        next(it)
    state = it.state_dict()
    expected = [next(it) for _ in range(after)]
    again = ConsecutiveBatches(positions(n), batch_size, seq_len, seed=seed + 1)    # another seed: state wins
    again.load_state_dict(state)
    for a, b in zip(expected, (next(again) for _ in range(after))):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.reset == b.reset


@FAST
@given(n=st.integers(2, 300), batch_size=st.integers(1, 12), seq_len=st.integers(1, 40), seed=st.integers(0, 2**32),
       before=st.integers(0, 10))
def test_random_batches(n, batch_size, seq_len, seed, before):
    try:
        it = RandomBatches(positions(n), batch_size, seq_len, seed=seed)
    except CorpusTooShort:
        assert n < seq_len + 1
        return
    for _ in range(before):
        next(it)
    state = it.state_dict()
    b = next(it)
    assert b.x.shape == b.y.shape == (batch_size, seq_len) and b.reset
    assert torch.equal(b.y, b.x + 1) and torch.equal(b.x[:, 1:], b.x[:, :-1] + 1)
    assert int(b.x.min()) >= 0 and int(b.y.max()) <= n - 1
    again = RandomBatches(positions(n), batch_size, seq_len, seed=seed + 1)
    again.load_state_dict(state)
    assert torch.equal(next(again).x, b.x)


@FAST
@given(n=st.integers(3, 500), batch_size=st.integers(1, 10_000), seq_len=st.integers(1, 10_000))
def test_too_short_message_suggests_flags_that_fit(n, batch_size, seq_len):
    try:
        ConsecutiveBatches(positions(n), batch_size, seq_len)
        return
    except CorpusTooShort as e:
        message = str(e)
    flags = message.split("(e.g. ")[1].split(")")[0].split()
    chosen = dict(zip(flags[::2], map(int, flags[1::2])))
    assert set(chosen) <= {"--batch-size", "--seq-len"}
    ConsecutiveBatches(positions(n), chosen.get("--batch-size", batch_size), chosen.get("--seq-len", seq_len))


# ----------------------------------------------------------------------------- reading and cleaning text

ENCODINGS = ["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16", "ascii", "shift_jis"]


@FAST
@given(raw=st.binary(max_size=300), encoding=st.sampled_from(ENCODINGS),
       errors=st.sampled_from(["strict", "replace", "ignore"]), suffix=st.sampled_from([".txt", ".gz", ".zip", ".xz"]))
def test_read_text_returns_text_or_corpus_error(tmp_path_factory, raw, encoding, errors, suffix):
    path = tmp_path_factory.mktemp("raw") / f"f{suffix}"
    path.write_bytes(raw)                    # for .gz/.zip/.xz: bytes that are (almost always) not an archive
    try:
        text = read_text(str(path), encoding=encoding, errors=errors)
    except CorpusError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    assert isinstance(text, str) and text


cleaning_text = st.text(alphabet=st.one_of(any_char, st.sampled_from(list(string.ascii_letters + "*\r\n "))),
                        max_size=200)
markers = st.one_of(st.none(), st.text(alphabet=st.sampled_from(list("ab*\n \U0001F600")), min_size=1, max_size=4))


@FAST
@given(text=cleaning_text, gutenberg=st.booleans(), start=markers, end=markers, newlines=st.booleans(),
       limit=st.one_of(st.none(), st.integers(2, 300)), wrap=st.booleans())
def test_cleaning_options_return_text_or_corpus_error(tmp_path_factory, text, gutenberg, start, end, newlines,
                                                      limit, wrap):
    if wrap:                                                          # a Project Gutenberg e-text around it
        text = "header\n*** START OF THE BOOK ***\n" + text + "\n*** END OF THE BOOK ***\nlicence"
    path = tmp_path_factory.mktemp("clean") / "t.txt"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    cfg = DataConfig(path=str(path), strip_gutenberg=gutenberg, start_marker=start, end_marker=end,
                     newlines_to_spaces=newlines, limit_chars=limit, errors="replace")
    try:
        out = load_text(cfg)
    except CorpusError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(out, str)
    if limit is not None:
        assert len(out) <= limit
    if newlines:
        assert "\n" not in out and "\r" not in out


@FAST
@given(text=cleaning_text, start=markers, end=markers)
def test_markers_cut_where_they_say(text, start, end):
    try:
        out = between_markers(text, start, end)
    except CorpusError:
        assert (start and start not in text) or (end and end not in text[text.find(start) + len(start) if start else 0:])
        return
    i = text.find(start) if start else 0
    assert text[i:].startswith(out)
    if start:
        assert out.startswith(start)
    if end:
        assert end not in out[len(start or ""):]
        assert text[i + len(out):].startswith(end)


@FAST
@given(body=cleaning_text)
def test_strip_gutenberg_keeps_the_book(body):
    assume("*** START OF" not in body and "End of" not in body and "*** END OF" not in body)
    text = "The Project Gutenberg eBook\n*** START OF THIS BOOK ***\r\n" + body + "\n*** END OF THIS BOOK ***\n"
    out = strip_gutenberg(text)
    assert out.strip("\r\n") == body.strip("\r\n")


# ----------------------------------------------------------------------------- the classifier's words

html_text = st.lists(st.one_of(any_char, st.sampled_from(list("<>/br :;=-()DP")),
                              st.sampled_from(["<br />", ":)", ";-(", ":P", "=D", "don't"])), max_size=100).map("".join)


@FAST
@given(html_text)
def test_tokenizer_never_raises_and_words_round_trip(text):
    tokens = tokenize(text)
    assert all(isinstance(t, str) and t and not any(c.isspace() for c in t) for t in tokens)
    assert all("<" not in t and ">" not in t for t in tokens)          # tags are gone
    vocab = WordVocab.from_counts(Counter(w for t in [text] for w in tokenize(t)))
    ids = vocab.encode(text)
    assert ids.dtype == torch.int64 and ids.shape == (len(tokens),) and bool((ids >= 0).all())
    assert vocab.decode(ids) == tokens                                 # every word of its own text is known
    assert WordVocab.from_dict(vocab.to_dict()) == vocab
    other = WordVocab.from_counts(Counter(w for t in ["the"] for w in tokenize(t)))
    assert all(i == UNK_ID or other.words[i] == t for i, t in zip(other.encode(text).tolist(), tokens))
