"""The study report: the verdict and what to do, then Tables 1-3 beside the paper's, each with
the figures that explain it; HTML, Markdown, JSON and PDF.

Everything it shows is read from the study folder through
:class:`~inversion_audit.study.index.StudyIndex` (the one reader of a study). The report is
assembled once as Markdown lines (:mod:`.html` says which); ``report.html``, ``report.md``
and ``report.pdf`` are three renderings of them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence

import numpy as np

from ..errors import InversionAuditError
from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..study.index import StudyIndex
from ..study.score_files import ScoreRow
from .advice import advice, advice_markdown
from .attack_power_section import attack_power_report
from .case_figure import DISPLAY_FAILURES, case_figure
from .external import external_markdown
from .figures import (
    Figure,
    figure_slot,
    own_vs_others_figure,
    rank_histogram_figure,
    verification_figure,
)
from .html import Slugger, html_page, report_markdown
from .membership import membership_markdown, membership_plain, membership_summary
from .pdf import report_pdf
from .summary import RANKED_METRICS, summarize_study
from .tables import TABLE_HEADINGS, plain_summary, report_tables, run_title, tables_markdown
from .tradeoff import privacy_utility, tradeoff_figure, tradeoff_markdown
from .verdict import condense_membership, verdict_cards, verdict_markdown

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
    study: StudyIndex,
    rows: Sequence[ScoreRow],
    summary: dict,
    preset: str,
    registration: str = "ants",
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
                fig = case_figure(study, name, e, label, case, preset, scored, registration)
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


#: the sections a card or a recommendation links to: key -> (heading it starts with, name)
SECTIONS = {
    "table3": (f"## {TABLE_HEADINGS['table3']}", "Table 3"),
    "membership": ("## Who leaks", "members vs non-members"),
    "reference": ("## Membership inference with reference models", "reference models"),
    "privacy_utility": ("## Privacy–utility", "privacy–utility"),
    "attack_power": ("## Attack power", "attack power"),
}
#: which section each item of a verdict card comes from
_CARD_LINKS = {
    "risk": "table3",
    "who_leaks": "membership",
    "attacker_effort": "attack_power",
    "best_defence": "privacy_utility",
}
_PLACEHOLDER = re.compile(r"#@([a-z_0-9]+)")
_LINKED = re.compile(r" \(\[[^\]]+\]\(#@([a-z_0-9]+)\)\)")


def _anchors(lines: list[str]) -> dict[str, str]:
    """``{key: "#anchor"}`` of each :data:`SECTIONS` heading present in ``lines`` (anchors
    as :func:`~.html.md_to_html` gives them, in page order)."""
    slugger, found = Slugger(), {}
    for line in lines:
        m = re.match(r"^(#{1,6}) +(.*?) *#* *$", line)
        if not m:
            continue
        anchor = slugger(m.group(2))
        for key, (prefix, _) in SECTIONS.items():
            if line.startswith(prefix):
                found.setdefault(key, f"#{anchor}")
    return found


def _resolve(lines: list[str], anchors: dict[str, str]) -> list[str]:
    """Links to ``#@key`` pointed at their section's anchor; a link to a section the report
    does not have is dropped with its brackets."""

    def drop(m: re.Match) -> str:
        return m.group(0) if m.group(1) in anchors else ""

    out = []
    for line in lines:
        line = _LINKED.sub(drop, line)
        out.append(_PLACEHOLDER.sub(lambda m: anchors.get(m.group(1), "#"), line))
    return out


def _reword(lines: list[str], titles: dict[str, str]) -> list[str]:
    """Headings that start with a run id start with the run in words instead."""
    out = []
    for line in lines:
        m = re.match(r"^(#{1,6} +)(\S+?)(:| |$)(.*)$", line)
        if m and m.group(2) in titles:
            line = f"{m.group(1)}{titles[m.group(2)]}{m.group(3)}{m.group(4)}"
        out.append(line)
    return out


def _contents(lines: list[str]) -> list[str]:
    """The table of contents: a link to every ``## `` heading of ``lines`` after it."""
    slugger, items, after = Slugger(), [], False
    for line in lines:
        m = re.match(r"^(#{1,6}) +(.*?) *#* *$", line)
        if not m:
            continue
        anchor = slugger(m.group(2))
        if line == "## Contents":
            after = True
        elif after and len(m.group(1)) == 2:
            items.append(f"- [{m.group(2)}](#{anchor})")
    return items


