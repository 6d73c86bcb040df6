"""The study report: Tables 1-3 beside the paper's, retrieval figures, plots; HTML, Markdown, JSON."""

from __future__ import annotations

import base64
import csv
import html
import io
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..io import atomic_write_json, atomic_write_text
from .paper import PAPER_DICE, PAPER_MEAN_RANK, PAPER_TABLE1, PAPER_TABLE2, PAPER_TABLE3

__all__ = [
    "load_scores",
    "summarize_study",
    "tables_markdown",
    "plain_summary",
    "write_report",
    "RANKED_METRICS",
]

#: metric -> higher is better
RANKED_METRICS = {"ssim": True, "correlation": True, "psnr": True, "deformation": False}


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
    rec = sorted({r["reconstruction_id"] for r in sel})
    cand = sorted(
        {r["candidate_id"] for r in rows if r["metric"] == "ssim"}
        | {r["candidate_id"] for r in sel}
    )
    values = np.full((len(rec), len(cand)), np.nan)
    ri, ci = {k: i for i, k in enumerate(rec)}, {k: i for i, k in enumerate(cand)}
    for r in sel:
        values[ri[r["reconstruction_id"]], ci[r["candidate_id"]]] = r["value"]
    return ScoreMatrix(metric, values, rec, cand, higher_is_better=RANKED_METRICS[metric])


def _mean_sd(values) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)], float)
    if v.size == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "n": int(v.size),
    }


