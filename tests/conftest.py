import os

from hypothesis import HealthCheck, settings

# Numba compiles on first call; give hypothesis room for that and keep CI runs bounded.
settings.register_profile("fpsim", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("fpsim"), max_examples=20,
                          derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "fpsim")
