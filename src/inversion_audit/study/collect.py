"""The study's records written once its runs are scored: score parts, the concatenated
``scores.csv``, and the holdout record (``holdout.json``). The rankings are :mod:`.rankings`'."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..io import atomic_write_json, atomic_write_text
from .layout import SCORE_COLUMNS, StudyPaths
from .score_files import legacy_threat

__all__ = ["write_scores", "concatenate_scores", "write_holdout_ids"]


def write_scores(path: Path, rows: Iterable[tuple]) -> Path:
    """``rows`` (in :data:`SCORE_COLUMNS` order) as a CSV; floats with 6 significant digits."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SCORE_COLUMNS)
    for r in rows:
        w.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in r])
    return atomic_write_text(path, buf.getvalue())


def concatenate_scores(paths: StudyPaths, wanted: set[str]) -> Path:
    """``scores/scores.csv``: the rows of the score parts named in ``wanted``, in name order
    (a part written before the ``defence`` column gets it, see :func:`.legacy_threat`)."""
    parts = sorted(paths.score_parts_dir.glob("*.csv"))
    lines = [SCORE_COLUMNS]
    for p in parts:
        if p.name in wanted:
            with open(p, newline="") as fh:
                for r in csv.DictReader(fh):
                    if "defence" not in r:
                        r["threat_model"], r["defence"] = legacy_threat(r["threat_model"])
                    lines.append(tuple(r[c] for c in SCORE_COLUMNS))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(lines)
    return atomic_write_text(paths.scores, buf.getvalue())


def write_holdout_ids(
    paths: StudyPaths, ids: Iterable[str], assignment: Mapping[int, Iterable[str]]
) -> Path:
    """Record the non-member ids and the fold that reconstructs each (``holdout.json``, read
    back by :func:`.index.read_holdout_ids`)."""
    return atomic_write_json(
        paths.holdout,
        {"holdout": sorted(ids), "fold_of": {s: k for k, ids_ in assignment.items() for s in ids_}},
    )
