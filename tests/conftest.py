import os

from hypothesis import HealthCheck, Phase, settings

# Numba compiles on first call; give hypothesis room for that and keep CI runs bounded.
# No "explain" phase: it reruns a failing example many times to annotate it, which costs
# seconds in the tests that fail on purpose (fpsim.testing's, and the examples of
# docs/testing-bounds.md) and adds nothing to the shrunk example they print.
settings.register_profile("fpsim", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow],
                          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink])
settings.register_profile("ci", parent=settings.get_profile("fpsim"), max_examples=20,
                          derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "fpsim")
