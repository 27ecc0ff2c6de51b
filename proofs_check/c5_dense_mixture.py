"""C5: clean neurons carry a dense mixture aligned with M w*; adversarial training removes most of it.

Judged scale-free (``docs/MODEL.md`` §1), like C4: adversarial training grows
the norms, so "removes most of the mixture" is read on the mixture's *share*
of each neuron's norm, :math:`\\|a_i^{\\rm dense}\\| / \\|a_i\\|`
(:func:`fpsim.metrics.dictionary_view`).  The absolute-norm ratio is shown
as a second number.
"""

ID = "C5"
STATEMENT = ("clean neurons = few principal atoms + a dense mixture aligned with M w*; "
             "adversarial training removes most of the mixture")
CRITERION = ("clean dense mixture positively aligned with w* (median > 0) and the median dense share "
             "of the neuron's norm after adversarial training < 0.5 x before (scale-free)")
LIMIT = 0.5


def check(report):
    mix = report["metrics"]["dense_mixture"]
    clean, adv = mix["clean"], mix["adversarial"]
    share_ratio = adv["median_share"] / clean["median_share"] if clean["median_share"] > 0 else float("inf")
    norm_ratio = adv["median_norm"] / clean["median_norm"] if clean["median_norm"] > 0 else float("inf")
    measured = {"clean share of norm": clean["median_share"],
                "adversarial share of norm": adv["median_share"],
                "share ratio adv/clean": share_ratio,
                "clean alignment with w*": clean["median_alignment"],
                "adversarial alignment with w*": adv["median_alignment"],
                "mixture norm ratio adv/clean (absolute, not judged)": norm_ratio}
    return measured, clean["median_alignment"] > 0 and share_ratio < LIMIT
