"""C1: every neuron ends far from its initialisation."""
import math

ID = "C1"
STATEMENT = "after clean and after adversarial training, |cos(w_i^0, w_i)| ~ 0 for every neuron"
CRITERION = "median |cos| < 0.1 for both nets (shown beside sqrt(2 ln d / d) and 1/sqrt(d))"
LIMIT = 0.1


def check(report):
    cos = report["metrics"]["cos_init"]
    d = report["config"]["d"]
    measured = {"clean median": cos["clean"]["median"], "clean max": cos["clean"]["max"],
                "adversarial median": cos["adversarial"]["median"],
                "adversarial max": cos["adversarial"]["max"],
                "sqrt(2 ln d/d)": math.sqrt(2 * math.log(d) / d), "1/sqrt(d)": 1 / math.sqrt(d)}
    passed = cos["clean"]["median"] < LIMIT and cos["adversarial"]["median"] < LIMIT
    return measured, passed
