import bz2
import gzip
import lzma
import zipfile

import pytest

from rnnkit.config import DataConfig
from rnnkit.data.corpus import BUNDLED, CorpusError, bundled_corpus, load_text, read_text, strip_gutenberg

TEXT = "Héllo, wörld!\nSecond line — with a dash.\n"


@pytest.mark.parametrize("suffix,opener", [(".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open)])
def test_compressed_files_read_by_code_point(tmp_path, suffix, opener):
    path = tmp_path / f"t.txt{suffix}"
    with opener(path, "wb") as f:
        f.write(TEXT.encode("utf-8"))
    assert read_text(str(path)) == TEXT


def test_zip_single_member_and_choice(tmp_path):
    one = tmp_path / "one.zip"
    with zipfile.ZipFile(one, "w") as z:
        z.writestr("a.txt", TEXT)
    assert read_text(str(one)) == TEXT
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as z:
        z.writestr("a.txt", "first")
        z.writestr("b.txt", "second")
    with pytest.raises(CorpusError, match="--member"):
        read_text(str(two))
    assert read_text(str(two), member="b.txt") == "second"


def test_encoding_and_bom(tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"offset 3.*--encoding"):
        read_text(str(latin))
    assert read_text(str(latin), encoding="latin-1") == "café"
    assert read_text(str(latin), errors="replace") == "caf\ufffd"
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffabc".encode("utf-8"))
    assert read_text(str(bom)) == "abc"


def test_unusable_files_have_clear_errors(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        read_text(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(CorpusError, match="empty"):
        read_text(str(tmp_path / "empty.txt"))
    (tmp_path / "bin.dat").write_bytes(bytes(range(256)))
    with pytest.raises(CorpusError, match="binary"):
        read_text(str(tmp_path / "bin.dat"))
    with pytest.raises(CorpusError, match="directory"):
        read_text(str(tmp_path))


def test_gutenberg_and_markers():
    book = ("The Project Gutenberg EBook of X\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n"
            "\nTHE BOOK\nIt was a dark night.\nEnd of the Project Gutenberg EBook of X\n"
            "*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nlicence\n")
    assert strip_gutenberg(book) == "THE BOOK\nIt was a dark night.\n"
    cfg = DataConfig(path=None, corpus="alphabet", start_marker="klm", end_marker="xyz", limit_chars=5)
    assert load_text(cfg) == "klmno"


def test_options_apply_in_order(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("ab\ncd\nef", encoding="utf-8")
    cfg = DataConfig(path=str(path), newlines_to_spaces=True, limit_chars=5)
    assert load_text(cfg) == "ab cd"


def test_bundled_corpora():
    assert set(BUNDLED) == {"moliere", "shakespeare", "alphabet"}
    assert bundled_corpus("moliere").startswith("VALÈRE.")
    assert len(bundled_corpus("shakespeare")) == 1115394
    assert set(bundled_corpus("alphabet")) == set("abcdefghijklmnopqrstuvwxyz\n")
    with pytest.raises(CorpusError, match="bundled corpora"):
        bundled_corpus("nope")


def test_mysterious_island_as_seed_002_reads_it():
    from conftest import shared_file
    path = shared_file("1268-0.txt")
    text = load_text(DataConfig(path=str(path), start_marker="THE MYSTERIOUS ISLAND",
                                end_marker="End of the Project Gutenberg"))
    assert (len(text), len(set(text))) == (1112350, 80)
    assert len(load_text(DataConfig(path=str(path), strip_gutenberg=True))) > 1_100_000
