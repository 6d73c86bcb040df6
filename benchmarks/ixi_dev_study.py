"""Tables 1 to 3 of the ixi-dev study from the runs finished so far, and its compute time.

The study (``inversion-audit run configs/ixi-dev.toml --out studies/ixi-dev``) takes many
hours on 2 CPU cores and is resumed across sessions. This script reads the score parts
that exist (one per fold, architecture, variant and threat model), ranks them as the
report does, and sums the recorded wall time of every finished stage. It prints Markdown
for ``docs/results-ixi-dev.md`` and writes ``benchmarks/results/ixi_dev_study.json``.

Usage: .venv/bin/python benchmarks/ixi_dev_study.py [--study studies/ixi-dev]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from _common import ROOT, write_results

from inversion_audit.study.report import load_scores, summarize_study, tables_markdown


def stage_seconds(study: Path) -> dict[str, float]:
    """Recorded wall seconds per finished stage, summed by kind (preprocess, target, ...)."""
    kinds: dict[str, float] = defaultdict(float)
    for rec in sorted((study / "stages").glob("*.json")):
        data = json.loads(rec.read_text())
        name = data["name"]
        kind = "preprocess" if name.startswith("preprocess/") else name.split("/")[-1]
        kinds[kind] += float(data.get("seconds", 0.0))
    return dict(kinds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--study", default=str(ROOT / "studies" / "ixi-dev"))
    args = ap.parse_args()
    study = Path(args.study)
    parts = sorted((study / "scores" / "parts").glob("*.csv"))
    rows = [r for p in parts for r in load_scores(p)]
    summary = summarize_study(rows) if rows else {"runs": {}}
    seconds = stage_seconds(study)
    total = sum(seconds.values())
    print(f"score parts: {len(parts)} ({', '.join(p.stem for p in parts)})")
    print(
        f"stage wall time: {total / 3600:.2f} h ({', '.join(f'{k} {v / 60:.0f} min' for k, v in sorted(seconds.items()))})"
    )
    print()
    print("\n".join(tables_markdown(summary)))
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
