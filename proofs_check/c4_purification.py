"""C4: adversarial training purifies the clean neurons."""

ID = "C4"
STATEMENT = "for most neurons w_i = beta_i w'_i + v_i with ||beta_i w'_i|| > ||v_i||"
CRITERION = "fraction of neurons with ||beta_i w'_i|| > ||v_i|| (least-squares beta_i) > 0.5"
LIMIT = 0.5


def check(report):
    pur = report["metrics"]["purification"]
    measured = {"fraction purified": pur["fraction"], "median cos(w_i, w'_i)": pur["median_cos"]}
    return measured, pur["fraction"] > LIMIT
