"""C3: adversarial training is robust against every perturbation of radius tau (certified)."""

ID = "C3"
STATEMENT = "adversarial training from the clean weights: robust accuracy > 99 % against any perturbation"
CRITERION = "adversarial net: certified robust accuracy (lower end) > 0.99"


def check(report):
    adv = report["adversarial"]
    robust = adv["robust"]
    measured = {"clean accuracy": adv["accuracy"],
                "robust [certified, attacked]": [robust["lower"], robust["upper"]],
                "gap": robust["upper"] - robust["lower"]}
    return measured, robust["lower"] > 0.99