def write_report(study: str | os.PathLike[str] | StudyIndex) -> dict:
    """Write ``report.md``, ``report.html`` (self-contained), ``report.json`` and
    ``report.pdf`` into a scored study folder (``study``: the folder or its :class:`StudyIndex`).

    The report opens with the verdict (one card per audited model and threat model:
    :func:`~.verdict.verdict_cards`) and "What to do" (:func:`~.advice.advice`), then a
    table of contents and the sections, each figure after the table it explains.
    ``report.json`` holds the per-run summary (``runs``: tables' numbers, retrieval and
    verification figures, Dice, the paper's figures, best/median/worst cases), the
    ``verdict`` cards, the ``advice``, the plain-language summary, the tables' cells and the
    figure captions. Returns the paths (keys ``md``, ``html``, ``json``, ``pdf``) and the
    ``summary`` dict.
    Raises :class:`~inversion_audit.errors.StudyError` when the study has no ``scores.csv``.
    """
    index = study if isinstance(study, StudyIndex) else StudyIndex(study)
    rows = index.score_table()
    # non-members (the holdout) are candidates in every table but reconstructions only in
    # their own section and in Table 3's open-set verification (AUC, TPR@1% FPR: all pairs),
    # so the tables stay about the target's training patients
    holdout = index.holdout_ids
    summary = summarize_study(rows, holdout)
    membership = membership_summary(rows, holdout, record_losses=index.record_losses())
    config = _config(index)
    title = (
        f"Model inversion audit: {config.study.name}"
        if config is not None
        else "Model inversion audit"
    )
    tradeoff = privacy_utility(index.utility_records(), summary, membership)
    power = attack_power_report(index, summary)  # decoders' training; the lower-bound rule
    summary_lines = power.qualify(plain_summary(summary)) + membership_plain(membership)
    summary_lines += [f"- {answer}" for answer in tradeoff["answers"]]
    titles = {name: run_title(e) for name, e in summary["runs"].items()}
    preset = config.matching.deformation_preset if config is not None else "fast"
    registration = config.matching.registration if config is not None else "ants"
    figs = _figures(index, rows, summary, preset, registration)
    if tradeoff["rows"]:
        figs["privacy_utility"] = tradeoff_figure(tradeoff)
    figs.update(power.figures)

    body = [
        *external_markdown(index.external_record()),
        "## Summary",
        "",
        *summary_lines,
        "",
        *tables_markdown(summary, figs),
        "",
        "AUC: same-subject vs different-subject pairs as a verification score. MRR: mean "
        f"reciprocal rank. P@1: precision at 1. Paper figures: {PAPER_SOURCE}.",
        "",
        *condense_membership(membership_markdown(membership), membership),
    ]
    reader_study = index.reader_study_section()
    if reader_study:
        body += ["", *reader_study]
    if tradeoff["rows"]:
        body += ["", *tradeoff_markdown(tradeoff), "", figure_slot("privacy_utility")]
    body += ["", *power.markdown, "", *(figure_slot(k) for k in power.figures)]

    links = {item: f"#@{key}" for item, key in _CARD_LINKS.items()}
    cards = verdict_cards(summary, membership, tradeoff, power.runs, links)
    items = advice(cards, membership)
    placeholders = {key: f"#@{key}" for key in SECTIONS}
    labels = {key: name for key, (_, name) in SECTIONS.items()}
    md = [
        f"# {title}",
        "",
        *verdict_markdown(cards),
        *advice_markdown(items, placeholders, labels),
        "## Contents",
        "",
        "",
        *body,
    ]
    md = _reword(md, titles)
    anchors = _anchors(md)
    md = _resolve(md, anchors)
    at = md.index("## Contents") + 2
    md[at:at] = _contents(md)
    for card in cards:
        card["links"] = {k: anchors.get(v[2:]) for k, v in card["links"].items()}
    for item in items:
        item["anchor"] = anchors.get(item["link"])

    document = {
        **summary,
        "title": title,
        "verdict": cards,
        "advice": items,
        "summary_text": [_plain_text(line) for line in summary_lines],
        "tables": report_tables(summary),
        "figures": {k: f.caption for k, f in figs.items()},
        "paper_source": PAPER_SOURCE,
        **({"privacy_utility": tradeoff} if tradeoff["rows"] else {}),
        "membership": membership,
        "attack_power": power.record,
    }
    paths = index.paths
    written = {
        "md": atomic_write_text(paths.report("md"), report_markdown(md, figs)),
        "html": atomic_write_text(paths.report("html"), html_page(title, md, figs)),
        "json": atomic_write_json(paths.report("json"), _json_clean(document)),
        "pdf": atomic_write_bytes(paths.report("pdf"), report_pdf(title, md, figs)),
    }
    return {**written, "summary": summary}
