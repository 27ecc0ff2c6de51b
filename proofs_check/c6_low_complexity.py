"""C6: low-complexity models (linear, low-degree polynomial, NTK) cannot be robust at radius tau."""

ID = "C6"
STATEMENT = "linear models, low-degree polynomials and the NTK cannot reach good robust accuracy at tau"
CRITERION = ("every baseline, trained clean or adversarially, has robust accuracy (its best, upper "
             "end) below the adversarially trained network's certified robust accuracy")


def check(report):
    baselines = report["baselines"]
    if not baselines:
        return {"baselines": "not run (baseline_steps = 0)"}, None
    target = report["adversarial"]["robust"]["lower"]
    measured = {"network certified": target}
    best = 0.0
    trained = 0
    for name, runs in baselines.items():
        for regime, res in runs.items():
            measured[f"{name} {regime} ({res['robust_kind']})"] = res["robust"]
            if res["robust"] is not None:  # a diverged run says nothing either way
                trained += 1
                best = max(best, res["robust"])
    return measured, (best < target) if trained else None
