import json
from collections import Counter

import pytest
import torch

from rnnkit.data.words import PAD, PAD_ID, UNK, UNK_ID, WordVocab, tokenize


def test_tokenize_strips_html_tags_and_lowercases():
    text = 'A <b>GREAT</b> movie!<br /><br />Loved it, 10/10.<a href="x">Link</a>'
    # A tag is a word boundary: "movie!<br />Loved" is two words, not "movieloved".
    assert tokenize(text) == ["a", "great", "movie", "loved", "it", "10", "10", "link"]


def test_tokenize_splits_on_punctuation_like_the_seed():
    assert tokenize("Don't -- stop; R2D2's snake_case") == ["don", "t", "stop", "r2d2", "s", "snake_case"]
    assert tokenize("") == []
    assert tokenize("<br/>  \n\t") == []


def test_tokenize_keeps_emoticons_in_place_without_the_nose():
    assert tokenize("Fun :) but sad :-( wink ;-) grin =D tongue :P") == [
        "fun", ":)", "but", "sad", ":(", "wink", ";)", "grin", "=D", "tongue", ":P"]


def test_tokenize_does_not_see_faces_in_prose():
    # a colon before a lower-case word, or a capital glued to letters, is not a face
    assert tokenize("note:do this; Ratio:Dark") == ["note", "do", "this", "ratio", "dark"]
    assert tokenize("(see above)") == ["see", "above"]


def test_vocab_orders_by_frequency_with_specials_first():
    counts = Counter({"the": 5, "film": 3, "a": 3, "rare": 1})
    v = WordVocab.from_counts(counts)
    assert v.words == [PAD, UNK, "the", "a", "film", "rare"]     # ties alphabetical: a before film
    assert (PAD_ID, UNK_ID) == (0, 1)
    assert v.ids(["the", "film", "unseen"]) == [2, 4, UNK_ID]


def test_vocab_min_freq_and_max_vocab():
    counts = Counter({"the": 5, "film": 3, "a": 3, "rare": 1})
    assert WordVocab.from_counts(counts, min_freq=2).words == [PAD, UNK, "the", "a", "film"]
    assert WordVocab.from_counts(counts, max_vocab=2).words == [PAD, UNK, "the", "a"]
    v = WordVocab.from_counts(counts, min_freq=3, max_vocab=1)
    assert len(v) == 3 and v.ids(["film", "rare", "the"]) == [UNK_ID, UNK_ID, 2]
    with pytest.raises(ValueError):
        WordVocab.from_counts(counts, min_freq=0)


def test_vocab_encode_decode_and_unknown_words():
    v = WordVocab.from_counts(Counter(w for t in ["good film", "bad film :)"] for w in tokenize(t)))
    ids = v.encode("A GOOD film :) <br/> zebra")
    assert ids.dtype == torch.int64
    assert v.decode(ids) == [UNK, "good", "film", ":)", UNK]


def test_vocab_round_trips_through_json():
    v = WordVocab.from_counts(Counter(w for t in ["the cat sat on the mat", "the dog :("] for w in tokenize(t)))
    back = WordVocab.from_dict(json.loads(json.dumps(v.to_dict())))
    assert back == v and back.index == v.index
    with pytest.raises(ValueError):
        WordVocab.from_dict({"kind": "char", "chars": ["a"]})
    with pytest.raises(ValueError):
        WordVocab(["the", "cat"])                                   # specials missing
