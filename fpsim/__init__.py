"""fpsim: a numerical laboratory for the feature-purification theory of adversarial training."""
from ._version import __version__  # noqa: F401
from . import _threads  # noqa: F401,E402  (first: sets the OpenMP wait policy before numba's pool starts)

from .data import SparseCodingModel, TrainingData  # noqa: E402
from .network import Threshold, TwoLayerNet  # noqa: E402
from .train import run_sgd, train_adversarial, train_clean  # noqa: E402
from .attacks import attack_margin, dense_direction, fgm, pgd  # noqa: E402
from .certify import (RobustAccuracy, certified_margins, critical_radius,  # noqa: E402
                      exact_robust_accuracy, robust_accuracy, robust_curve)
from .metrics import cos_to_init, dictionary_view, purification, update_spectrum  # noqa: E402
from .baselines import LinearClassifier, NTKClassifier, PolynomialClassifier, train_baseline  # noqa: E402

__all__ = [
    "SparseCodingModel", "TrainingData", "Threshold", "TwoLayerNet",
    "run_sgd", "train_clean", "train_adversarial",
    "fgm", "pgd", "dense_direction", "attack_margin",
    "RobustAccuracy", "robust_accuracy", "certified_margins", "robust_curve", "critical_radius",
    "exact_robust_accuracy",
    "cos_to_init", "purification", "dictionary_view", "update_spectrum",
    "LinearClassifier", "PolynomialClassifier", "NTKClassifier", "train_baseline",
]
