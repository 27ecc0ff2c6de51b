"""fpsim.stats: the Wilson interval of an accuracy."""
import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

from fpsim.stats import wilson


@given(st.integers(1, 5000), st.data())
def test_wilson_matches_scipy_and_holds_the_estimate(n, data):
    s = data.draw(st.integers(0, n))
    low, high = wilson(s, n)
    ref = scipy.stats.binomtest(s, n).proportion_ci(0.95, method="wilson")
    assert low == pytest.approx(ref.low, abs=1e-9) and high == pytest.approx(ref.high, abs=1e-9)
    assert 0 <= low <= s / n <= high <= 1 and low < high


def test_wilson_shrinks_with_n_and_rejects_bad_input():
    widths = [np.subtract(*wilson(n, n)[::-1]) for n in (10, 100, 1000)]
    assert widths[0] > widths[1] > widths[2] > 0
    with pytest.raises(ValueError, match="successes must lie in"):
        wilson(11, 10)
    with pytest.raises(ValueError, match="n must lie in"):
        wilson(0, 0)
