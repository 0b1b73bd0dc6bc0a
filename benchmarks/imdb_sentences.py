"""Build the sentence-level set of docs/benchmarks.md ("Classifier recipe") from aclImdb.

    python benchmarks/imdb_sentences.py OUT_DIR [--tarball ../shared/data/aclImdb_v1.tar.gz] [--which last|first]

The last (or first) sentence (8-40 words, no digits) of every review rated 2 or less or 9 or more, both
splits, labelled with its review's label; 5,331 of each label drawn (seeded), shuffled, and cut 90/10 into
OUT_DIR/last_train.csv and OUT_DIR/last_test.csv (or first_...; columns ``text``, ``label``): 10,662 texts,
the size of the public sentence-polarity set. The labels are the reviews', so some sentences say little
about them.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import sys
import tarfile
from pathlib import Path

MEMBER = re.compile(r"aclImdb/(?:train|test)/(pos|neg)/\d+_(\d+)\.txt$")
PER_LABEL = 5331


def review_sentences(tarball: str, which: str = "last") -> list[tuple[str, str]]:
    rows = []
    with tarfile.open(tarball, "r:gz") as tf:
        for member in tf:
            m = MEMBER.match(member.name)
            if not m or 2 < int(m.group(2)) < 9:
                continue
            text = tf.extractfile(member).read().decode("utf-8", "replace").replace("<br />", " ")
            sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
            pick = sentences[-1 if which == "last" else 0] if sentences else ""
            if 8 <= len(pick.split()) <= 40 and not re.search(r"\d", pick):
                rows.append((pick, m.group(1)))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--tarball", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/aclImdb_v1.tar.gz"))
    ap.add_argument("--which", choices=("last", "first"), default="last", help="which sentence of each review")
    args = ap.parse_args()
    rows = review_sentences(args.tarball, args.which)
    random.Random(0).shuffle(rows)
    rows = [r for r in rows if r[1] == "pos"][:PER_LABEL] + [r for r in rows if r[1] == "neg"][:PER_LABEL]
    random.Random(1).shuffle(rows)
    cut = int(len(rows) * 0.9)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in ((f"{args.which}_train", rows[:cut]), (f"{args.which}_test", rows[cut:])):
        with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(part)
    print(f"{len(rows):,} texts: {cut:,} in {out / f'{args.which}_train.csv'}, "
          f"{len(rows) - cut:,} in {out / f'{args.which}_test.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
