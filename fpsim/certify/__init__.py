r"""Robust accuracy as a certified interval (``docs/MODEL.md`` §5).

Robust accuracy at :math:`(p, \tau)` is :math:`\Pr[y f(x+\delta) > 0\ \forall
\|\delta\|_p \le \tau]`.  :func:`robust_accuracy` brackets it: the upper end
from attacks, the lower end from sound certificates.

* :mod:`~fpsim.certify.bounds` -- the certificates and their best-of per example
  (the derivations are in its docstring);
* :mod:`~fpsim.certify.linear` -- the linear relaxation (CROWN / alpha-CROWN style);
* :mod:`~fpsim.certify.beyond` -- the ``"split"`` bound past the threshold;
* :mod:`~fpsim.certify.complete` -- branch and bound over the undecided units (complete mode);
* :mod:`~fpsim.certify.exact` -- exact :math:`\ell_\infty` verification of small nets (MILP);
* :mod:`~fpsim.certify.curves` -- the interval at one radius, curves and critical radii.
"""
from .bounds import METHODS, certified_margins
from .complete import CompleteMargins, complete_margins
from .curves import RobustAccuracy, critical_radius, refined_curve, robust_accuracy, robust_curve
from .exact import ExactRobustness, exact_robust_accuracy

__all__ = ["METHODS", "CompleteMargins", "ExactRobustness", "RobustAccuracy", "certified_margins",
           "complete_margins", "critical_radius", "exact_robust_accuracy", "refined_curve", "robust_accuracy",
           "robust_curve"]
