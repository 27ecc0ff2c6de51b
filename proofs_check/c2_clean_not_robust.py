"""C2: clean training is accurate but not robust."""

ID = "C2"
STATEMENT = "clean training: clean accuracy > 99 %, robust accuracy < 1 % at radius tau"
CRITERION = "clean net: accuracy > 0.99 and attacked robust accuracy (upper end) < 0.01"


def check(report):
    clean = report["clean"]
    robust = clean["robust"]
    measured = {"clean accuracy": clean["accuracy"],
                "robust [certified, attacked]": [robust["lower"], robust["upper"]],
                "dense-direction attack alone": robust.get("dense_direction")}
    return measured, clean["accuracy"] > 0.99 and robust["upper"] < 0.01