def summarize_study(rows: list[dict]) -> dict:
    """All report numbers per run, as JSON-serialisable dicts (computed from ``scores.csv`` rows)."""
    from ..matching import fuse_rankings, rank_candidates, summarize

    def ranking(m, s) -> dict:
        top1 = [ranked[0] if ranked else "" for ranked in rank_candidates(m)]
        return {
            "top1": int(s.top1),
            "top5": int(s.top5),
            "n": int(s.n),
            "mean_rank": float(s.mean_rank),
            "mrr": float(s.mrr),
            "precision_at_1": float(s.precision_at_1),
            "auc": None if s.auc is None or not np.isfinite(s.auc) else float(s.auc),
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
        runs[name] = entry
    return {"runs": runs}


# -- formatting ------------------------------------------------------------------------------------
def _f(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ms(d: dict | None) -> str:
    if not d or d.get("mean") is None:
        return "–"
    return f"{d['mean']:.3f} ± {d['sd']:.3f}"


def tables_markdown(summary: dict) -> list[str]:
    """Tables 1 to 3 and Dice as Markdown lines, each with the paper's figures beside it."""
    lines = ["## Table 1: reconstruction quality (mean ± sd, reconstruction vs own original)", ""]
    lines += [
        "| run | n | correlation | SSIM | PSNR | paper correlation | paper SSIM |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in summary["runs"].items():
        t1 = e["table1"]
        paper = PAPER_TABLE1.get((e["arch"], e["variant"]), {})
        pc = "{:.2f} ± {:.2f}".format(*paper["correlation"]) if paper else "–"
        ps = "{:.2f} ± {:.2f}".format(*paper["ssim"]) if paper else "–"
        n = t1.get("ssim", {}).get("n", 0)
        lines.append(
            f"| {name} | {n} | {_ms(t1.get('correlation'))} | {_ms(t1.get('ssim'))} | {_ms(t1.get('psnr'))} | {pc} | {ps} |"
        )
    lines += ["", "## Table 2: SSIM with own original vs with other subjects", ""]
    lines += ["| run | own | others | paper own | paper others |", "|---|---|---|---|---|"]
    for name, e in summary["runs"].items():
        t2 = e.get("table2", {})
        p = PAPER_TABLE2.get(e["arch"]) if e["variant"] == "skull-stripped" else None
        lines.append(
            f"| {name} | {_f(t2.get('own'))} | {_f(t2.get('others'))} | {_f(p[0], 2) if p else '–'} | {_f(p[1], 2) if p else '–'} |"
        )
    lines += [
        "",
        "## Table 3: identification (top-1 matches, top-5, mean rank of the true original)",
        "",
    ]
    lines += [
        "| run | metric | top-1 | top-5 | n | mean rank | MRR | P@1 | AUC | paper top-1 (of 40) | paper mean rank |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in summary["runs"].items():
        for metric, t in e["table3"].items():
            p = (
                PAPER_TABLE3.get(e["arch"], {}).get(metric)
                if e["variant"] == "skull-stripped"
                else None
            )
            pr = (
                PAPER_MEAN_RANK.get(e["arch"], {}).get(metric)
                if e["variant"] == "skull-stripped"
                else None
            )
            lines.append(
                f"| {name} | {metric} | {t['top1']} | {t['top5']} | {t['n']} | {_f(t['mean_rank'], 2)} | {_f(t['mrr'])} | "
                f"{_f(t['precision_at_1'])} | {_f(t['auc'])} | {p if p is not None else '–'} | {pr if pr is not None else '–'} |"
            )
    if any("dice" in e for e in summary["runs"].values()):
        lines += ["", "## Dice of the target network: originals vs reconstructions", ""]
        lines += [
            "| run | Dice original | Dice reconstruction | paper original | paper reconstruction |",
            "|---|---|---|---|---|",
        ]
        for name, e in summary["runs"].items():
            if "dice" not in e:
                continue
            p = PAPER_DICE.get(e["arch"])
            lines.append(
                f"| {name} | {_ms(e['dice']['original'])} | {_ms(e['dice']['reconstruction'])} | {_f(p[0], 2)} | {_f(p[1], 2)} |"
            )
    return lines


def plain_summary(summary: dict) -> list[str]:
    """A few sentences a data officer can read."""
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


# -- figures ---------------------------------------------------------------------------------------
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _figures(study_dir: Path, rows: list[dict], summary: dict) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs: dict[str, str] = {}
    for name, e in summary["runs"].items():
        metrics = [m for m in e["table3"]]
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 2.6), squeeze=False)
        for ax, m in zip(axes[0], metrics, strict=True):
            h = e["table3"][m]["rank_histogram"]
            ax.bar(np.arange(1, len(h) + 1), h, color="#4477aa")
            ax.set_title(f"{m}: rank of true original", fontsize=9)
            ax.set_xlabel("rank")
            ax.set_xlim(0.5, min(len(h), 15) + 0.5)
        figs[f"ranks_{name}"] = _png(fig)
        run_rows = [
            r
            for r in rows
            if (r["arch"], r["variant"], r["threat_model"])
            == (e["arch"], e["variant"], e["threat_model"])
            and r["metric"] == "ssim"
        ]
        own = [r["value"] for r in run_rows if r["reconstruction_id"] == r["candidate_id"]]
        others = [r["value"] for r in run_rows if r["reconstruction_id"] != r["candidate_id"]]
        if own and others:
            fig, ax = plt.subplots(figsize=(3.2, 2.6))
            ax.boxplot([own, others])
            ax.set_xticks([1, 2], ["own original", "other subjects"])
            ax.set_ylabel("SSIM")
            ax.set_title(name, fontsize=8)
            figs[f"box_{name}"] = _png(fig)
        slices = _slice_figure(study_dir, name, e)
        if slices:
            figs[f"slices_{name}"] = slices
    return figs


def _slice_figure(study_dir: Path, name: str, entry: dict) -> str | None:
    """Orthogonal slices (original, reconstruction, SSIM map, deformation) of best/median/worst."""
    import matplotlib.pyplot as plt

    from ..io import read_volume
    from ..metrics import ssim

    t = entry["table3"].get("ssim")
    own = entry["table1"].get("ssim")
    if not t or not own or not own["n"]:
        return None
    scores_path = study_dir / "scores" / "scores.csv"
    rows = [
        r
        for r in load_scores(scores_path)
        if r["metric"] == "ssim"
        and r["reconstruction_id"] == r["candidate_id"]
        and (r["arch"], r["variant"], r["threat_model"])
        == (entry["arch"], entry["variant"], entry["threat_model"])
    ]
    rows.sort(key=lambda r: -r["value"])
    picks = {"best": rows[0], "median": rows[len(rows) // 2], "worst": rows[-1]}
    fig, axes = plt.subplots(3, 4, figsize=(10, 7.2))
    for row_ax, (label, r) in zip(axes, picks.items(), strict=True):
        sid = r["reconstruction_id"]
        orig_p = study_dir / "preprocessed" / entry["variant"] / f"{sid}.nii.gz"
        rec_p = study_dir / "reconstructions" / name / f"{sid}_recon_pre.nii.gz"
        if not (orig_p.exists() and rec_p.exists()):
            return None
        orig, rec = read_volume(orig_p).array, read_volume(rec_p).array
        _, smap = ssim(rec, orig, data_range=1.0, return_map=True)
        dpath = study_dir / "deformation" / name / f"{sid}__{sid}_magnitude.nii.gz"
        panels = [
            ("original", orig, "gray"),
            ("reconstruction", rec, "gray"),
            ("SSIM map", smap, "viridis"),
        ]
        panels.append(
            ("deformation (mm)", read_volume(dpath).array if dpath.exists() else None, "magma")
        )
        for ax, (title, vol, cmap) in zip(row_ax, panels, strict=True):
            ax.axis("off")
            if vol is None:
                ax.set_title(f"{title}: not in top-k", fontsize=8)
                continue
            z = vol.shape[2] // 2
            ax.imshow(np.rot90(vol[:, :, z]), cmap=cmap)
            ax.set_title(
                f"{label}: {title}"
                + (f" (SSIM {r['value']:.2f})" if title == "reconstruction" else ""),
                fontsize=8,
            )
    return _png(fig)


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
    md = [
        f"# {title}",
        "",
        "## Summary",
        "",
        *plain_summary(summary),
        "",
        *tables_markdown(summary),
        "",
    ]
    md += [
        "AUC: same-subject vs different-subject pairs as a verification score. MRR: mean reciprocal rank. "
        "P@1: precision at 1. Paper figures: Subbanna et al., Sensors 2021 (LPBA40, 40 subjects, 4 folds).",
    ]
    extra = study_dir / "reader_study" / "reader_study.md"
    if extra.exists():
        md += ["", *extra.read_text().splitlines()]
    figs = _figures(study_dir, rows, summary)
    html_body = _md_to_html(md)
    imgs = "\n".join(
        f"<h3>{html.escape(k.replace('_', ' ', 1))}</h3><img alt='{html.escape(k)}' src='data:image/png;base64,{v}'>"
        for k, v in figs.items()
    )
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>{html_body}<h2>Figures</h2>{imgs}</body></html>"
    paths = {
        "md": atomic_write_text(study_dir / "report.md", "\n".join(md) + "\n"),
        "html": atomic_write_text(study_dir / "report.html", page),
        "json": atomic_write_json(study_dir / "report.json", summary),
    }
    return {**paths, "summary": summary}
