"""The study report: per-run numbers, tables, figures, members vs non-members, the
privacy–utility trade-off; written as ``report.md``, ``report.html`` and ``report.json``.

The layer above :mod:`inversion_audit.study`: it reads a study folder only through
:class:`~inversion_audit.study.index.StudyIndex` and writes only the report's files
(:meth:`~inversion_audit.study.layout.StudyPaths.report`). Matplotlib is imported inside the
functions that draw.
"""

from .document import PAPER_SOURCE, write_report
from .run import run_and_report
from .summary import RANKED_METRICS, paper_figures, summarize_study
from .tables import plain_summary, report_tables, tables_markdown

__all__ = [
    "PAPER_SOURCE",
    "RANKED_METRICS",
    "paper_figures",
    "plain_summary",
    "report_tables",
    "run_and_report",
    "summarize_study",
    "tables_markdown",
    "write_report",
]
