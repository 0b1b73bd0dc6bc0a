import pytest
import torch

from rnnkit.data.vocab import CharVocab, compact_dtype


def test_sorted_distinct_characters_and_round_trip():
    text = "héllo wörld 𝄞"
    v = CharVocab.from_text(text)
    assert v.chars == sorted(set(text))
    ids = v.encode(text)
    assert ids.dtype == torch.uint8
    assert v.decode(ids) == text


def test_compact_dtype_grows_with_the_vocabulary():
    assert compact_dtype(256) == torch.uint8
    assert compact_dtype(257) == torch.int16
    assert compact_dtype(40000) == torch.int32
    v = CharVocab([chr(0x4E00 + i) for i in range(300)])
    assert v.encode(v.chars[299]).dtype == torch.int16


def test_unknown_characters_raise_or_are_skipped():
    v = CharVocab.from_text("abc")
    with pytest.raises(KeyError):
        v.encode("abz")
    assert v.decode(v.encode("a z\U0001F600c", skip_unknown=True)) == "ac"
    assert v.unknown("a z z") == {" ": 2, "z": 2}


def test_json_round_trip():
    v = CharVocab.from_text("xyz\n")
    assert CharVocab.from_dict(v.to_dict()) == v


def test_encoding_crosses_chunk_boundaries(monkeypatch):
    import rnnkit.data.vocab as vocab
    monkeypatch.setattr(vocab, "_CHUNK", 7)
    text = "the quick brown fox jumps over the lazy dog" * 3
    v = CharVocab.from_text(text)
    assert v.decode(v.encode(text)) == text
