"""A study's numbers per run, computed from ``scores.csv``: Tables 1-3, retrieval, Dice, cases."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from ..matching.retrieval import open_set_verification
from ..stats import wilson_interval
from ..study.layout import run_name
from ..study.paper import PAPER_DICE, PAPER_MEAN_RANK, PAPER_TABLE1, PAPER_TABLE2, PAPER_TABLE3
from ..study.rankings import RANKED_METRICS, rank_run, rows_by_run, score_matrix
from ..study.score_files import ScoreRow

__all__ = [
    "RANKED_METRICS",
    "RISK_RULES",
    "identification_risk",
    "paper_figures",
    "summarize_study",
]

#: the identifiability risk levels and the rule of each, as the report writes them
RISK_RULES = {
    "high": "the true patient is the best SSIM match for at least half of the training "
    "patients, and the 95% interval lies above guessing",
    "moderate": "the true patient is the best SSIM match for at least 20% of the training "
    "patients and twice as often as guessing, and the 95% interval lies above guessing",
    "low": "fewer matches than that, against a decoder trained until it stopped improving",
    "not shown": "the study cannot tell: too few patients to tell the rate from guessing, or "
    "a decoder stopped by its budget (or not measured), whose rate is only a lower bound",
}


def _num(x) -> float | None:
    """A finite float, else ``None`` (JSON has no NaN)."""
    return None if x is None or not np.isfinite(x) else float(x)


def _mean_sd(values) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)], float)
    if v.size == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "n": int(v.size),
    }


def paper_figures(arch: str, variant: str) -> dict:
    """The paper's figures for one run (``None`` where the paper has none), as shown in the tables."""
    stripped = variant == "skull-stripped"
    t1 = PAPER_TABLE1.get((arch, variant))
    t2 = PAPER_TABLE2.get(arch) if stripped else None
    dice = PAPER_DICE.get(arch)
    return {
        "table1": {m: {"mean": a, "sd": b} for m, (a, b) in t1.items()} if t1 else None,
        "table2": {"own": t2[0], "others": t2[1]} if t2 else None,
        "table3_top1": dict(PAPER_TABLE3[arch]) if stripped and arch in PAPER_TABLE3 else None,
        "mean_rank": dict(PAPER_MEAN_RANK[arch]) if stripped and arch in PAPER_MEAN_RANK else None,
        "dice": {"original": dice[0], "reconstruction": dice[1]} if dice else None,
        "n_subjects": 40,
    }


def identification_risk(entry: dict) -> dict | None:
    """A run's identifiability risk by SSIM top-1 (``None`` without an SSIM ranking).

    ``level`` is ``"high"`` (top-1 in at least half of the ``n`` training patients),
    ``"moderate"`` (at least 20% and twice chance), else ``"low"``; high and moderate also
    need the Wilson 95% interval of the top-1 rate above chance (one in the number of
    candidates), else the level is ``"not shown"``. The attack's power (a decoder stopped by
    its budget) is applied by the caller (:func:`~.attack_power.qualify_risk`).
    """
    t = entry.get("table3", {}).get("ssim")
    if not t or not t.get("n"):
        return None
    n, k = t["n"], t["top1"]
    n_cand = len(t["rank_histogram"]) or 1
    chance = 1.0 / n_cand
    ci = t.get("top1_ci95") or list(wilson_interval(int(k), int(n)) or []) or None
    above = bool(ci) and ci[0] > chance
    if k >= 0.5 * n:
        level = "high"
    elif k >= max(2 * chance * n, 0.2 * n):
        level = "moderate"
    else:
        level = "low"
    if level != "low" and not above:
        level = "not shown"
    return {
        "level": level,
        "metric": "ssim",
        "top1": k,
        "n": n,
        "top1_ci95": ci,
        "top5": t["top5"],
        "n_candidates": n_cand,
        "chance": chance,
        "above_chance": above,
    }


