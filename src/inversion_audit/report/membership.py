"""The report's members vs non-members section and membership inference, from ``scores.csv``.

The runner writes ``holdout.json`` (the non-member ids, read through
:attr:`~inversion_audit.study.index.StudyIndex.holdout_ids`) when the study has a holdout;
every reconstruction whose id is listed there is a non-member, every other one a member. Both are
ranked in one gallery, so each metric's score matrix is the run's usual one.

Membership signals per subject, from the scores the pipeline already computes: the decoder's
reconstruction error (mean squared error, from the PSNR to the own original, data range 1) and
the target's loss on its own segmentation (1 - Dice of its segmentation of the original, where
labels exist), plus their cross-validated logistic combination.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from ..study.layout import run_name
from ..study.membership import compare_members, holm_adjusted
from ..study.membership_inference import membership_inference
from ..study.rankings import RANKED_METRICS, rows_by_run, score_matrix
from ..study.score_files import ScoreRow

__all__ = ["membership_summary", "membership_markdown", "membership_plain"]


def _signals(rows: Sequence[ScoreRow], members: list[str], nonmembers: list[str]) -> dict:
    own = {
        (r["metric"], r["reconstruction_id"]): r["value"]
        for r in rows
        if r["reconstruction_id"] == r["candidate_id"]
    }

    def series(metric: str, to_signal) -> tuple[np.ndarray, np.ndarray] | None:
        def get(ids: list[str]) -> np.ndarray:
            return np.array([to_signal(own.get((metric, i), np.nan)) for i in ids], dtype=float)

        m, n = get(members), get(nonmembers)
        return (m, n) if np.isfinite(m).any() and np.isfinite(n).any() else None

    out = {
        # higher = more likely a member: a small error, a small loss
        "reconstruction_error": series("psnr", lambda p: -(10.0 ** (-p / 10.0))),
        "segmentation_loss": series("dice_original", lambda d: -(1.0 - d)),
    }
    return {k: v for k, v in out.items() if v is not None}


def membership_summary(
    rows: Sequence[ScoreRow], holdout: Collection[str], n_boot: int = 2000
) -> dict:
    """Per run: members vs non-members per ranked metric, and membership inference.

    Empty when the study has no holdout or no holdout reconstruction was scored.
    """
    hold = set(holdout)
    out: dict = {}
    for (arch, variant, threat, defence), rr in rows_by_run(rows).items():
        recs = sorted({r["reconstruction_id"] for r in rr if r["metric"] == "ssim"})
        nonmembers = [i for i in recs if i in hold]
        members = [i for i in recs if i not in hold]
        if not nonmembers or not members:
            continue
        name = run_name(arch, variant, threat, defence)
        compared = {}
        for metric in RANKED_METRICS:
            m = score_matrix(rr, metric)
            if m is not None:
                compared[metric] = compare_members(m, members, nonmembers)
        metrics = {k: c.to_dict() for k, c in holm_adjusted(compared).items()}
        inference = membership_inference(_signals(rr, members, nonmembers), n_boot=n_boot)
        out[name] = {
            "n_members": len(members),
            "n_nonmembers": len(nonmembers),
            "metrics": metrics,
            "membership_inference": [s.to_dict() for s in inference],
        }
    return out


def _p(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def membership_plain(section: dict, metric: str = "ssim") -> list[str]:
    """One summary line per run: the verdict by ``metric`` (members vs non-members)."""
    return [
        f"- Who leaks ({run}): {e['metrics'][metric]['verdict']}"
        for run, e in section.items()
        if metric in e["metrics"]
    ]


def membership_markdown(section: dict) -> list[str]:
    """Markdown lines: per run, the members vs non-members table, verdicts and membership inference."""
    if not section:
        return []
    lines = [
        "## Who leaks: members vs non-members",
        "",
        "Members trained the target; non-members (the holdout) trained neither the target nor "
        "the decoder. All reconstructions are ranked in one gallery holding both. Difference: "
        "members' top-1 rate minus non-members', with Newcombe's 95% interval and a Fisher "
        "exact p-value (Holm-adjusted over the run's metrics in brackets; a member advantage is "
        "claimed only where the interval excludes zero and the adjusted p is below 0.05). Own: mean score to the own original. TPR@1%: open-set verification "
        "over all (reconstruction, candidate) pairs of the group.",
        "",
    ]
    for run, e in section.items():
        lines += [
            f"### {run} ({e['n_members']} members, {e['n_nonmembers']} non-members)",
            "",
            "| metric | top-1 members | top-1 non-members | difference [95% CI] | Fisher p | "
            "mean rank m / n | AUC m / n | TPR@1% m / n | own m / n |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for metric, c in e["metrics"].items():
            m, n = c["members"], c["nonmembers"]
            lo, hi = c["interval"] if c["interval"] else (None, None)
            diff = "–" if c["difference"] is None else f"{100 * c['difference']:+.0f}"
            ci = "" if lo is None else f" [{100 * lo:+.0f}, {100 * hi:+.0f}]"
            lines.append(
                f"| {metric} | {m['top1']}/{m['n']} | {n['top1']}/{n['n']} | {diff}{ci} | "
                f"{_f(c['fisher_p'], 2)} ({_f(c.get('fisher_p_holm'), 2)}) | {_f(m['mean_rank'], 1)} / {_f(n['mean_rank'], 1)} | "
                f"{_f(m['auc'])} / {_f(n['auc'])} | {_p(m['tpr_at_1pct_fpr'])} / "
                f"{_p(n['tpr_at_1pct_fpr'])} | {_f(m['own_mean'])} / {_f(n['own_mean'])} |"
            )
        lines += ["", *(f"- {c['verdict']}" for c in e["metrics"].values()), ""]
        if e["membership_inference"]:
            lines += [
                "Membership inference (members vs the holdout; higher signal = member; "
                "stratified bootstrap 95% intervals):",
                "",
                "| signal | AUC [95% CI] | TPR@1% FPR [95% CI] | TPR@10% FPR [95% CI] |",
                "|---|---|---|---|",
            ]
            for s in e["membership_inference"]:

                def ci(v, iv) -> str:
                    return f"{_p(v)} [{_p(iv[0])}, {_p(iv[1])}]" if iv else _p(v)

                auc_ci = s["auc_interval"] or [None, None]
                lines.append(
                    f"| {s['signal']} | {_f(s['auc'], 2)} [{_f(auc_ci[0], 2)}, {_f(auc_ci[1], 2)}] | "
                    f"{ci(s['tpr_at_1pct_fpr'], s['tpr_at_1pct_interval'])} | "
                    f"{ci(s['tpr_at_10pct_fpr'], s['tpr_at_10pct_interval'])} |"
                )
            lines += ["", *(f"- {s['sentence']}" for s in e["membership_inference"]), ""]
    return lines
