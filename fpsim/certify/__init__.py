r"""Robust accuracy as a certified interval (``docs/MODEL.md`` §5).

Robust accuracy at :math:`(p, \tau)` is :math:`\Pr[y f(x+\delta) > 0\ \forall
\|\delta\|_p \le \tau]`.  :func:`robust_accuracy` brackets it:

* **upper end** -- accuracy under the strongest of PGD with restarts, FGM
  and (given the data model) the dense-direction attack, per example;
* **lower end** -- the fraction of examples with a *sound* certificate.

The certificates all follow from one lemma.  Write :math:`s_i` for unit
:math:`i` (non-decreasing and 1-Lipschitz in :math:`u_i = \langle w_i,
x\rangle`, for the ReLU and the smoothed ReLU alike), :math:`r_i = \tau
\|w_i\|_q` (:math:`q` the dual norm of :math:`p`, so :math:`|\Delta u_i| \le
r_i` in the ball), and the per-unit worst case

.. math::

    \text{drop}_i = y\, s_i(u_i) - y\, s_i(u_i - y r_i) \ \ge 0 .

A unit that is non-decreasing and 1-Lipschitz changes the margin by at least
:math:`\min(0, y\langle w_i, \delta\rangle)`.  So for any set :math:`S` of
units, those outside :math:`S` lose at most their own
:math:`\text{drop}_i` and those inside at most
:math:`(-y\langle w_i, \delta\rangle)_+`:

.. math::

    y f(x+\delta) \ \ge\ y f(x) - \sum_{i \notin S} \text{drop}_i
        - \sup_{\|\delta\|_p \le \tau} \sum_{i \in S} (-y\langle w_i, \delta\rangle)_+ ,

and with :math:`\rho_2 = \sup \|\delta\|_2` (:math:`\tau` for :math:`\ell_2`,
:math:`\tau\sqrt d` for :math:`\ell_\infty`) and :math:`G = W W^\top`

.. math::

    \sup_\delta \sum_{i\in S} (-y\langle w_i, \delta\rangle)_+
    = \max_{T \subseteq S} \sup_\delta \Big\langle -y \sum_{i \in T} w_i, \delta \Big\rangle
    \le \rho_2 \max_{T \subseteq S} \Big\|\sum_{i\in T} w_i\Big\|_2
    \le \rho_2 \min\Big(\sqrt{\textstyle\sum_{i,j\in S}(G_{ij})_+},\ \sqrt{|S|}\,\sigma_{\max}(W_S)\Big).

(This is the local Lipschitz bound of MODEL.md §5,
:math:`\sum_{i\in S}|\langle w_i, \delta\rangle| \le \tau\sqrt{|S|}\sigma_{\max}(W_S)`,
made one-sided.)

Three instances are computed per example and the best one is kept:

* ``"per_unit"`` -- :math:`S = \emptyset`: :math:`y f(x+\delta) \ge \sum_i y
  s_i(u_i - y r_i)`, the per-unit monotone bound;
* ``"gram"`` -- the best prefix :math:`S_t` of the units ordered by
  :math:`\text{drop}_i / r_i` (units that move fully through the ball
  first), with the :math:`(G)_+` bound (:func:`fpsim.kernels.joint_lipschitz_drop`);
* ``"spectral"`` -- :math:`S` = all units with :math:`\text{drop}_i > 0`
  (a subset of the units that can be active somewhere in the ball,
  :math:`|u_i| + r_i > b_i`; every other unit never lowers the margin), with
  the :math:`\sigma_{\max}` bound: the local spectral bound of MODEL.md §5.

The biases are held fixed in the ball: for the relative threshold
:math:`b_i = \theta\|w_i\|` depends on :math:`W` only.

:func:`exact_robust_accuracy` solves the :math:`\ell_\infty` problem exactly
as a mixed-integer linear program for small ReLU networks, to validate both
ends.
"""
from .bounds import METHODS, certified_margins
from .curves import RobustAccuracy, critical_radius, robust_accuracy, robust_curve
from .exact import ExactRobustness, exact_robust_accuracy

__all__ = ["METHODS", "ExactRobustness", "RobustAccuracy", "certified_margins", "critical_radius",
           "exact_robust_accuracy", "robust_accuracy", "robust_curve"]
