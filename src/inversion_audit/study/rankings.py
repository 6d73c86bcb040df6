"""The ranks of a study's runs, from its score rows: the rows of each run, a metric's score
matrix, where the true original ranks under each metric and fused, and ``rankings/<run>.csv``.

The report's numbers (:mod:`inversion_audit.report.summary`) are computed from the same
ranks, so the rankings the study writes and the report's Table 3 never disagree.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from ..io import atomic_write_text
from ..matching.ranking import METRIC_DIRECTIONS
from .layout import StudyPaths, run_name
from .score_files import RANKING_COLUMNS, ScoreRow

__all__ = ["RANKED_METRICS", "rank_run", "rows_by_run", "score_matrix", "write_rankings"]

#: metric -> higher is better (the one definition: :data:`inversion_audit.matching.METRIC_DIRECTIONS`)
RANKED_METRICS = METRIC_DIRECTIONS

RunKey = tuple[str, str, str, str]


def rows_by_run(rows: Sequence[ScoreRow]) -> dict[RunKey, list[ScoreRow]]:
    """Rows per run ``(arch, variant, threat_model, defence)``, in the order of their
    ``(arch, variant, threat_model[_defence])`` labels."""
    out: dict[RunKey, list[ScoreRow]] = defaultdict(list)
    for r in rows:
        out[(r["arch"], r["variant"], r["threat_model"], r.get("defence") or "")].append(r)

    def label(key: RunKey) -> tuple[str, str, str]:
        arch, variant, threat, defence = key
        return arch, variant, f"{threat}_{defence}" if defence else threat

    return dict(sorted(out.items(), key=lambda kv: label(kv[0])))


def score_matrix(rows: Sequence[ScoreRow], metric: str):
    """The :class:`~inversion_audit.matching.ScoreMatrix` of ``metric`` over one run's rows
    (``None`` when the run has no row of it)."""
    from ..matching import ScoreMatrix

    sel = [r for r in rows if r["metric"] == metric]
    if not sel:
        return None
    # every scored reconstruction, also one without rows of this metric (e.g. a constant
    # reconstruction skipped by deformation): its row stays NaN, so matrices can be fused
    rec = sorted(
        {r["reconstruction_id"] for r in rows if r["metric"] == "ssim"}
        | {r["reconstruction_id"] for r in sel}
    )
    cand = sorted(
        {r["candidate_id"] for r in rows if r["metric"] == "ssim"}
        | {r["candidate_id"] for r in sel}
    )
    values = np.full((len(rec), len(cand)), np.nan)
    ri, ci = {k: i for i, k in enumerate(rec)}, {k: i for i, k in enumerate(cand)}
    for r in sel:
        values[ri[r["reconstruction_id"]], ci[r["candidate_id"]]] = r["value"]
    return ScoreMatrix(metric, values, rec, cand, higher_is_better=RANKED_METRICS[metric])


def rank_run(rows: Sequence[ScoreRow]) -> dict[str, tuple]:
    """``{metric: (ScoreMatrix, MatchSummary)}`` of one run's rows: every ranked metric it
    scored, in :data:`RANKED_METRICS` order, then ``fused`` when the fused metrics were scored."""
    from ..matching import fused_rank, summarize

    matrices = {
        metric: m for metric in RANKED_METRICS if (m := score_matrix(rows, metric)) is not None
    }
    out = {metric: (m, summarize(m)) for metric, m in matrices.items()}
    fused = fused_rank(matrices)
    if fused is not None:
        out["fused"] = (fused, summarize(fused))
    return out


def write_rankings(
    paths: StudyPaths, rows: Sequence[ScoreRow], holdout: Collection[str] = ()
) -> list[Path]:
    """``rankings/<run>.csv`` of every run: the rank of the true original and the top-1
    candidate per metric (reconstructions of ``holdout`` ids are left out, as in the report's
    Table 3)."""
    from ..matching import rank_candidates

    hold = set(holdout)
    written = []
    for (arch, variant, threat, defence), everyone in rows_by_run(rows).items():
        members = [r for r in everyone if r["reconstruction_id"] not in hold]
        if not members:
            continue
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(RANKING_COLUMNS)
        for metric, (m, s) in rank_run(members).items():
            top1 = [ranked[0] if ranked else "" for ranked in rank_candidates(m)]
            for rid, rank, best in zip(m.reconstruction_ids, s.ranks, top1, strict=True):
                w.writerow([rid, metric, float(rank), best])
        run = run_name(arch, variant, threat, defence)
        written.append(atomic_write_text(paths.rankings(run), buf.getvalue()))
    return written
