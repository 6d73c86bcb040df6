"""Table 3's open-set verification (issue 18, item 4): AUC and TPR at 1% FPR over every
(reconstruction, candidate) pair of a run, members and non-members, checked against sklearn."""

from __future__ import annotations

import numpy as np
import pytest

from inversion_audit.report.summary import summarize_study
from inversion_audit.report.tables import report_tables
from inversion_audit.study.paper import PAPER_MEAN_RANK, PAPER_TABLE3
from roc_reference import sklearn_verification

RUN = "unet_skull-stripped_bottleneck"


def _rows(n_members: int, n_holdout: int, seed: int = 0) -> tuple[list[dict], list[str]]:
    """Score rows of one run: every reconstruction against one gallery of every subject.

    SSIM (higher is better) on every pair, deformation (lower is better) on the own pair and
    about half of the others (as on the SSIM top-k); one decimal, so pairs tie.
    """
    r = np.random.default_rng(seed)
    ids = [f"s{k:02d}" for k in range(n_members + n_holdout)]
    rows = []
    for k, a in enumerate(ids):
        for c in ids:
            same = a == c
            base = {
                "fold": k % 2,
                "arch": "unet",
                "variant": "skull-stripped",
                "threat_model": "bottleneck",
                "reconstruction_id": a,
                "candidate_id": c,
            }
            value = round(float(r.normal(0.6 if same else 0.4, 0.1)), 1)
            rows.append({**base, "metric": "ssim", "value": value})
            if same or r.random() < 0.5:
                value = round(float(r.normal(1.0 if same else 2.0, 0.6)), 1)
                rows.append({**base, "metric": "deformation", "value": value})
    return rows, ids[n_members:]


def _vals(rows: list[dict], metric: str) -> dict[tuple[str, str], float]:
    return {
        (r["reconstruction_id"], r["candidate_id"]): r["value"]
        for r in rows
        if r["metric"] == metric
    }


def _row(tables: dict, metric: str) -> dict[str, str]:
    t = tables["table3"]
    (row,) = [r for r in t["rows"] if r[:2] == [RUN, metric]]
    return dict(zip(t["columns"], row, strict=True))


def test_verification_covers_members_and_nonmembers() -> None:
    rows, holdout = _rows(14, 4)
    summary = summarize_study(rows, holdout)
    entry = summary["runs"][RUN]
    assert entry["nonmember_reconstructions"] == 4
    tables = report_tables(summary)
    columns = tables["table3"]["columns"]
    assert columns[columns.index("AUC") + 1] == "TPR@1% FPR"
    assert columns[-2:] == ["paper top-1 (of 40)", "paper mean rank"]
    assert "non-members' reconstructions" in tables["table3"]["note"]
    for metric, higher in (("ssim", True), ("deformation", False)):
        vals = _vals(rows, metric)
        auc, tpr = sklearn_verification(vals, higher)
        t = entry["table3"][metric]
        assert t["auc"] == pytest.approx(auc, rel=1e-12)
        assert t["tpr_at_1pct_fpr"] == pytest.approx(tpr, rel=1e-12)
        n_same = sum(a == c for a, c in vals)
        assert t["verification_pairs"] == {"same": n_same, "different": len(vals) - n_same}
        assert t["n"] == 14 and not set(t["ranks"]) & set(holdout)  # ranking: members only
        cells = _row(tables, metric)
        assert (cells["AUC"], cells["TPR@1% FPR"]) == (f"{auc:.3f}", f"{tpr:.3f}")
        assert cells["paper top-1 (of 40)"] == str(PAPER_TABLE3["unet"][metric])
        assert cells["paper mean rank"] == str(PAPER_MEAN_RANK["unet"][metric])
    # 18 same-subject vs 306 different-subject SSIM pairs: 1% FPR admits 3 false positives,
    # and the data reach past the zero-false-positive point
    zero_fp = sklearn_verification(_vals(rows, "ssim"), True, fpr=0.0)[1]
    assert entry["table3"]["ssim"]["tpr_at_1pct_fpr"] > zero_fp
    assert entry["table3"]["fused"]["tpr_at_1pct_fpr"] is None
    assert _row(tables, "fused")["TPR@1% FPR"] == "–"


def test_without_holdout_the_pairs_are_the_runs_own() -> None:
    rows, holdout = _rows(14, 4)
    members = [r for r in rows if r["reconstruction_id"] not in holdout]
    summary = summarize_study(members)
    t = summary["runs"][RUN]["table3"]["ssim"]
    auc, tpr = sklearn_verification(_vals(members, "ssim"), True)
    assert (t["auc"], t["tpr_at_1pct_fpr"]) == pytest.approx((auc, tpr), rel=1e-12)
    assert summary["runs"][RUN]["nonmember_reconstructions"] == 0
    assert "non-members" not in report_tables(summary)["table3"]["title"]
    everyone = summarize_study(rows, holdout)["runs"][RUN]["table3"]["ssim"]
    assert everyone["auc"] != pytest.approx(t["auc"])  # the non-members' pairs count
    assert {k: everyone[k] for k in ("top1", "n", "ranks")} == {
        k: t[k] for k in ("top1", "n", "ranks")
    }
