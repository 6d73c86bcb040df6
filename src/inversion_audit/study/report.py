"""The study report: Tables 1-3 beside the paper's, retrieval figures, plots; HTML, Markdown, JSON."""

from __future__ import annotations

import html
import logging
from pathlib import Path

import numpy as np

from ..io import atomic_write_json, atomic_write_text
from .external_run import external_markdown
from .figures import (
    Figure,
    case_figure,
    own_vs_others_figure,
    rank_histogram_figure,
    verification_figure,
)
from .layout import StudyPaths
from .membership_report import (
    membership_markdown,
    membership_plain,
    membership_summary,
    read_holdout_ids,
)
from .score_files import read_scores
from .summary import RANKED_METRICS, summarize_study
from .tables import plain_summary, report_tables, tables_markdown

__all__ = [
    "read_scores",
    "summarize_study",
    "report_tables",
    "tables_markdown",
    "plain_summary",
    "write_report",
    "RANKED_METRICS",
    "PAPER_SOURCE",
]

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


# -- figures ---------------------------------------------------------------------------------------
def _deformation_preset(study_dir: Path, config) -> str:
    """The study's ``matching.deformation_preset`` (from ``config`` or ``config.toml``; else "fast")."""
    if config is not None:
        return config.matching.deformation_preset
    try:
        from .config import load_study_config

        return load_study_config(study_dir / "config.toml").matching.deformation_preset
    except Exception:
        return "fast"


def _figures(study_dir: Path, rows: list[dict], summary: dict, preset: str) -> dict[str, Figure]:
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
                fig = case_figure(study_dir, name, e, label, case, preset, scored)
            except Exception as exc:  # a figure must never stop the report
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


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #bbb;padding:3px 7px;text-align:right}
th{background:#eee}td:first-child{text-align:left}img{max-width:100%}h2{border-bottom:1px solid #ccc}"""


def _md_to_html(lines: list[str]) -> str:
    out, table = [], []

    def flush() -> None:
        if not table:
            return
        head = [c.strip() for c in table[0].strip("|").split("|")]
        body = [[c.strip() for c in row.strip("|").split("|")] for row in table[2:]]
        out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
        for row in body:
            out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>")
        out.append("</table>")
        table.clear()

    for line in lines:
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("- "):
            out.append(f"<p>{_inline(line[2:])}</p>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)


def _inline(text: str) -> str:
    import re

    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))


def write_report(study_dir: str | Path, config=None) -> dict:
    """Write ``report.md``, ``report.html`` (self-contained) and ``report.json`` into the study folder.

    ``report.json`` holds the per-run summary (``runs``: tables' numbers, retrieval and
    verification figures, Dice, the paper's figures, best/median/worst cases), the
    plain-language summary, the tables' cells and the figure captions.
    Returns the paths (keys ``md``, ``html``, ``json``) and the ``summary`` dict.
    """
    study_dir = Path(study_dir)
    rows = read_scores(StudyPaths(study_dir).scores)
    # non-members (the holdout) are candidates in every table but reconstructions only in
    # their own section and in Table 3's open-set verification (AUC, TPR@1% FPR: all pairs),
    # so the tables stay about the target's training patients
    holdout = read_holdout_ids(study_dir)
    summary = summarize_study(rows, holdout)
    membership = membership_summary(rows, holdout)
    title = (
        f"Model inversion audit: {config.study.name}"
        if config is not None
        else "Model inversion audit"
    )
    from .tradeoff import privacy_utility, tradeoff_figure, tradeoff_markdown

    tradeoff = privacy_utility(study_dir, summary, membership)
    summary_lines = plain_summary(summary) + membership_plain(membership)
    summary_lines += [f"- {answer}" for answer in tradeoff["answers"]]
    md = [
        f"# {title}",
        "",
        *external_markdown(study_dir),
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
    extra = study_dir / "reader_study" / "reader_study.md"
    if extra.exists():
        md += ["", *extra.read_text().splitlines()]
    md += ["", *tradeoff_markdown(tradeoff)] if tradeoff["rows"] else []
    figs = _figures(study_dir, rows, summary, _deformation_preset(study_dir, config))
    if tradeoff["rows"]:
        figs["privacy_utility"] = tradeoff_figure(tradeoff)
    html_body = _md_to_html(md)
    md += ["", "## Figures (embedded in report.html)", ""]
    md += [f"- {k}: {f.caption}" for k, f in figs.items()]
    imgs = "\n".join(
        f"<figure><h3>{html.escape(k.replace('_', ' ', 1))}</h3>"
        f"<img alt='{html.escape(k)}' src='data:image/png;base64,{f.png}'>"
        f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
        for k, f in figs.items()
    )
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>{html_body}<h2>Figures</h2>{imgs}</body></html>"
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
    paths = {
        "md": atomic_write_text(study_dir / "report.md", "\n".join(md) + "\n"),
        "html": atomic_write_text(study_dir / "report.html", page),
        "json": atomic_write_json(study_dir / "report.json", _json_clean(document)),
    }
    return {**paths, "summary": summary}
