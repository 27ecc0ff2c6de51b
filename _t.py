import time
t=time.time()
import numpy as np
from fpsim.certify import certified_margins
from fpsim.testing import assert_sound
from fpsim.strategies import problems
certified_margins  # warm
from hypothesis import given, settings, Phase
print("import", time.time()-t); t=time.time()
calls=[0]
def per_unit_half_radius(net, x, y, norm, tau):
    calls[0]+=1
    return certified_margins(net, x, y, norm, tau / 2)["per_unit"]
@settings(max_examples=50, deadline=None, database=None, phases=[Phase.generate, Phase.shrink])
@given(problem=problems())
def halved_radius_is_sound(problem):
    assert_sound(per_unit_half_radius, *problem)
try:
    halved_radius_is_sound()
except AssertionError as e:
    print(e)
print(time.time()-t, calls)
