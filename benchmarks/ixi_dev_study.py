"""Tables 1 to 3 of the ixi-dev study from the runs finished so far, and its compute time.

The study (``inversion-audit run configs/ixi-dev.toml --out studies/ixi-dev``) takes many
hours on 2 CPU cores and is resumed across sessions. This script reads the score parts
that exist (one per fold, architecture, variant and threat model), ranks them as the
report does, and sums the recorded wall time of every finished stage. It prints Markdown
for ``docs/results-ixi-dev.md`` (the report's tables, then one table in the paper's layout:
the four architecture x variant runs side by side, each beside the paper's figure) and writes
``benchmarks/results/ixi_dev_study.json``.

Usage: .venv/bin/python benchmarks/ixi_dev_study.py [--study studies/ixi-dev]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from _common import ROOT, write_results

from inversion_audit.report import summarize_study, tables_markdown
from inversion_audit.study.layout import StudyPaths
from inversion_audit.study.paper import (
    PAPER_DICE,
    PAPER_MEAN_RANK,
    PAPER_TABLE1,
    PAPER_TABLE2,
    PAPER_TABLE3,
)
from inversion_audit.study.score_files import read_scores

RUNS = (
    ("unet", "skull-stripped"),
    ("segnet", "skull-stripped"),
    ("unet", "with-skull"),
    ("segnet", "with-skull"),
)
NAMES = {"unet": "U-Net", "segnet": "SegNet"}


def stage_seconds(study: Path) -> dict[str, float]:
    """Recorded wall seconds per finished stage, summed by kind (preprocess, target, ...)."""
    kinds: dict[str, float] = defaultdict(float)
    for rec in sorted(StudyPaths(study).stages_dir.glob("*.json")):
        data = json.loads(rec.read_text())
        name = data["name"]
        kind = "preprocess" if name.startswith("preprocess/") else name.split("/")[-1]
        kinds[kind] += float(data.get("seconds", 0.0))
    return dict(kinds)


def _pm(d: dict | None, digits: int = 3) -> str:
    return (
        "–" if not d or d.get("mean") is None else f"{d['mean']:.{digits}f} ± {d['sd']:.{digits}f}"
    )


def _cell(ours: str, paper: str | None) -> str:
    return ours if paper is None else f"{ours} ({paper})"


def paper_layout(summary: dict) -> list[str]:
    """One Markdown table, rows as in the paper's Tables 1-3 and Dice, columns the four runs;
    each cell is this study's figure with the paper's in parentheses."""
    runs = {(e["arch"], e["variant"]): e for e in summary["runs"].values()}
    present = [r for r in RUNS if r in runs]
    if not present:
        return []
    head = [f"{NAMES[a]}, {v} (n = {runs[(a, v)]['table3']['ssim']['n']})" for a, v in present]
    rows: list[list[str]] = []

    def row(label: str, fn) -> None:
        rows.append([label] + [fn(a, v, runs[(a, v)]) for a, v in present])

    def paper_pm(a: str, v: str, metric: str) -> str | None:
        p = PAPER_TABLE1.get((a, v), {}).get(metric)
        return None if p is None else f"{p[0]:.2f} ± {p[1]:.2f}"

    for metric, label in (("ssim", "Table 1: SSIM"), ("correlation", "Table 1: correlation")):
        row(label, lambda a, v, e, m=metric: _cell(_pm(e["table1"].get(m)), paper_pm(a, v, m)))
    row("PSNR (dB)", lambda a, v, e: _pm(e["table1"].get("psnr"), 1))

    def own_others(a: str, v: str, e: dict) -> str:
        t = e.get("table2") or {}
        p = PAPER_TABLE2.get(a) if v == "skull-stripped" else None
        ours = f"{t['own']:.3f} vs {t['others']:.3f}" if t else "–"
        return _cell(ours, None if p is None else f"{p[0]:.2f} vs {p[1]:.2f}")

    row("Table 2: SSIM own vs others", own_others)
    for metric in ("ssim", "deformation", "correlation", "psnr", "fused"):

        def top1(a: str, v: str, e: dict, m: str = metric) -> str:
            t = e["table3"].get(m)
            if not t:
                return "–"
            p = PAPER_TABLE3.get(a, {}).get(m) if v == "skull-stripped" else None
            lo, hi = t.get("top1_ci95") or (0.0, 0.0)
            ours = f"**{t['top1']} / {t['n']}** [{100 * lo:.0f}–{100 * hi:.0f}%]"
            return _cell(ours, None if p is None else f"{p} / 40")

        row(f"Table 3: top-1 by {metric}", top1)
    for metric in ("ssim", "deformation"):

        def mean_rank(a: str, v: str, e: dict, m: str = metric) -> str:
            t = e["table3"].get(m)
            p = PAPER_MEAN_RANK.get(a, {}).get(m) if v == "skull-stripped" else None
            ours = "–" if not t or t["mean_rank"] is None else f"{t['mean_rank']:.2f}"
            return _cell(ours, None if p is None else f"{p}")

        row(f"mean rank of the true original: {metric}", mean_rank)

    def retrieval(a: str, v: str, e: dict) -> str:
        t = e["table3"]["ssim"]
        return f"{t['mrr']:.3f} / {t['precision_at_1']:.3f} / {t['auc']:.3f}"

    row("MRR / P@1 / AUC (SSIM)", retrieval)

    def dice(a: str, v: str, e: dict) -> str:
        d = e.get("dice")
        if not d:
            return "–"
        p = PAPER_DICE.get(a) if v == "skull-stripped" else None
        ours = f"{d['original']['mean']:.3f}; {d['reconstruction']['mean']:.3f}"
        return _cell(ours, None if p is None else f"{p[0]:.2f}; {p[1]:.2f}")

    row("Dice of the target: originals; reconstructions", dice)
    lines = ["| | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--study", default=str(ROOT / "studies" / "ixi-dev"))
    args = ap.parse_args()
    study = Path(args.study)
    parts = sorted(StudyPaths(study).score_parts_dir.glob("*.csv"))
    rows = [r for p in parts for r in read_scores(p)]
    summary = summarize_study(rows) if rows else {"runs": {}}
    seconds = stage_seconds(study)
    total = sum(seconds.values())
    print(f"score parts: {len(parts)} ({', '.join(p.stem for p in parts)})")
    print(
        f"stage wall time: {total / 3600:.2f} h ({', '.join(f'{k} {v / 60:.0f} min' for k, v in sorted(seconds.items()))})"
    )
    print()
    print("\n".join(tables_markdown(summary)))
    print()
    print("## In the paper's layout (this study; the paper's figure in parentheses)")
    print()
    print("\n".join(paper_layout(summary)))
    write_results(
        "ixi_dev_study",
        {
            "command": "benchmarks/ixi_dev_study.py --study " + args.study,
            "score_parts": [p.stem for p in parts],
            "stage_seconds": seconds,
            "total_stage_seconds": total,
            "summary": summary,
        },
    )


if __name__ == "__main__":
    main()
