"""The report's tables as cells: Tables 1-3, top-1 per fold and Dice, each beside the paper's figures."""

from __future__ import annotations

from .summary import RANKED_METRICS, paper_figures

__all__ = ["plain_summary", "report_tables", "tables_markdown"]


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


def _table3_title(runs: dict) -> str:
    """Table 3's title, saying which reconstructions and pairs each column covers."""
    nonmembers = any(e.get("nonmember_reconstructions") for e in runs.values())
    who = "members' and non-members' reconstructions" if nonmembers else "reconstructions"
    return (
        "Table 3: identification (top-1 matches, top-5, mean rank of the true original"
        f"{' of the members' if nonmembers else ''}); AUC and TPR@1% FPR: open-set verification "
        f"over every (reconstruction, candidate) pair of the run's {who}, same subject vs "
        "different subject (deformation: the pairs it scored; TPR at zero false positives "
        "where a run has under 100 different-subject pairs)"
    )


def report_tables(summary: dict) -> dict[str, dict]:
    """Tables 1 to 3 and Dice as ``{"title", "columns", "rows"}`` of the cells shown in the report.

    The paper's figures sit beside each study figure; ``"–"`` marks a cell without a value.
    The Dice table is present only when some run scored Dice.
    """
    runs = summary["runs"]
    t1 = []
    for name, e in runs.items():
        t, paper = e["table1"], (e.get("paper") or paper_figures(e["arch"], e["variant"]))["table1"]
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
        t, paper = e.get("table2", {}), (e.get("paper") or paper_figures(e["arch"], e["variant"]))
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
        paper = e.get("paper") or paper_figures(e["arch"], e["variant"])
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
                    _f(t.get("tpr_at_1pct_fpr")),
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
            _table3_title(runs),
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
                "TPR@1% FPR",
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
        p = (e.get("paper") or paper_figures(e["arch"], e["variant"]))["dice"] or {}
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
        chance = n / n_cand
        level = "high" if k >= 0.5 * n else "moderate" if k >= max(2 * chance, 0.2 * n) else "low"
        metric, b = max(e["table3"].items(), key=lambda kv: kv[1]["top1"])
        of = f"{b['n']}" if b["n"] == n else f"the {b['n']} it ranked"
        out.append(
            f"- **{name}**: an attacker holding only the encoder's latent codes re-identified **{k} of {n}** private "
            f"subjects as the best SSIM match (guessing among {n_cand} candidates would find about "
            f"{chance:.2g}); the true subject was among the top 5 for {t['top5']} of {n}. "
            f"Identifiability risk: **{level}**. The most identifying metric was {metric} ({b['top1']} of {of})."
        )
    return out
