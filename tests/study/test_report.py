"""The study report's plain-words findings follow the numbers, whichever way they fall."""
from types import SimpleNamespace

from toolkit.study.report import findings

STUDY = SimpleNamespace(baseline="rft")


def analysis(oracle_acc: float, sar_ci: tuple[float, float], rsr_rho, p_oracle: float) -> dict:
    row = lambda acc, reward, p=None: {"accuracy": acc, "reward": reward, **(   # noqa: E731
        {"vs_baseline": {"p": p}} if p is not None else {})}
    table = {"base": row(0.05, None), "rft": row(0.10, 0.70),
             "oracle_refine": row(oracle_acc, 0.90, p_oracle), "style_aligned": row(0.11, 0.72, 0.5)}
    boot = {"diff": (sar_ci[0] + sar_ci[1]) / 2, "lo": sar_ci[0], "hi": sar_ci[1]}
    pred = {"nll": {"rho": 0.4, "p": 0.42, "n": 5}, "rsr": {"rho": rsr_rho, "p": 0.017 if rsr_rho else None, "n": 5},
            "reward": {"rho": -0.6, "p": 0.35, "n": 5}}
    return {"table": table, "prediction": pred, "sar": {"oracle": "oracle_refine", "bootstrap": boot}}


def test_the_paradox_sar_and_the_best_predictor_in_words():
    text = findings(analysis(0.05, (0.01, 0.09), 0.9, 0.01), STUDY)
    assert "Verdict: the paradox appears at this scale" in text
    assert "SAR (`style_aligned`) restores utility: against the best Oracle variant (`oracle_refine`) it is " \
           "above it, Δ +5.0 pts (95% CI +1.0…+9.0)" in text
    assert "Best predictor of accuracy before training: rsr (ρ = +0.90, p = 0.017); RSR here ρ = +0.90 " \
           "against the published 0.86" in text
    assert "reward -0.60 (n = 5, p = 0.350)" in text


def test_the_other_way_round():
    text = findings(analysis(0.12, (-0.04, 0.02), None, 0.3), STUDY)
    assert "Verdict: the paradox does not appear at this scale" in text
    assert "does not restore utility measurably" in text and "not separated from it" in text
    assert "Best predictor of accuracy before training: nll (ρ = +0.40" in text and "RSR here ρ = —" in text
    none = findings({**analysis(0.12, (-0.04, 0.02), None, 0.3),
                     "prediction": {"nll": {"rho": None, "p": None, "n": 5}}}, STUDY)
    assert "No criterion predicts: every ρ is undefined" in none and "Spearman ρ of each" in none
