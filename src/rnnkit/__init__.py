"""rnnkit: recurrent neural networks on text, on PyTorch.

    from rnnkit import CharLM, ModelConfig, TrainConfig, DataConfig, SampleConfig, train, load, generate
    from rnnkit import classify          # classify.train / load / evaluate / predict for SequenceClassifier

See README.md for the module map.
"""

__version__ = "0.1.0"

from . import classify  # noqa: E402
from .config import ClassifierConfig, DataConfig, ModelConfig, SampleConfig, TextDataConfig, TrainConfig  # noqa: E402
from .evaluate import evaluate_stream  # noqa: E402
from .generate import generate  # noqa: E402
from .models import CharLM, SequenceClassifier  # noqa: E402
from .text import WordVocab, tokenize  # noqa: E402
from .train import load, resume, score_file, train  # noqa: E402
from .vocab import CharVocab  # noqa: E402

__all__ = ["CharLM", "CharVocab", "ClassifierConfig", "DataConfig", "ModelConfig", "SampleConfig", "SequenceClassifier",
           "TextDataConfig", "TrainConfig", "WordVocab", "classify", "evaluate_stream", "generate", "load", "resume",
           "score_file", "tokenize", "train", "__version__"]
