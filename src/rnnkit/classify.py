"""Sequence classification in one namespace, as ``from rnnkit import classify`` offers it:

    classify.train(data, model, train, out) / classify.resume(out)      training/classifier.py
    classify.load(run_dir) -> LoadedClassifier                           runs.py
    classify.evaluate(clf, path) / classify.predict(clf, texts)          inference/predict.py
"""

from .config import ClassifierConfig, ClassifierTrainConfig, TextDataConfig  # noqa: F401
from .data.labelled import Examples, read_examples  # noqa: F401
from .inference.predict import Prediction, evaluate, predict, predict_proba  # noqa: F401
from .runs import LoadedClassifier  # noqa: F401
from .runs import load_classifier as load  # noqa: F401
from .training.classifier import resume, train  # noqa: F401
