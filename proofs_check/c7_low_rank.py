"""C7: adversarial training can be done through a low-rank update W' = W + U V^T (r <= 4).

Read as the paper states it (``docs/MODEL.md`` §1): the rank-r update of the
clean weights, trained by the same adversarial SGD (``fpsim.train.LowRankStep``),
reaches within 2 points the certified robust accuracy of the full update.  The
singular-value energy of the full update W' - W is a diagnostic only, shown
with its split into each neuron's own-atom growth (full rank) and the rest.
"""

ID = "C7"
STATEMENT = ("adversarial training through a low-rank update W' = W + U V^T (r <= 4) reaches the "
             "robust accuracy of the full update")
CRITERION = ("some r <= 4: certified robust accuracy (lower end) >= the full update's - 0.02 "
             "(energy of W' - W shown as a diagnostic)")
MAX_RANK = 4
TOLERANCE = 0.02


def check(report):
    low = report["low_rank"]
    full = low["full"]
    measured = {"full: clean acc, robust [certified, attacked]":
                [full["accuracy"], full["robust"]["lower"], full["robust"]["upper"]]}
    for rank, run in sorted(low["ranks"].items(), key=lambda item: int(item[0])):
        measured[f"r={rank}: clean acc, robust [certified, attacked]"] = [
            run["accuracy"], run["robust"]["lower"], run["robust"]["upper"]]
    spectrum = report["metrics"].get("update_spectrum", {})
    split = low.get("update_split", {})
    measured["diagnostic: top-5 energy of W' - W"] = spectrum.get("top_energy")
    measured["own-atom share of ||W' - W||^2"] = split.get("own_atom_share")
    measured["top-5 energy of the rest"] = split.get("rest_top_energy")
    eligible = [run for rank, run in low["ranks"].items() if int(rank) <= MAX_RANK]
    if not eligible:
        measured["low-rank runs"] = "none with r <= 4 (lowrank_ranks)"
        return measured, None
    best = max(run["robust"]["lower"] for run in eligible)
    measured["best certified, r <= 4"] = best
    return measured, best >= full["robust"]["lower"] - TOLERANCE
