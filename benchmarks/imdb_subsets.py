"""Build small review-level sets from aclImdb for docs/benchmarks.md ("Classifier recipe").

    python benchmarks/imdb_subsets.py OUT_DIR [--tarball ../shared/data/aclImdb_v1.tar.gz] [--sizes 1000,5000]
        [--test 5000] [--seed 0]

For each size N: N reviews of IMDb's train split, half of each label, drawn (seeded), written to
OUT_DIR/reviews_N_train.csv; and one test set of ``--test`` reviews of the test split, half of each label,
to OUT_DIR/reviews_test.csv (columns ``text``, ``label``). The sets are subsets of one draw, so the smaller
lies inside the larger.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import sys
import tarfile
from pathlib import Path

MEMBER = re.compile(r"aclImdb/(train|test)/(pos|neg)/\d+_\d+\.txt$")


def read_reviews(tarball: str) -> dict[tuple[str, str], list[str]]:
    """(split, label) -> texts, in the archive's order."""
    out: dict[tuple[str, str], list[str]] = {}
    with tarfile.open(tarball, "r:gz") as tf:
        for member in tf:
            m = MEMBER.match(member.name)
            if m:
                text = tf.extractfile(member).read().decode("utf-8", "replace").replace("<br />", " ")
                out.setdefault((m.group(1), m.group(2)), []).append(text)
    return out


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    print(f"{path}: {len(rows):,} reviews", file=sys.stderr)


def draw(reviews: dict, split: str, n: int, rng: random.Random) -> list[tuple[str, str]]:
    rows = [(t, label) for label in ("neg", "pos") for t in rng.sample(reviews[(split, label)], n // 2)]
    rng.shuffle(rows)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--tarball", default=str(Path(__file__).resolve().parents[2] / "shared/data/aclImdb_v1.tar.gz"))
    ap.add_argument("--sizes", default="1000,5000")
    ap.add_argument("--test", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reviews = read_reviews(args.tarball)
    rng = random.Random(args.seed)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    largest = draw(reviews, "train", sizes[-1], rng)
    for n in sizes:                                  # the first n/2 of each label of the largest draw
        rows, taken = [], {"neg": 0, "pos": 0}
        for text, label in largest:
            if taken[label] < n // 2:
                rows.append((text, label))
                taken[label] += 1
        write(out / f"reviews_{n}_train.csv", rows)
    write(out / "reviews_test.csv", draw(reviews, "test", args.test, rng))
    return 0


if __name__ == "__main__":
    sys.exit(main())
