"""C2 and C3 at the same radius: the paper's headline (MODEL.md §1)."""
from . import c2_clean_not_robust, c3_adversarial_robust

ID = "C2+C3"
STATEMENT = ("at one radius tau the clean net is < 1 % robust and the adversarially trained net "
             "> 99 % certified robust, both > 99 % accurate")
CRITERION = "C2 and C3 both PASS on the same report (the run's one tau)"


def check(report):
    if "adversarial" not in report:
        return {"adversarial net": "not trained (adv_steps = 0)"}, None
    c2, c2_passed = c2_clean_not_robust.check(report)
    c3, c3_passed = c3_adversarial_robust.check(report)
    measured = {"tau": report["config"]["tau"],
                "clean net robust [certified, attacked]": c2["robust [certified, attacked]"],
                "adversarial net robust [certified, attacked]": c3["robust [certified, attacked]"],
                "C2": "PASS" if c2_passed else "FAIL", "C3": "PASS" if c3_passed else "FAIL"}
    return measured, bool(c2_passed and c3_passed)
