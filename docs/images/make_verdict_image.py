"""Draw the report's verdict (page 1 of ``report.pdf``: the verdict cards and "What to do")
as ``docs/images/verdict-card.png``, for the README.

Usage (the bundled demo study by default; any scored study folder otherwise)::

    .venv/bin/python docs/images/make_verdict_image.py [STUDY]

The study is copied to a temporary folder and its report written there
(:func:`inversion_audit.report.write_report`), so the study itself is left as it was; the
picture is page 1 as :func:`inversion_audit.report.pdf.draw_page_one` lays it out, cropped
to what it holds.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "verdict-card.png"


def main(study: Path = ROOT / "sample_data" / "demo_study", out: Path = OUT) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from inversion_audit.io import atomic_path
    from inversion_audit.report import write_report
    from inversion_audit.report.pdf import draw_page_one

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "study"
        shutil.copytree(study, copy, ignore=shutil.ignore_patterns("report.*"))
        written = write_report(copy)
        lines = Path(written["md"]).read_text(encoding="utf-8").splitlines()
    title = lines[0].removeprefix("# ")
    fig = draw_page_one(title, lines)
    with atomic_path(out) as tmp_png:
        fig.savefig(tmp_png, format="png", dpi=110, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(main(*(Path(a) for a in sys.argv[1:2])))
