"""Classifier predictions: class probabilities for texts, labels with their probabilities, and accuracy on
labelled data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..data.labelled import label_indices, prepare_data, read_examples
from ..evaluate import class_outputs, score
from ..runs import LoadedClassifier


def predict_proba(model, seqs: Sequence[torch.Tensor], *, batch_size: int = 256,
                  precision: str = "fp32") -> torch.Tensor:
    """Class probabilities (N, C) for encoded texts, in their order."""
    return class_outputs(model, seqs, batch_size=batch_size, precision=precision)[0].softmax(-1).float()


def evaluate(clf: LoadedClassifier, path: Optional[str] = None, *, split: str = "test", format: Optional[str] = None,
             text_column: Optional[str] = None, label_column: Optional[str] = None,
             encoding: Optional[str] = None, batch_size: int = 256) -> dict:
    """Accuracy and loss on labelled data (or, without ``path``, on the run's own validation texts).

    Format, columns and encoding default to the ones the run was trained with.
    """
    d = clf.data
    if path is None:
        data = prepare_data(d, int(clf.run["train"]["seed"]), vocab=clf.vocab, labels=clf.labels)
        seqs, labels, source = data.val_seqs, data.val_labels, f"{data.source} validation"
    else:
        ex = read_examples(path, format=format or d.format, split=split, text_column=text_column or d.text_column,
                           label_column=label_column or d.label_column, encoding=encoding or d.encoding)
        seqs, labels, source = clf.encode(ex.texts), label_indices(ex.labels, clf.labels, ex.source), ex.source
    s = score(clf.model, seqs, labels, batch_size=batch_size, precision=clf.precision)
    return {**s.to_dict(), "data": source, "weights": clf.weights.name}


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float                 # of ``label``
    probabilities: dict[str, float]    # every label's

    def to_dict(self) -> dict:
        return {"label": self.label, "probability": self.probability, "probabilities": self.probabilities}


def predict(clf: LoadedClassifier, texts: Sequence[str], *, batch_size: int = 256) -> list[Prediction]:
    probs = predict_proba(clf.model, clf.encode(texts), batch_size=batch_size, precision=clf.precision)
    out = []
    for row in probs.tolist():
        k = max(range(len(row)), key=row.__getitem__)
        out.append(Prediction(clf.labels[k], row[k], dict(zip(clf.labels, row))))
    return out
