"""fpsim: a numerical laboratory for the feature-purification theory of adversarial training."""
__version__ = "0.1.0"

from .data import SparseCodingModel, TrainingData  # noqa: E402
from .network import Threshold, TwoLayerNet  # noqa: E402
from .train import run_sgd, train_adversarial, train_clean  # noqa: E402
from .attacks import attack_margin, dense_direction, fgm, pgd  # noqa: E402
from .certify import (RobustAccuracy, certified_margins, critical_radius,  # noqa: E402
                      exact_robust_accuracy, robust_accuracy, robust_curve)
from .metrics import (cos_to_init, dense_direction_sensitivity, dictionary_view,  # noqa: E402
                      purification, update_spectrum)
from .baselines import LinearClassifier, NTKClassifier, PolynomialClassifier, train_baseline  # noqa: E402
