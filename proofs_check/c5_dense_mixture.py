"""C5: clean neurons carry a dense mixture aligned with M w*; adversarial training removes most of it."""

ID = "C5"
STATEMENT = ("clean neurons = few principal atoms + a dense mixture aligned with M w*; "
             "adversarial training removes most of the mixture")
CRITERION = ("clean dense mixture positively aligned with w* (median > 0) and its median norm "
             "after adversarial training < 0.5 x before")
LIMIT = 0.5


def check(report):
    mix = report["metrics"]["dense_mixture"]
    clean, adv = mix["clean"], mix["adversarial"]
    ratio = adv["median_norm"] / clean["median_norm"] if clean["median_norm"] > 0 else float("inf")
    measured = {"clean share of norm": clean["median_share"],
                "adversarial share of norm": adv["median_share"],
                "clean alignment with w*": clean["median_alignment"],
                "adversarial alignment with w*": adv["median_alignment"],
                "mixture norm ratio adv/clean": ratio}
    return measured, clean["median_alignment"] > 0 and ratio < LIMIT
