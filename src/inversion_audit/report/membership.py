"""The report's members vs non-members section and membership inference, from ``scores.csv``.

The runner writes ``holdout.json`` (the non-member ids, read through
:attr:`~inversion_audit.study.index.StudyIndex.holdout_ids`) when the study has a holdout;
every reconstruction whose id is listed there is a non-member, every other one a member. Both are
ranked in one gallery, so each metric's score matrix is the run's usual one.

Membership signals per subject, from the scores the pipeline already computes: the decoder's
reconstruction error (mean squared error, from the PSNR to the own original, data range 1) and
the target's loss on its own segmentation (1 - Dice of its segmentation of the original, where
labels exist), plus their cross-validated logistic combination.

With the record-loss stage's records (:meth:`~inversion_audit.study.index.StudyIndex.record_losses`)
the section adds, under ``reference_models``, membership inference with reference models: offline
RMIA (Zarifzadeh et al., ICML 2024) and offline LiRA (Carlini et al., IEEE S&P 2022) with the
study's other fold targets as the models that did not train on a record, beside the loss threshold
on the same records (:mod:`inversion_audit.study.rmia`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from ..study.layout import run_name
from ..study.membership import compare_members, holm_adjusted
from ..study.membership_inference import membership_inference
from ..study.rankings import RANKED_METRICS, rows_by_run, score_matrix
from ..study.rmia import reference_attacks
from ..study.score_files import ScoreRow

__all__ = ["REFERENCE_KEY", "membership_summary", "membership_markdown", "membership_plain"]

#: the section's key of membership inference with reference models (never a run name)
REFERENCE_KEY = "reference_models"


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
    rows: Sequence[ScoreRow],
    holdout: Collection[str],
    n_boot: int = 2000,
    record_losses: Sequence[dict] | None = None,
) -> dict:
    """Per run: members vs non-members per ranked metric, and membership inference; with
    ``record_losses`` (:meth:`~inversion_audit.study.index.StudyIndex.record_losses`), under
    :data:`REFERENCE_KEY`, RMIA, LiRA and the loss thresholds per target architecture and
    variant (:func:`~inversion_audit.study.rmia.reference_attacks`).

    Empty when the study has no holdout (or no holdout reconstruction was scored) and no
    record losses.
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
    reference = reference_attacks(record_losses or [], n_boot=n_boot)
    if reference:
        out[REFERENCE_KEY] = reference
    return out


def _runs(section: dict) -> dict:
    return {k: v for k, v in section.items() if k != REFERENCE_KEY}


def _p(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def membership_plain(section: dict, metric: str = "ssim") -> list[str]:
    """One summary line per run: the verdict by ``metric`` (members vs non-members)."""
    lines = [
        f"- Who leaks ({run}): {e['metrics'][metric]['verdict']}"
        for run, e in _runs(section).items()
        if metric in e["metrics"]
    ]
    for e in section.get(REFERENCE_KEY, {}).values():
        by = {a["attack"]: a for a in e["attacks"]}
        rmia, loss = by["RMIA (offline)"], by["loss threshold (cross-entropy)"]
        lines.append(
            f"- Membership inference with reference models ({e['arch']} {e['variant']}): "
            f"RMIA AUC {_auc(rmia)}, TPR at 1% FPR {_p(rmia['tpr_at_1pct_fpr'])}; the loss "
            f"threshold on the same records AUC {_auc(loss)} "
            f"({e['n_members']} member and {e['n_nonmembers']} non-member records)."
        )
    return lines


def _auc(a: dict) -> str:
    lo, hi = a["auc_interval"] or (None, None)
    return f"{_f(a['auc'], 2)} [{_f(lo, 2)}, {_f(hi, 2)}]"


def _ci(v: float | None, iv: list | None) -> str:
    return f"{_p(v)} [{_p(iv[0])}, {_p(iv[1])}]" if iv else _p(v)


def reference_markdown(section: dict) -> list[str]:
    """Markdown lines of membership inference with reference models (empty without it)."""
    reference = section.get(REFERENCE_KEY, {})
    if not reference:
        return []
    first = next(iter(reference.values()))
    lines = [
        "## Membership inference with reference models (RMIA)",
        "",
        "Each fold's target is attacked with the study's other fold targets as reference models "
        "that did not train on the record: offline RMIA (Zarifzadeh et al., ICML 2024; "
        f"a = {first['offline_a']}, γ = {first['gamma']}, population: the target's other "
        "non-member records) and offline LiRA (Carlini et al., IEEE S&P 2022; a Gaussian of the "
        "reference models' logit-scaled likelihood, one variance per target; records with two "
        "or more reference models), beside the loss threshold on the same records. Members: "
        "each target's own training subjects; non-members: the subjects it never saw (the "
        "holdout and the other folds' subjects); records pooled over the folds. Signal: the "
        "target's mean log-probability of the true labels inside the head (or brain) mask "
        "(its mean cross-entropy, negated). Intervals: stratified bootstrap, 95%.",
        "",
    ]
    for e in reference.values():
        lo, hi = e["n_references"]
        refs = f"{lo}" if lo == hi else f"{lo} to {hi}"
        folds = ", ".join(str(f) for f in e["folds"])
        lines += [
            f"### {e['arch']} {e['variant']} (folds {folds}; {e['n_members']} member and "
            f"{e['n_nonmembers']} non-member records, {e['n_holdout_records']} of them the "
            f"holdout's; {refs} reference models per record)",
            "",
            "| attack | members / non-members | AUC [95% CI] | TPR@1% FPR [95% CI] | "
            "TPR@0.1% FPR [95% CI] |",
            "|---|---|---|---|---|",
        ]
        for a in e["attacks"]:
            lines.append(
                f"| {a['attack']} | {a['n_members']} / {a['n_nonmembers']} | {_auc(a)} | "
                f"{_ci(a['tpr_at_1pct_fpr'], a['tpr_at_1pct_interval'])} | "
                f"{_ci(a['tpr_at_0_1pct_fpr'], a['tpr_at_0_1pct_interval'])} |"
            )
        lines += ["", f"- {e['resolution']}", ""]
    return lines


def membership_markdown(section: dict) -> list[str]:
    """Markdown lines: per run, the members vs non-members table, verdicts and membership
    inference; then membership inference with reference models (:func:`reference_markdown`)."""
    runs = _runs(section)
    if not runs:
        return reference_markdown(section)
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
    for run, e in runs.items():
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
                lines.append(
                    f"| {s['signal']} | {_auc(s)} | "
                    f"{_ci(s['tpr_at_1pct_fpr'], s['tpr_at_1pct_interval'])} | "
                    f"{_ci(s['tpr_at_10pct_fpr'], s['tpr_at_10pct_interval'])} |"
                )
            lines += ["", *(f"- {s['sentence']}" for s in e["membership_inference"]), ""]
    return lines + reference_markdown(section)
