"""rnnkit: recurrent neural networks on text, on PyTorch.

    from rnnkit import CharLM, ModelConfig, TrainConfig, DataConfig, SampleConfig, train, load, generate
    from rnnkit import classify          # classify.train / load / evaluate / predict for SequenceClassifier

See README.md for the map of the package's layers.
"""

from ._version import __version__
from . import classify  # noqa: E402
from .config import (BeamConfig, ClassifierConfig, ClassifierTrainConfig, DataConfig, ModelConfig, SampleConfig,  # noqa: E402
                     TextDataConfig, TrainConfig)
from .data.vocab import CharVocab  # noqa: E402
from .data.words import WordVocab, tokenize  # noqa: E402
from .evaluate import evaluate_stream, score_file  # noqa: E402
from .inference.beam import Hypothesis, beam_search  # noqa: E402
from .inference.sampling import generate  # noqa: E402
from .nn.models import CharLM, SequenceClassifier  # noqa: E402
from .runs import load  # noqa: E402
from .training.lm import resume, train  # noqa: E402



def main(argv=None) -> int:
    """The ``rnnkit`` command: the command line's subcommands, and ``serve`` from the layer beside it."""
    from .cli import main as cli_main
    from .serve import command as serve

    return cli_main(argv, commands={"serve": serve})


__all__ = ["BeamConfig", "CharLM", "CharVocab", "ClassifierConfig", "ClassifierTrainConfig", "DataConfig", "ModelConfig",
           "SampleConfig", "SequenceClassifier", "TextDataConfig", "TrainConfig", "WordVocab", "classify",
           "beam_search", "evaluate_stream", "generate", "Hypothesis", "load", "main", "resume", "score_file", "tokenize", "train", "__version__"]
