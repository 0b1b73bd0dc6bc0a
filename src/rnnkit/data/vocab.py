"""Character vocabulary: sorted distinct characters <-> integer ids, stored inside every checkpoint."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import torch

_CHUNK = 1 << 20  # characters encoded at a time: bounds the temporaries to about 12 MiB


def compact_dtype(n: int) -> torch.dtype:
    """Smallest integer dtype that holds ids 0..n-1 (the corpus is kept in it, never one-hot)."""
    if n <= 256:
        return torch.uint8
    if n <= 32768:
        return torch.int16
    return torch.int32


class CharVocab:
    """Ids are positions in the sorted list of distinct characters seen in training."""

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("a character vocabulary holds single characters")
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary characters must be distinct")
        if not chars:
            raise ValueError("a vocabulary needs at least one character")
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}
        codes = torch.tensor([ord(c) for c in chars], dtype=torch.int64)
        # Code point -> id; the last entry (-1) stands for every code point beyond the largest known one.
        self._lut = torch.full((int(codes.max()) + 2,), -1, dtype=torch.int32)
        self._lut[codes] = torch.arange(len(chars), dtype=torch.int32)

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocab) and self.chars == other.chars

    @property
    def dtype(self) -> torch.dtype:
        return compact_dtype(len(self))

    def unknown(self, text: str) -> Counter:
        """Characters of ``text`` outside the vocabulary, with their counts."""
        return Counter({c: n for c, n in Counter(text).items() if c not in self.index}) if text else Counter()

    def encode(self, text: str, *, skip_unknown: bool = False) -> torch.Tensor:
        """``text`` as a 1-D tensor of ids in the vocabulary's compact dtype.

        Unknown characters raise ``KeyError`` unless ``skip_unknown`` drops them (callers warn with
        ``unknown``). Encoding goes through UTF-32 code points in chunks, so a 100 MB text costs one
        compact copy plus a bounded temporary.
        """
        out = torch.empty(len(text), dtype=self.dtype)
        n, beyond = 0, len(self._lut) - 1
        for start in range(0, len(text), _CHUNK):
            chunk = text[start:start + _CHUNK]
            # surrogatepass: a lone surrogate (a command-line prompt's undecodable byte) is a code point too
            codes = torch.frombuffer(bytearray(chunk.encode("utf-32-le", "surrogatepass")), dtype=torch.int32)
            ids = self._lut[codes.clamp(max=beyond)]                # int32 indices: no int64 copy
            bad = ids < 0
            if bad.any():
                if not skip_unknown:
                    c = chr(int(codes[bad][0]))
                    raise KeyError(f"character {c!r} is not in the vocabulary")
                ids = ids[~bad]
            out[n:n + len(ids)] = ids
            n += len(ids)
        return out if n == len(out) else out[:n].clone()

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict:
        return {"kind": "char", "chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict) -> "CharVocab":
        if data.get("kind") != "char" or not isinstance(data.get("chars"), list):
            raise ValueError("not a character vocabulary")
        return cls(data["chars"])


def describe_unknown(unknown: Counter, limit: int = 8) -> str:
    shown = ", ".join(f"{c!r}×{n}" for c, n in unknown.most_common(limit))
    more = f" and {len(unknown) - limit} more" if len(unknown) > limit else ""
    return f"{sum(unknown.values())} character(s) not in the model's vocabulary were skipped: {shown}{more}"
