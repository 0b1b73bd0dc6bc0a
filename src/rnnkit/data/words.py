"""Words for classifiers: a tokenizer and a frequency-ordered word vocabulary stored in every checkpoint.

The tokenizer follows seed 002 (Raschka's IMDb chapter): drop HTML tags, lowercase, split on anything
that is not a word character, keep emoticons such as ``:)`` ``;-(`` ``:P``. Two deliberate differences:
a tag becomes a space (``great<br />The`` is two words, not ``greatthe``), and emoticons stay where they
were written (the seed appends them after the last word; order matters to a recurrent model).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

import torch

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1

_TAG = re.compile(r"<[^>]*>")
# An emoticon: eyes, an optional nose, a mouth; not glued to a word before it. Upper-case D and P only
# (":D", ":P"): a lower-case letter after a colon is far more often prose ("note:do") than a face.
_TOKEN = re.compile(r"(?<!\w)[:;=]-?(?:[()]|[DP](?!\w))|\w+")


def tokenize(text: str) -> list[str]:
    """``"<b>Loved</b> it :-)"`` -> ``["loved", "it", ":)"]``."""
    return [t for _, _, t in token_spans(text)]


def token_spans(text: str) -> list[tuple[int, int, str]]:
    """Each token of ``tokenize(text)`` with where it stands in ``text``: ``(start, end, token)``. A tag
    is blanked to spaces of its own length, so the offsets are those of the text as written."""
    blanked = _TAG.sub(lambda m: " " * len(m.group()), text)
    return [(m.start(), m.end(), _normal(m.group())) for m in _TOKEN.finditer(blanked)]


def _normal(token: str) -> str:
    return token.replace("-", "") if token[0] in ":;=" else token.lower()


class WordVocab:
    """Id 0 is ``<pad>``, id 1 is ``<unk>``, then words from the most frequent down.

    Ties in frequency are broken alphabetically, so the same texts always give the same ids.
    """

    def __init__(self, words: Sequence[str]):
        words = list(words)
        if words[:2] != [PAD, UNK]:
            raise ValueError(f"a word vocabulary starts with {PAD} and {UNK}")
        if len(set(words)) != len(words):
            raise ValueError("vocabulary words must be distinct")
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}

    @classmethod
    def from_counts(cls, counts: Counter, *, min_freq: int = 1, max_vocab: int | None = None) -> "WordVocab":
        """Words seen at least ``min_freq`` times, the ``max_vocab`` most frequent (specials not counted)."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be at least 1, got {min_freq}")
        kept = sorted((w for w, n in counts.items() if n >= min_freq and w not in (PAD, UNK)),
                      key=lambda w: (-counts[w], w))
        if max_vocab is not None:
            kept = kept[:max_vocab]
        return cls([PAD, UNK, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WordVocab) and self.words == other.words

    def ids(self, tokens: Iterable[str]) -> list[int]:
        get = self.index.get
        return [get(t, UNK_ID) for t in tokens]

    def encode(self, text: str) -> torch.Tensor:
        """Tokenized ``text`` as a 1-D int64 tensor; words outside the vocabulary become ``<unk>`` (1)."""
        return torch.tensor(self.ids(tokenize(text)), dtype=torch.int64)

    def decode(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return [self.words[i] for i in ids]

    def to_dict(self) -> dict:
        return {"kind": "word", "tokenizer": "words", "words": self.words}

    @classmethod
    def from_dict(cls, data: dict) -> "WordVocab":
        if data.get("kind") != "word" or not isinstance(data.get("words"), list):
            raise ValueError("not a word vocabulary")
        if data.get("tokenizer", "words") != "words":
            raise ValueError(f"unknown tokenizer {data.get('tokenizer')!r} in the vocabulary")
        return cls(data["words"])
