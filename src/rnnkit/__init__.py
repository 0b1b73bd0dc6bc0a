"""rnnkit: recurrent neural networks on text, on PyTorch.

    from rnnkit import CharLM, ModelConfig, TrainConfig, DataConfig, SampleConfig, train, load, generate

See README.md for the module map.
"""

__version__ = "0.1.0"

from .config import DataConfig, ModelConfig, SampleConfig, TrainConfig  # noqa: E402
from .evaluate import evaluate_stream  # noqa: E402
from .generate import generate  # noqa: E402
from .models import CharLM  # noqa: E402
from .train import load, resume, score_file, train  # noqa: E402
from .vocab import CharVocab  # noqa: E402

__all__ = ["CharLM", "CharVocab", "DataConfig", "ModelConfig", "SampleConfig", "TrainConfig",
           "evaluate_stream", "generate", "load", "resume", "score_file", "train", "__version__"]
