"""C7: the purification update W' - W is low rank."""

ID = "C7"
STATEMENT = "W' - W carries most of its energy in a few singular directions"
CRITERION = "top-5 singular values of W' - W hold > 50 % of its squared Frobenius norm"
LIMIT = 0.5


def check(report):
    spec = report["metrics"]["update_spectrum"]
    measured = {"top-5 energy share": spec["top_energy"],
                "leading singular values": spec["singular_values"][:5]}
    return measured, spec["top_energy"] > LIMIT
