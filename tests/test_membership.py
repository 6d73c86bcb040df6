"""Members vs non-members statistics, open-set verification and membership inference (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import fisher_exact, hypergeom
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from inversion_audit.matching.ranking import ScoreMatrix
from inversion_audit.matching.retrieval import open_set_verification, roc_points, tpr_at_fpr
from inversion_audit.study.membership import (
    compare_members,
    fisher_exact_p,
    holm_adjusted,
    newcombe_interval,
    wilson_bounds,
)
from inversion_audit.study.membership_inference import (
    _fit_logistic,
    cross_validated_logistic,
    membership_inference,
    rank_average,
    reconstruction_error,
)

TABLES = [(56, 70, 48, 80), (10, 10, 20, 20), (0, 10, 5, 20), (9, 10, 3, 12), (40, 40, 18, 20)]


@pytest.mark.parametrize("x1,n1,x2,n2", TABLES)
def test_newcombe_matches_statsmodels(x1, n1, x2, n2):
    lo, hi = newcombe_interval(x1, n1, x2, n2)
    ref = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff")
    assert lo == pytest.approx(float(ref[0]), abs=1e-9)
    assert hi == pytest.approx(float(ref[1]), abs=1e-9)
    assert wilson_bounds(x1, n1) == pytest.approx(proportion_confint(x1, n1, method="wilson"))


def test_newcombe_published_example():
    # Newcombe (1998), Stat Med 17:873, Table II, example (a): 56/70 - 48/80, method 10
    lo, hi = newcombe_interval(56, 70, 48, 80)
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)


@pytest.mark.parametrize("x1,n1,x2,n2", TABLES + [(3, 4, 1, 4)])
def test_fisher_matches_scipy_and_hypergeometric_sum(x1, n1, x2, n2):
    p = fisher_exact_p(x1, n1, x2, n2)
    assert p == pytest.approx(fisher_exact([[x1, n1 - x1], [x2, n2 - x2]])[1])
    # two-sided: sum of all tables with the same margins no more likely than the observed one
    dist = hypergeom(n1 + n2, x1 + x2, n1)
    support = np.arange(max(0, x1 + x2 - n2), min(n1, x1 + x2) + 1)
    pmf = dist.pmf(support)
    assert p == pytest.approx(min(1.0, pmf[pmf <= dist.pmf(x1) * (1 + 1e-7)].sum()), rel=1e-6)


def test_fisher_tea_tasting():
    assert fisher_exact_p(3, 4, 1, 4) == pytest.approx(0.4857, abs=1e-4)


def test_tpr_at_fpr_hand_computed_roc():
    pos = [0.9, 0.8, 0.4]
    neg = [0.7, 0.5, 0.3, 0.2, 0.1]
    # by hand: thresholds 0.9 (0, 1/3), 0.8 (0, 2/3), 0.7 (.2, 2/3), 0.5 (.4, 2/3),
    # 0.4 (.4, 1), 0.3 (.6, 1), 0.2 (.8, 1), 0.1 (1, 1)
    fpr, tpr = roc_points(pos, neg)
    np.testing.assert_allclose(fpr, [0, 0, 0, 0.2, 0.4, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 1, 1, 1, 1])
    assert tpr_at_fpr(pos, neg, 0.01) == pytest.approx(2 / 3)
    assert tpr_at_fpr(pos, neg, 0.10) == pytest.approx(2 / 3)
    assert tpr_at_fpr(pos, neg, 0.39) == pytest.approx(2 / 3)
    assert tpr_at_fpr(pos, neg, 0.40) == pytest.approx(1.0)
    # ties enter together: at threshold 0.5 both positives and one negative
    assert tpr_at_fpr([0.5, 0.5], [0.5, 0.1], 0.4) == 0.0
    assert tpr_at_fpr([0.5, 0.5], [0.5, 0.1], 0.5) == 1.0


@pytest.mark.parametrize("seed", range(4))
def test_tpr_at_fpr_matches_sklearn(seed):
    r = np.random.default_rng(seed)
    pos = np.round(r.normal(1.0, 1.0, 30), 1)  # rounding makes ties
    neg = np.round(r.normal(0.0, 1.0, 200), 1)
    y = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    f, t, _ = roc_curve(y, np.r_[pos, neg], drop_intermediate=False)
    for alpha in (0.0, 0.01, 0.05, 0.1, 0.5):
        assert tpr_at_fpr(pos, neg, alpha) == pytest.approx(t[f <= alpha].max())


def _gallery(n_members: int, n_nonmembers: int, found_m: int, found_n: int, seed: int = 0):
    """Scores where the first ``found_*`` of each group have their own original ranked first."""
    r = np.random.default_rng(seed)
    ids = [f"m{i}" for i in range(n_members)] + [f"h{i}" for i in range(n_nonmembers)]
    v = r.uniform(0.0, 0.5, (len(ids), len(ids)))
    found = [i < found_m for i in range(n_members)] + [i < found_n for i in range(n_nonmembers)]
    for i, ok in enumerate(found):
        v[i, i] = 0.9 if ok else 0.05
    return ScoreMatrix("ssim", v, ids, ids), ids[:n_members], ids[n_members:]


def test_compare_members_counts_auc_and_verdicts():
    mat, members, nonmembers = _gallery(40, 20, 40, 20)
    c = compare_members(mat, members, nonmembers)
    assert (c.members.top1, c.members.n, c.nonmembers.top1, c.nonmembers.n) == (40, 40, 20, 20)
    assert c.interval == pytest.approx(
        tuple(confint_proportions_2indep(40, 40, 20, 20, method="newcomb", compare="diff"))
    )
    assert c.fisher_p == pytest.approx(1.0)
    assert "whoever the patient" in c.verdict
    # per-group verification AUC over the group's rows against the whole gallery
    same = np.eye(60, dtype=bool)[:40]
    assert c.members.auc == pytest.approx(roc_auc_score(same.ravel(), mat.values[:40].ravel()))
    assert c.members.own_mean == pytest.approx(0.9)

    mat, members, nonmembers = _gallery(40, 20, 38, 4)
    c = compare_members(mat, members, nonmembers)
    assert c.interval[0] > 0 and c.fisher_p < 0.001
    assert "carry their training patients" in c.verdict

    mat, members, nonmembers = _gallery(4, 2, 3, 1)
    c = compare_members(mat, members, nonmembers)
    assert "Inconclusive" in c.verdict and c.interval[0] < 0 < c.interval[1]

    with pytest.raises(ValueError, match="both member and non-member"):
        compare_members(mat, members, [members[0]])


def test_open_set_verification_matches_sklearn():
    mat, members, _ = _gallery(10, 5, 7, 2, seed=3)
    ver = open_set_verification(mat)
    same = np.eye(15, dtype=bool)
    assert ver.n_positive == 15 and ver.n_negative == 15 * 14
    assert ver.auc == pytest.approx(roc_auc_score(same.ravel(), mat.values.ravel()))
    f, t, _ = roc_curve(same.ravel(), mat.values.ravel(), drop_intermediate=False)
    assert ver.tpr_at_1pct_fpr == pytest.approx(t[f <= 0.01].max())
    # lower-is-better metrics are negated
    flipped = ScoreMatrix("d", -mat.values, mat.reconstruction_ids, mat.candidate_ids, False)
    assert open_set_verification(flipped).auc == pytest.approx(ver.auc)
    assert open_set_verification(mat, members).n_positive == 10


def test_logistic_fit_matches_sklearn():
    r = np.random.default_rng(0)
    x = r.normal(size=(40, 2))
    y = (x[:, 0] + 0.5 * r.normal(size=40) > 0).astype(float)
    w = _fit_logistic(x, y, l2=1.0)
    ref = LogisticRegression(C=1.0).fit(x, y)
    np.testing.assert_allclose(w[1:], ref.coef_[0], atol=1e-3)
    assert w[0] == pytest.approx(ref.intercept_[0], abs=1e-3)


def test_membership_inference_separates_and_reports_intervals():
    r = np.random.default_rng(1)
    members_err = r.normal(0.010, 0.002, 30)
    holdout_err = r.normal(0.020, 0.002, 20)
    noise_m, noise_n = r.normal(size=30), r.normal(size=20)
    res = {
        x.signal: x
        for x in membership_inference(
            {"reconstruction_error": (-members_err, -holdout_err), "noise": (noise_m, noise_n)},
            n_boot=300,
        )
    }
    assert set(res) == {"reconstruction_error", "noise", "combined"}
    good = res["reconstruction_error"]
    assert good.auc == pytest.approx(
        roc_auc_score(np.r_[np.ones(30), np.zeros(20)], np.r_[-members_err, -holdout_err])
    )
    assert good.auc_interval[0] > 0.8 and "better than guessing" in good.sentence
    assert "steps of 5%" in good.sentence
    noise = res["noise"]
    assert noise.auc_interval[0] < 0.5 < noise.auc_interval[1]
    assert "compatible with guessing" in noise.sentence
    assert res["combined"].auc > 0.8
    assert 0 <= good.tpr_at_1pct_interval[0] <= good.tpr_at_1pct_fpr <= 1


def test_cross_validated_probabilities_are_out_of_fold():
    # a subject whose label contradicts its feature gets a low member probability
    x = np.r_[np.linspace(1, 2, 10), np.linspace(-2, -1, 10)][:, None]
    y = np.r_[np.ones(10), np.zeros(10)]
    y[0] = 0
    p = cross_validated_logistic(x, y, folds=5)
    assert np.all(np.isfinite(p)) and p[0] > 0.5 and p[10:].max() < 0.5


def test_rank_average_and_reconstruction_error():
    x = np.array([[1.0, 10.0], [2.0, 30.0], [3.0, 20.0]])
    np.testing.assert_allclose(rank_average(x), [0.0, 0.75, 0.75])
    a, b = np.zeros((4, 4)), np.ones((4, 4))
    mask = np.zeros((4, 4), bool)
    mask[0] = True
    b[1:] = 3.0
    assert reconstruction_error(a, b) == pytest.approx(np.mean((a - b) ** 2))
    assert reconstruction_error(a, b, mask) == 1.0


def test_a_member_advantage_is_claimed_only_when_fisher_confirms_it_after_holm():
    # 9/10 members vs 2/5 non-members: Newcombe's interval lies above zero, Fisher's p is 0.08
    weak = compare_members(*_gallery(10, 5, 9, 2))
    assert weak.interval[0] > 0
    assert weak.fisher_p == pytest.approx(fisher_exact([[9, 1], [2, 3]]).pvalue)
    assert "Suggestive, not established" in weak.verdict
    assert "carry their training patients" not in weak.verdict

    # 10/10 vs 2/5: p = 0.022 claims an advantage alone, but not after Holm over 3 metrics
    alone = compare_members(*_gallery(10, 5, 10, 2))
    assert alone.fisher_p < 0.05 and "carry their training patients" in alone.verdict
    other = compare_members(*_gallery(10, 5, 8, 2, seed=1))
    adjusted = holm_adjusted({"weak": weak, "alone": alone, "other": other})
    # Holm by hand: ascending p times (m - i), then the running maximum, capped at 1
    ps = {"weak": weak.fisher_p, "alone": alone.fisher_p, "other": other.fisher_p}
    expected, running = {}, 0.0
    for i, k in enumerate(sorted(ps, key=ps.get)):
        running = max(running, min(1.0, (3 - i) * ps[k]))
        expected[k] = running
    for k in ps:
        assert adjusted[k].fisher_p_holm == pytest.approx(expected[k])
        assert adjusted[k].n_metrics == 3
        assert adjusted[k].fisher_p == ps[k]  # the raw p is kept
    assert expected["alone"] > 0.05
    assert "Suggestive, not established" in adjusted["alone"].verdict
    assert "Holm-adjusted over 3 metrics" in adjusted["alone"].verdict

    # a clear advantage stays claimed after the correction
    strong = compare_members(*_gallery(40, 20, 38, 4))
    kept = holm_adjusted({"strong": strong, "weak": weak})
    assert kept["strong"].fisher_p_holm == pytest.approx(min(1.0, 2 * strong.fisher_p))
    assert "carry their training patients" in kept["strong"].verdict
