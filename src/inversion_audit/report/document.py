"""The study report: Tables 1-3 beside the paper's, retrieval figures, plots; HTML, Markdown, JSON.

Everything it shows is read from the study folder through
:class:`~inversion_audit.study.index.StudyIndex` (the one reader of a study).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from ..errors import InversionAuditError
from ..io import atomic_write_json, atomic_write_text
from ..study.index import StudyIndex
from ..study.score_files import ScoreRow
from .case_figure import DISPLAY_FAILURES, case_figure
from .external import external_markdown
from .figures import Figure, own_vs_others_figure, rank_histogram_figure, verification_figure
from .html import html_page
from .membership import membership_markdown, membership_plain, membership_summary
from .summary import RANKED_METRICS, summarize_study
from .tables import plain_summary, report_tables, tables_markdown
from .tradeoff import privacy_utility, tradeoff_figure, tradeoff_markdown

__all__ = ["PAPER_SOURCE", "write_report"]

log = logging.getLogger(__name__)

PAPER_SOURCE = "Subbanna et al., Sensors 2021 (LPBA40, 40 subjects, 4 folds)"


def _json_clean(obj):
    """``obj`` with every non-finite float replaced by ``None``, so the JSON is strict."""
    if isinstance(obj, dict):
        return {k: _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _plain_text(line: str) -> str:
    """A Markdown list item as plain text."""
    text = line[2:] if line.startswith("- ") else line
    return text.replace("**", "")


def _config(study: StudyIndex):
    """The study's config, ``None`` when ``config.toml`` is missing or unreadable (a folder
    written by ``inversion-audit match``): the report then has a plain title and shows
    deformation with the "fast" preset."""
    try:
        return study.config()
    except InversionAuditError as exc:
        log.info("report without the study config: %s", exc)
        return None


# -- figures ---------------------------------------------------------------------------------------
def _figures(
    study: StudyIndex, rows: Sequence[ScoreRow], summary: dict, preset: str
) -> dict[str, Figure]:
    """Every figure of the report, keyed ``ranks_<run>``, ``box_<run>``, ``roc_<run>``, ``case_<label>_<run>``."""
    import matplotlib

    matplotlib.use("Agg")

    figs: dict[str, Figure] = {}
    for name, e in summary["runs"].items():
        figs[f"ranks_{name}"] = rank_histogram_figure(name, e)
        run_rows = [
            r
            for r in rows
            if (r["arch"], r["variant"], r["threat_model"], r["defence"])
            == (e["arch"], e["variant"], e["threat_model"], e["defence"])
        ]
        ssim_rows = [r for r in run_rows if r["metric"] == "ssim"]
        own = [r["value"] for r in ssim_rows if r["reconstruction_id"] == r["candidate_id"]]
        others = [r["value"] for r in ssim_rows if r["reconstruction_id"] != r["candidate_id"]]
        if own and others:
            figs[f"box_{name}"] = own_vs_others_figure(name, own, others)
        pairs = {}
        # every ranked metric but deformation, which only the SSIM top-k pairs have
        for metric in (m for m in RANKED_METRICS if m != "deformation"):
            sel = [r for r in run_rows if r["metric"] == metric]
            same = [r["value"] for r in sel if r["reconstruction_id"] == r["candidate_id"]]
            diff = [r["value"] for r in sel if r["reconstruction_id"] != r["candidate_id"]]
            if same and diff:
                pairs[metric] = (same, diff, RANKED_METRICS[metric])
        if pairs:
            figs[f"roc_{name}"] = verification_figure(name, pairs)
        scored = any(r["metric"] == "deformation" for r in run_rows)
        for label, case in e.get("cases", {}).items():
            try:
                fig = case_figure(study, name, e, label, case, preset, scored)
            except DISPLAY_FAILURES as exc:  # a figure must never stop the report
                log.warning("case figure %s %s: %s", name, label, exc)
                case["figure"] = f"not available: {type(exc).__name__}: {exc}"
                continue
            if fig is None:
                case["figure"] = "not available: original or reconstruction missing"
                continue
            figs[f"case_{label}_{name}"] = fig
            case["figure"] = f"case_{label}_{name}"
            case["deformation_display"] = fig.info["deformation"]
            case["slice_voxel"] = fig.info["slice_voxel"]
    return figs


def write_report(study: str | os.PathLike[str] | StudyIndex) -> dict:
    """Write ``report.md``, ``report.html`` (self-contained) and ``report.json`` into a scored
    study folder (``study``: the folder or its :class:`StudyIndex`).

    ``report.json`` holds the per-run summary (``runs``: tables' numbers, retrieval and
    verification figures, Dice, the paper's figures, best/median/worst cases), the
    plain-language summary, the tables' cells and the figure captions.
    Returns the paths (keys ``md``, ``html``, ``json``) and the ``summary`` dict.
    Raises :class:`~inversion_audit.errors.StudyError` when the study has no ``scores.csv``.
    """
    index = study if isinstance(study, StudyIndex) else StudyIndex(study)
    rows = index.score_table()
    # non-members (the holdout) are candidates in every table but reconstructions only in
    # their own section and in Table 3's open-set verification (AUC, TPR@1% FPR: all pairs),
    # so the tables stay about the target's training patients
    holdout = index.holdout_ids
    summary = summarize_study(rows, holdout)
    membership = membership_summary(rows, holdout)
    config = _config(index)
    title = (
        f"Model inversion audit: {config.study.name}"
        if config is not None
        else "Model inversion audit"
    )
    tradeoff = privacy_utility(index.utility_records(), summary, membership)
    summary_lines = plain_summary(summary) + membership_plain(membership)
    summary_lines += [f"- {answer}" for answer in tradeoff["answers"]]
    md = [
        f"# {title}",
        "",
        *external_markdown(index.external_record()),
        "## Summary",
        "",
        *summary_lines,
        "",
        *tables_markdown(summary),
        "",
        *membership_markdown(membership),
    ]
    md += [
        "AUC: same-subject vs different-subject pairs as a verification score. MRR: mean reciprocal rank. "
        f"P@1: precision at 1. Paper figures: {PAPER_SOURCE}.",
    ]
    reader_study = index.reader_study_section()
    if reader_study:
        md += ["", *reader_study]
    md += ["", *tradeoff_markdown(tradeoff)] if tradeoff["rows"] else []
    preset = config.matching.deformation_preset if config is not None else "fast"
    figs = _figures(index, rows, summary, preset)
    if tradeoff["rows"]:
        figs["privacy_utility"] = tradeoff_figure(tradeoff)
    page = html_page(title, md, figs)
    md += ["", "## Figures (embedded in report.html)", ""]
    md += [f"- {k}: {f.caption}" for k, f in figs.items()]
    document = {
        **summary,
        "title": title,
        "summary_text": [_plain_text(line) for line in summary_lines],
        "tables": report_tables(summary),
        "figures": {k: f.caption for k, f in figs.items()},
        "paper_source": PAPER_SOURCE,
        **({"privacy_utility": tradeoff} if tradeoff["rows"] else {}),
        "membership": membership,
    }
    paths = index.paths
    written = {
        "md": atomic_write_text(paths.report("md"), "\n".join(md) + "\n"),
        "html": atomic_write_text(paths.report("html"), page),
        "json": atomic_write_json(paths.report("json"), _json_clean(document)),
    }
    return {**written, "summary": summary}