def _cases(rows: Sequence[ScoreRow]) -> dict[str, dict]:
    """Best, median and worst reconstruction of one run by SSIM with the own original."""
    own = sorted(
        (r for r in rows if r["metric"] == "ssim" and r["reconstruction_id"] == r["candidate_id"]),
        key=lambda r: (-r["value"], r["reconstruction_id"]),
    )
    if not own:
        return {}
    deform = {
        r["reconstruction_id"]: r["value"]
        for r in rows
        if r["metric"] == "deformation" and r["reconstruction_id"] == r["candidate_id"]
    }
    picks = {"best": own[0], "median": own[len(own) // 2], "worst": own[-1]}
    return {
        label: {
            "id": r["reconstruction_id"],
            "fold": r["fold"],
            "ssim": r["value"],
            "deformation_mm": deform.get(r["reconstruction_id"]),
        }
        for label, r in picks.items()
    }


def _per_fold(table3: dict, fold_of: dict[str, int]) -> dict[str, dict[str, dict]]:
    """Top-1 count and ranked reconstructions per fold and metric (``{fold: {metric: {top1, n}}}``)."""
    out: dict[int, dict[str, dict]] = {}
    for metric, t in table3.items():
        for rid, rank in t["ranks"].items():
            if rank != rank:  # NaN: not ranked (true match missing or not computed)
                continue
            cell = out.setdefault(fold_of[rid], {}).setdefault(metric, {"top1": 0, "n": 0})
            cell["top1"] += int(rank == 1)
            cell["n"] += 1
    return {str(fold): out[fold] for fold in sorted(out)}


def _verification(matrix) -> dict:
    """Open-set verification over every computed (reconstruction, candidate) pair of ``matrix``."""
    v = open_set_verification(matrix)
    return {
        "auc": _num(v.auc),
        "tpr_at_1pct_fpr": _num(v.tpr_at_1pct_fpr),
        "verification_pairs": {"same": v.n_positive, "different": v.n_negative},
    }


def summarize_study(rows: Sequence[ScoreRow], holdout: Collection[str] = ()) -> dict:
    """All report numbers per run, as JSON-serialisable dicts (computed from ``scores.csv`` rows).

    Per run: ``table1`` (own-original mean/sd per metric), ``table2`` (own vs others SSIM),
    ``table3`` (per metric and ``fused``: top-1 with its Wilson 95% interval, top-5, mean
    rank, MRR, P@1, ranks; AUC and TPR at 1% FPR), ``folds`` (top-1 of n per fold and
    metric), ``dice``, ``cases`` (best/median/worst by own SSIM) and ``paper`` (the paper's figures).

    Reconstructions of ``holdout`` ids (non-members) are left out of every figure but the
    open-set verification: ``auc`` and ``tpr_at_1pct_fpr`` cover every computed
    (reconstruction, candidate) pair of the run, members and non-members;
    ``verification_pairs`` counts those pairs (same / different subject) and the run's
    ``nonmember_reconstructions`` the non-member reconstructions among them; ``fused`` has neither.
    """
    from ..matching import rank_candidates

    def ranking(m, s) -> dict:
        top1 = [ranked[0] if ranked else "" for ranked in rank_candidates(m)]
        return {
            "top1": int(s.top1),
            "top1_ci95": list(wilson_interval(int(s.top1), int(s.n)) or []) or None,
            "top5": int(s.top5),
            "n": int(s.n),
            "mean_rank": _num(s.mean_rank),
            "mrr": _num(s.mrr),
            "precision_at_1": _num(s.precision_at_1),
            "own_mean": float(s.own_mean),
            "others_mean": float(s.others_mean),
            "rank_histogram": [int(x) for x in s.rank_histogram],
            "ranks": {k: float(v) for k, v in zip(m.reconstruction_ids, s.ranks, strict=True)},
            "top1_candidates": dict(zip(m.reconstruction_ids, top1, strict=True)),
            "notes": list(s.notes),
        }

    hold = set(holdout)
    runs = {}
    for (arch, variant, threat, defence), everyone in rows_by_run(rows).items():
        rr = [r for r in everyone if r["reconstruction_id"] not in hold]
        if not rr:
            continue
        name = run_name(arch, variant, threat, defence)
        entry: dict = {
            "arch": arch,
            "variant": variant,
            "threat_model": threat,
            "defence": defence,
            "table1": {},
            "table3": {},
            # non-member reconstructions in the verification pairs (auc, tpr_at_1pct_fpr)
            "nonmember_reconstructions": len(
                {r["reconstruction_id"] for r in everyone} - {r["reconstruction_id"] for r in rr}
            ),
        }
        # the ranks of rankings/<run>.csv (one computation: study.rankings.rank_run)
        for metric, (m, s) in rank_run(rr).items():
            entry["table3"][metric] = ranking(m, s)
            if metric == "fused":
                entry["table3"][metric].update(auc=None, tpr_at_1pct_fpr=None)
                continue
            own = [
                r["value"]
                for r in rr
                if r["metric"] == metric and r["reconstruction_id"] == r["candidate_id"]
            ]
            entry["table1"][metric] = _mean_sd(own)
            both = score_matrix(everyone, metric) if len(rr) < len(everyone) else m
            entry["table3"][metric].update(_verification(both))
        if "ssim" in entry["table3"]:
            t = entry["table3"]["ssim"]
            entry["table2"] = {"own": t["own_mean"], "others": t["others_mean"]}
        dice = {
            kind: _mean_sd([r["value"] for r in rr if r["metric"] == f"dice_{kind}"])
            for kind in ("original", "reconstruction")
        }
        if dice["original"]["n"]:
            entry["dice"] = dice
        entry["folds"] = _per_fold(entry["table3"], {r["reconstruction_id"]: r["fold"] for r in rr})
        entry["cases"] = _cases(rr)
        entry["paper"] = paper_figures(arch, variant)
        runs[name] = entry
    return {"runs": runs}
