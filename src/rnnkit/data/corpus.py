"""Reading text: files (.txt, .zip, .gz, .bz2, .xz), bundled corpora, cleaning options.

Text is read by code point (Python ``str``), never by byte. Every failure raises ``CorpusError`` with a
one-line message that names the file and says what to do.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import zipfile
from importlib import resources

BUNDLED = {
    "moliere": "Molière's plays, dialogue only (public domain), 1.69 M characters",
    "shakespeare": "Tiny Shakespeare (public domain), 1.12 M characters",
    "alphabet": "the 26 letters a..z, one per line, repeated: seed 003's next-letter toy task",
}

GUTENBERG_START = "*** START OF"
GUTENBERG_END = ("End of the Project Gutenberg", "End of Project Gutenberg", "*** END OF")
_BINARY_PROBE = 1 << 16


class CorpusError(ValueError):
    """The text cannot be read or is unusable; the message says why and what to do."""


def bundled_corpus(name: str) -> str:
    """The text of a corpus shipped with rnnkit (see ``BUNDLED``)."""
    if name not in BUNDLED:
        raise CorpusError(f"unknown corpus {name!r}: bundled corpora are {', '.join(BUNDLED)}")
    if name == "alphabet":
        # Seed 003 trains on the alphabet; 400 repetitions give a corpus long enough to batch and split.
        return "abcdefghijklmnopqrstuvwxyz\n" * 400
    data = resources.files("rnnkit.data").joinpath("corpora", f"{name}.txt.xz").read_bytes()
    return lzma.decompress(data).decode("utf-8")


def read_text(path: str, *, member: str | None = None, encoding: str = "utf-8", errors: str = "strict") -> str:
    """Decode a text file, or the one text member of a zip, or a gzip/bz2/xz-compressed file."""
    raw, name = _read_bytes(path, member)
    if not raw:
        raise CorpusError(f"{name} is empty: give a file with some text in it")
    if encoding.replace("-", "").replace("_", "").lower() in ("utf8", "utf8sig", "ascii", "latin1", "cp1252"):
        nul = raw.find(b"\x00", 0, _BINARY_PROBE)
        if nul >= 0:
            raise CorpusError(f"{name} looks like a binary file (NUL byte at offset {nul}), not text: "
                              f"give a text file, or --encoding if it is UTF-16/32 text")
    try:
        text = raw.decode(encoding, errors=errors)
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r}: use a Python codec name such as utf-8, latin-1, cp1252") from None
    except UnicodeDecodeError as e:
        raise CorpusError(f"{name} is not valid {encoding}: byte 0x{raw[e.start]:02x} at offset {e.start}; "
                          f"pass --encoding (e.g. latin-1) or --errors replace") from None
    if text.startswith("\ufeff"):  # a byte-order mark is not text
        text = text[1:]
    if "\r" in text:               # universal newlines, as Python's text mode reads them
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text:
        raise CorpusError(f"{name} holds no text: give a file with some text in it")
    return text


def _read_bytes(path: str, member: str | None) -> tuple[bytes, str]:
    if not os.path.exists(path):
        raise CorpusError(f"{path}: no such file; check the path (bundled corpora: --corpus {'|'.join(BUNDLED)})")
    if os.path.isdir(path):
        raise CorpusError(f"{path} is a directory: give a text file")
    lower = path.lower()
    try:
        if lower.endswith(".zip"):
            return _read_zip(path, member)
        if member is not None:
            raise CorpusError(f"--member is for zip files, but {path} is not a .zip")
        if lower.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read(), path
        if lower.endswith(".bz2"):
            with bz2.open(path, "rb") as f:
                return f.read(), path
        if lower.endswith(".xz"):
            with lzma.open(path, "rb") as f:
                return f.read(), path
        with open(path, "rb") as f:
            return f.read(), path
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as e:
        raise CorpusError(f"{path}: cannot read it ({e.__class__.__name__}: {e}); is the file complete?") from None


def _read_zip(path: str, member: str | None) -> tuple[bytes, str]:
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]
        if member is None:
            if len(names) != 1:
                shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
                raise CorpusError(f"{path} holds {len(names)} files ({shown}): choose one with --member NAME")
            member = names[0]
        elif member not in names:
            raise CorpusError(f"{path} has no member {member!r}; it holds: {', '.join(names[:10])}")
        return zf.read(member), f"{path}:{member}"


def strip_gutenberg(text: str) -> str:
    """Keep the book between Project Gutenberg's START marker line and its end-of-book line."""
    start = text.find(GUTENBERG_START)
    if start < 0:
        raise CorpusError("--strip-gutenberg: no '*** START OF' marker found; is this a Project Gutenberg e-text?")
    start = text.find("\n", start) + 1 or len(text)
    ends = [i for i in (text.find(m, start) for m in GUTENBERG_END) if i >= 0]
    end = min(ends) if ends else len(text)
    return text[start:end].strip("\r\n") + "\n"


def between_markers(text: str, start: str | None, end: str | None) -> str:
    """Keep text from the first ``start`` (inclusive) up to the next ``end`` (exclusive), as seed 002 does."""
    i = 0
    if start:
        i = text.find(start)
        if i < 0:
            raise CorpusError(f"--start-marker {start!r} does not occur in the text")
    j = len(text)
    if end:
        j = text.find(end, i + len(start or ""))     # after the start marker: the two may be the same string
        if j < 0:
            raise CorpusError(f"--end-marker {end!r} does not occur after the start")
    return text[i:j]


def load_text(cfg) -> str:
    """The cleaned text a ``DataConfig`` describes."""
    if (cfg.path is None) == (cfg.corpus is None):
        raise CorpusError("give a text file or --corpus NAME (one of them)"
                          if cfg.path is None else "give a text file or --corpus, not both")
    if cfg.corpus is not None:
        text = bundled_corpus(cfg.corpus)
    else:
        text = read_text(cfg.path, member=cfg.member, encoding=cfg.encoding, errors=cfg.errors)
    if cfg.strip_gutenberg:
        text = strip_gutenberg(text)
    if cfg.start_marker or cfg.end_marker:
        text = between_markers(text, cfg.start_marker, cfg.end_marker)
    if cfg.newlines_to_spaces:
        text = text.replace("\n", " ")
    if cfg.limit_chars is not None:
        text = text[: cfg.limit_chars]
    return text


def describe(cfg) -> str:
    return f"corpus {cfg.corpus}" if cfg.corpus else str(cfg.path)
