"""fpsim: a numerical laboratory for the feature-purification theory of adversarial training."""
__version__ = "0.1.0"

from .data import SparseCodingModel, TrainingData  # noqa: E402
from .network import Threshold, TwoLayerNet  # noqa: E402
from .train import run_sgd, train_clean  # noqa: E402
