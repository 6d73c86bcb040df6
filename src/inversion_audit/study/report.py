"""The study report: Tables 1-3 beside the paper's, retrieval figures, plots; HTML, Markdown, JSON."""

from __future__ import annotations

import csv
import html
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..io import atomic_write_json, atomic_write_text
from ..stats import wilson_interval
from .figures import (
    Figure,
    case_figure,
    own_vs_others_figure,
    rank_histogram_figure,
    verification_figure,
)
from .paper import PAPER_DICE, PAPER_MEAN_RANK, PAPER_TABLE1, PAPER_TABLE2, PAPER_TABLE3

__all__ = [
    "load_scores",
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

#: metric -> higher is better
RANKED_METRICS = {
    "ssim": True,
    "correlation": True,
    "psnr": True,
    "deformation": False,
    "ssim_brain": True,
    "correlation_brain": True,
}


def load_scores(path: str | Path) -> list[dict]:
    """Read the long-format ``scores.csv``."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["value"] = float(r["value"])
        r["fold"] = int(r["fold"])
    return rows


def _runs(rows: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    out: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in rows:
        out[(r["arch"], r["variant"], r["threat_model"])].append(r)
    return dict(sorted(out.items()))


def _matrix(rows: list[dict], metric: str):
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


def _num(x) -> float | None:
    """A finite float, else ``None`` (JSON has no NaN)."""
    return None if x is None or not np.isfinite(x) else float(x)


def _json_clean(obj):
    """``obj`` with every non-finite float replaced by ``None``, so the JSON is strict."""
    if isinstance(obj, dict):
        return {k: _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _mean_sd(values) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)], float)
    if v.size == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "n": int(v.size),
    }


def _paper(arch: str, variant: str) -> dict:
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


def _cases(rows: list[dict]) -> dict[str, dict]:
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


def summarize_study(rows: list[dict]) -> dict:
    """All report numbers per run, as JSON-serialisable dicts (computed from ``scores.csv`` rows).

    Per run: ``table1`` (own-original mean/sd per metric), ``table2`` (own vs others SSIM),
    ``table3`` (per metric and ``fused``: top-1 with its Wilson 95% interval, top-5, mean
    rank, MRR, P@1, AUC, ranks), ``folds`` (top-1 of n per fold and metric), ``dice``, ``cases`` (best/median/worst by own SSIM) and ``paper`` (the paper's figures).
    """
    from ..matching import fuse_rankings, rank_candidates, summarize

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
            "auc": _num(s.auc),
            "own_mean": float(s.own_mean),
            "others_mean": float(s.others_mean),
            "rank_histogram": [int(x) for x in s.rank_histogram],
            "ranks": {k: float(v) for k, v in zip(m.reconstruction_ids, s.ranks, strict=True)},
            "top1_candidates": dict(zip(m.reconstruction_ids, top1, strict=True)),
            "notes": list(s.notes),
        }

    runs = {}
    for (arch, variant, threat), rr in _runs(rows).items():
        name = f"{arch}_{variant}_{threat.replace('+', '-')}"
        entry: dict = {
            "arch": arch,
            "variant": variant,
            "threat_model": threat,
            "table1": {},
            "table3": {},
        }
        matrices = {}
        for metric in RANKED_METRICS:
            m = _matrix(rr, metric)
            if m is None:
                continue
            matrices[metric] = m
            s = summarize(m)
            own = [
                r["value"]
                for r in rr
                if r["metric"] == metric and r["reconstruction_id"] == r["candidate_id"]
            ]
            entry["table1"][metric] = _mean_sd(own)
            entry["table3"][metric] = ranking(m, s)
        if "ssim" in matrices and "deformation" in matrices:
            fused = fuse_rankings([matrices["ssim"], matrices["deformation"]])
            entry["table3"]["fused"] = ranking(fused, summarize(fused))
            entry["table3"]["fused"]["auc"] = None
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
        entry["paper"] = _paper(arch, variant)
        runs[name] = entry
    return {"runs": runs}


# -- tables --------------------------------------------------------------------------------------
def _f(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ms(d: dict | None, digits: int = 3) -> str:
    if not d or d.get("mean") is None:
        return "–"
    return f"{d['mean']:.{digits}f} ± {d['sd']:.{digits}f}"


def _ci(interval: list[float] | None) -> str:
    """A proportion's interval in percent, e.g. ``60–86%``."""
    if not interval:
        return "–"
    return f"{100 * interval[0]:.0f}–{100 * interval[1]:.0f}%"


def _table(title: str, columns: list[str], rows: list[list[str]]) -> dict:
    return {"title": title, "columns": columns, "rows": rows}


def report_tables(summary: dict) -> dict[str, dict]:
    """Tables 1 to 3 and Dice as ``{"title", "columns", "rows"}`` of the cells shown in the report.

    The paper's figures sit beside each study figure; ``"–"`` marks a cell without a value.
    The Dice table is present only when some run scored Dice.
    """
    runs = summary["runs"]
    t1 = []
    for name, e in runs.items():
        t, paper = e["table1"], (e.get("paper") or _paper(e["arch"], e["variant"]))["table1"]
        t1.append(
            [
                name,
                str(t.get("ssim", {}).get("n", 0)),
                _ms(t.get("correlation")),
                _ms(t.get("ssim")),
                _ms(t.get("psnr")),
                _ms(paper and paper.get("correlation"), 2),
                _ms(paper and paper.get("ssim"), 2),
            ]
        )
    t2 = []
    for name, e in runs.items():
        t, paper = e.get("table2", {}), (e.get("paper") or _paper(e["arch"], e["variant"]))
        p = paper["table2"] or {}
        t2.append(
            [
                name,
                _f(t.get("own")),
                _f(t.get("others")),
                _f(p.get("own"), 2),
                _f(p.get("others"), 2),
            ]
        )
    t3 = []
    for name, e in runs.items():
        paper = e.get("paper") or _paper(e["arch"], e["variant"])
        p_top1, p_rank = paper["table3_top1"] or {}, paper["mean_rank"] or {}
        for metric, t in e["table3"].items():
            p, pr = p_top1.get(metric), p_rank.get(metric)
            t3.append(
                [
                    name,
                    metric,
                    str(t["top1"]),
                    _ci(t.get("top1_ci95")),
                    str(t["top5"]),
                    str(t["n"]),
                    _f(t["mean_rank"], 2),
                    _f(t["mrr"]),
                    _f(t["precision_at_1"]),
                    _f(t["auc"]),
                    "–" if p is None else str(p),
                    "–" if pr is None else str(pr),
                ]
            )
    tables = {
        "table1": _table(
            "Table 1: reconstruction quality (mean ± sd, reconstruction vs own original)",
            ["run", "n", "correlation", "SSIM", "PSNR", "paper correlation", "paper SSIM"],
            t1,
        ),
        "table2": _table(
            "Table 2: SSIM with own original vs with other subjects",
            ["run", "own", "others", "paper own", "paper others"],
            t2,
        ),
        "table3": _table(
            "Table 3: identification (top-1 matches, top-5, mean rank of the true original)",
            [
                "run",
                "metric",
                "top-1",
                "top-1 95% CI",
                "top-5",
                "n",
                "mean rank",
                "MRR",
                "P@1",
                "AUC",
                "paper top-1 (of 40)",
                "paper mean rank",
            ],
            t3,
        ),
    }
    fold_metrics = [
        m
        for m in (*RANKED_METRICS, "fused")
        if any(m in f for e in runs.values() for f in e.get("folds", {}).values())
    ]
    per_fold = [
        [name, fold] + [f"{c[m]['top1']} of {c[m]['n']}" if m in c else "–" for m in fold_metrics]
        for name, e in runs.items()
        for fold, c in e.get("folds", {}).items()
    ]
    if per_fold:
        tables["per_fold"] = _table(
            "Identification per fold (top-1 matches of the fold's private subjects)",
            ["run", "fold", *fold_metrics],
            per_fold,
        )
    dice = []
    for name, e in runs.items():
        if "dice" not in e:
            continue
        p = (e.get("paper") or _paper(e["arch"], e["variant"]))["dice"] or {}
        dice.append(
            [
                name,
                _ms(e["dice"]["original"]),
                _ms(e["dice"]["reconstruction"]),
                _f(p.get("original"), 2),
                _f(p.get("reconstruction"), 2),
            ]
        )
    if dice:
        tables["dice"] = _table(
            "Dice of the target network: originals vs reconstructions",
            [
                "run",
                "Dice original",
                "Dice reconstruction",
                "paper original",
                "paper reconstruction",
            ],
            dice,
        )
    return tables


def tables_markdown(summary: dict) -> list[str]:
    """Tables 1 to 3 and Dice as Markdown lines, each with the paper's figures beside it."""
    lines: list[str] = []
    for table in report_tables(summary).values():
        if lines:
            lines.append("")
        lines += [f"## {table['title']}", ""]
        lines.append("| " + " | ".join(table["columns"]) + " |")
        lines.append("|" + "---|" * len(table["columns"]))
        lines += ["| " + " | ".join(row) + " |" for row in table["rows"]]
    return lines


def plain_summary(summary: dict) -> list[str]:
    """A few sentences a data officer can read (Markdown list items)."""
    out = []
    for name, e in summary["runs"].items():
        t = e["table3"].get("ssim")
        if not t:
            continue
        n, k = t["n"], t["top1"]
        n_cand = len(t["rank_histogram"]) or 1
        chance = n / max(n_cand, 1)
        level = "high" if k >= 0.5 * n else "moderate" if k >= max(2 * chance, 0.2 * n) else "low"
        best = max(e["table3"].items(), key=lambda kv: kv[1]["top1"])
        out.append(
            f"- **{name}**: an attacker holding only the encoder's latent codes re-identified **{k} of {n}** private "
            f"subjects as the best SSIM match (chance: {chance:.2g} of {n}, one in {n_cand} candidates); "
            f"the true subject was among the top 5 for "
            f"{t['top5']} of {n}. Identifiability risk: **{level}**. The most identifying metric was {best[0]} "
            f"({best[1]['top1']} of {n})."
        )
    return out


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
            if (r["arch"], r["variant"], r["threat_model"])
            == (e["arch"], e["variant"], e["threat_model"])
        ]
        ssim_rows = [r for r in run_rows if r["metric"] == "ssim"]
        own = [r["value"] for r in ssim_rows if r["reconstruction_id"] == r["candidate_id"]]
        others = [r["value"] for r in ssim_rows if r["reconstruction_id"] != r["candidate_id"]]
        if own and others:
            figs[f"box_{name}"] = own_vs_others_figure(name, own, others)
        pairs = {}
        for metric in ("ssim", "correlation", "psnr", "ssim_brain", "correlation_brain"):
            # not deformation: only the top-k pairs have it
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
    rows = load_scores(study_dir / "scores" / "scores.csv")
    summary = summarize_study(rows)
    title = (
        f"Model inversion audit: {config.study.name}"
        if config is not None
        else "Model inversion audit"
    )
    summary_lines = plain_summary(summary)
    md = [
        f"# {title}",
        "",
        "## Summary",
        "",
        *summary_lines,
        "",
        *tables_markdown(summary),
        "",
    ]
    md += [
        "AUC: same-subject vs different-subject pairs as a verification score. MRR: mean reciprocal rank. "
        f"P@1: precision at 1. Paper figures: {PAPER_SOURCE}.",
    ]
    extra = study_dir / "reader_study" / "reader_study.md"
    if extra.exists():
        md += ["", *extra.read_text().splitlines()]
    figs = _figures(study_dir, rows, summary, _deformation_preset(study_dir, config))
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
    }
    paths = {
        "md": atomic_write_text(study_dir / "report.md", "\n".join(md) + "\n"),
        "html": atomic_write_text(study_dir / "report.html", page),
        "json": atomic_write_json(study_dir / "report.json", _json_clean(document)),
    }
    return {**paths, "summary": summary}
