"""C3 with FGM: one-step FGM adversarial training from the clean weights is robust too (certified)."""

ID = "C3-FGM"
STATEMENT = ("adversarial training with one-step FGM (same tau, steps): robust accuracy > 99 % "
             "against any perturbation")
CRITERION = "FGM-trained net: certified robust accuracy (lower end) > 0.99"


def check(report):
    if "fgm" not in report:
        return {"FGM run": "not run (fgm_check = off)"}, None
    fgm = report["fgm"]
    robust = fgm["robust"]
    measured = {"clean accuracy": fgm["accuracy"],
                "robust [certified, attacked]": [robust["lower"], robust["upper"]],
                "main run's attack": report["config"].get("attack"),
                "same run as C3": fgm.get("reused_main_run", False)}
    return measured, robust["lower"] > 0.99
