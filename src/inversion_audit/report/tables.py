"""The report's tables as cells: Tables 1-3, top-1 per fold and Dice, each beside the paper's
figures; in Markdown with each figure after the table it explains."""

from __future__ import annotations

from collections.abc import Collection

from ..study.defences_config import format_strength, parse_defence_tag
from .figures import figure_slot
from .summary import RANKED_METRICS, identification_risk, paper_figures

__all__ = [
    "TABLE_HEADINGS",
    "defence_words",
    "plain_summary",
    "report_tables",
    "run_title",
    "tables_markdown",
]

_ARCH_WORDS = {"unet": "U-Net", "segnet": "SegNet", "external": "External model"}
_THREAT_WORDS = {"bottleneck": "bottleneck", "bottleneck+skips": "bottleneck and skip features"}
_DEFENCE_WORDS = {
    "dp-sgd": ("DP-SGD", "noise multiplier"),
    "latent-noise": ("latent noise", "σ"),
    "obfuscation": ("obfuscation", "levels"),
}

#: the Markdown heading of each table (the text before the title's first colon, as linked to)
TABLE_HEADINGS = {
    "table1": "Table 1: reconstruction quality",
    "table2": "Table 2: SSIM with own original vs other subjects",
    "table3": "Table 3: identification of the true original",
    "per_fold": "Identification per fold",
    "dice": "Dice of the target network",
}


def defence_words(tag: str | None) -> str:
    """A defence tag in words: ``"latent-noise-0.5"`` -> ``"latent noise σ 0.5"``,
    ``"obfuscation-8-known"`` -> ``"obfuscation 8 levels, attacker knows the domain"``."""
    if not tag:
        return "no defence"
    try:
        kind, strength, quantise, known = parse_defence_tag(tag)
    except ValueError:
        return tag
    name, unit = _DEFENCE_WORDS.get(kind, (kind, ""))
    value = format_strength(strength)
    if quantise:
        text = f"{name} quantised to {value} levels"
    elif unit == "levels":
        text = f"{name} {value} levels"
    else:
        text = f"{name} {unit} {value}".replace("  ", " ")
    if known is not None:
        text += ", attacker knows the domain" if known else ", attacker does not know the domain"
    return text


def run_title(entry: dict) -> str:
    """A run in words: ``"U-Net, skull-stripped, bottleneck"`` (and its defence, if any)."""
    parts = [
        _ARCH_WORDS.get(entry["arch"], entry["arch"]),
        entry["variant"],
        _THREAT_WORDS.get(entry["threat_model"], entry["threat_model"]),
    ]
    if entry.get("defence"):
        parts.append(defence_words(entry["defence"]))
    return ", ".join(parts)


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


def _table(title: str, columns: list[str], rows: list[list[str]], note: str = "") -> dict:
    out = {"title": title, "columns": columns, "rows": rows}
    return {**out, "note": note} if note else out


def table3_note(runs: dict) -> str:
    """What Table 3's columns cover (the note below the table)."""
    nonmembers = any(e.get("nonmember_reconstructions") for e in runs.values())
    who = "members' and non-members' reconstructions" if nonmembers else "reconstructions"
    return (
        "Top-1: how often the true original is the best match among all candidates; top-5 "
        "and mean rank likewise"
        f"{' (members only)' if nonmembers else ''}; 95% CI: Wilson interval of the top-1 "
        "rate. AUC and TPR@1% FPR: open-set verification over every (reconstruction, "
        f"candidate) pair of the run's {who}, same subject vs different subject (deformation: "
        "the pairs it scored; TPR at zero false positives where a run has under 100 "
        "different-subject pairs)."
    )


def report_tables(summary: dict) -> dict[str, dict]:
    """Tables 1 to 3 and Dice as ``{"title", "columns", "rows"}`` of the cells shown in the report
    (and ``"note"``, what the columns cover, printed under the table, where there is one).

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
            f"{TABLE_HEADINGS['table1']} (mean ± sd, reconstruction vs own original)",
            ["run", "n", "correlation", "SSIM", "PSNR", "paper correlation", "paper SSIM"],
            t1,
        ),
        "table2": _table(
            TABLE_HEADINGS["table2"],
            ["run", "own", "others", "paper own", "paper others"],
            t2,
        ),
        "table3": _table(
            TABLE_HEADINGS["table3"],
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
            table3_note(runs),
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
            f"{TABLE_HEADINGS['per_fold']} (top-1 matches of the fold's private subjects)",
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
            f"{TABLE_HEADINGS['dice']}: originals vs reconstructions",
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


#: per table: (what the figures show, their key prefixes) of the per-run figures after it
_TABLE_FIGURES = {
    "table1": (
        ("best, median and worst reconstruction", ("case_best_", "case_median_", "case_worst_")),
    ),
    "table2": (("SSIM with its own original vs other subjects", ("box_",)),),
    "table3": (
        ("rank of the true original", ("ranks_",)),
        ("same subject or not (verification)", ("roc_",)),
    ),
}


def table_figures(summary: dict, table: str, figures: Collection[str]) -> list[str]:
    """Markdown lines placing the per-run figures that explain ``table``: per run and kind of
    figure a heading in words, then the figures' slots; empty when none of them exists."""
    lines: list[str] = []
    for name, e in summary["runs"].items():
        for what, prefixes in _TABLE_FIGURES.get(table, ()):
            keys = [f"{prefix}{name}" for prefix in prefixes if f"{prefix}{name}" in figures]
            if keys:
                lines += ["", f"### {run_title(e)}: {what}", ""]
                lines += [figure_slot(key) for key in keys]
    return lines


def tables_markdown(summary: dict, figures: Collection[str] = ()) -> list[str]:
    """Tables 1 to 3 and Dice as Markdown lines, each with the paper's figures beside it and
    the figures (keys in ``figures``) that explain it after it."""
    lines: list[str] = []
    for key, table in report_tables(summary).items():
        if lines:
            lines.append("")
        lines += [f"## {table['title']}", ""]
        lines.append("| " + " | ".join(table["columns"]) + " |")
        lines.append("|" + "---|" * len(table["columns"]))
        lines += ["| " + " | ".join(row) + " |" for row in table["rows"]]
        if table.get("note"):
            lines += ["", table["note"]]
        lines += table_figures(summary, key, figures)
    return lines


def plain_summary(summary: dict) -> list[str]:
    """A few sentences a data officer can read (Markdown list items); the risk level is
    :func:`~.summary.identification_risk`'s."""
    out = []
    for name, e in summary["runs"].items():
        risk = identification_risk(e)
        if risk is None:
            continue
        t = e["table3"]["ssim"]
        n, k = t["n"], t["top1"]
        n_cand = risk["n_candidates"]
        chance = n / n_cand
        metric, b = max(e["table3"].items(), key=lambda kv: kv[1]["top1"])
        of = f"{b['n']}" if b["n"] == n else f"the {b['n']} it ranked"
        out.append(
            f"- **{name}**: an attacker holding only the encoder's latent codes re-identified **{k} of {n}** private "
            f"subjects as the best SSIM match (guessing among {n_cand} candidates would find about "
            f"{chance:.2g}); the true subject was among the top 5 for {t['top5']} of {n}. "
            f"Identifiability risk: **{risk['level']}**. The most identifying metric was {metric} ({b['top1']} of {of})."
        )
    return out
