"""A count baseline for labelled text: multinomial Naive Bayes over rnnkit's word tokens and word pairs.

    python benchmarks/baseline_nb.py TRAIN.csv TEST.csv [--no-pairs] [--alpha 1.0]

CSV files with ``text`` and ``label`` columns, as ``rnnkit classify train`` reads them. Each text counts
every distinct token (``rnnkit.tokenize``) and, unless ``--no-pairs``, every distinct pair of adjacent
tokens once; add-alpha smoothing; the class of highest log-probability wins. Prints the test accuracy. It
is a yardstick for what a set allows, not part of rnnkit: on short texts a bag of word pairs is hard to
beat without pretrained vectors.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import Counter

from rnnkit import tokenize


def features(text: str, pairs: bool) -> set:
    words = tokenize(text)
    return set(words) | (set(zip(words, words[1:])) if pairs else set())


def read(path: str) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [(row["text"], row["label"]) for row in csv.DictReader(f)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("train")
    ap.add_argument("test")
    ap.add_argument("--no-pairs", dest="pairs", action="store_false")
    ap.add_argument("--alpha", type=float, default=1.0)
    args = ap.parse_args()
    train, test = read(args.train), read(args.test)
    prior = Counter(label for _, label in train)
    counts = {label: Counter() for label in prior}
    for text, label in train:
        counts[label].update(features(text, args.pairs))
    vocab = set().union(*counts.values())
    totals = {c: sum(counts[c].values()) + args.alpha * len(vocab) for c in counts}

    def score(feats: set, c: str) -> float:
        return math.log(prior[c]) + sum(math.log((counts[c][f] + args.alpha) / totals[c]) for f in feats if f in vocab)
    right = sum(max(counts, key=lambda c: score(features(text, args.pairs), c)) == label for text, label in test)
    print(f"Naive Bayes ({'words and word pairs' if args.pairs else 'words'}, alpha {args.alpha:g}): "
          f"{right / len(test):.2%} of {len(test):,} test texts ({len(train):,} training texts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
