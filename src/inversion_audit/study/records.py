"""The study's records read back: the holdout, the external model audited, the released
targets' utility and a reader study's section. :class:`~.index.StudyIndex` reads them through
these functions (each record through :func:`~inversion_audit.io.untrusted.read_json`); a
problem raises :class:`~inversion_audit.errors.StudyError` naming the file.
"""

from __future__ import annotations

import os

from ..errors import StudyError
from ..io.untrusted import read_json, read_text
from .layout import StudyPaths

__all__ = [
    "read_external_record",
    "read_holdout_ids",
    "read_reader_study_section",
    "read_utility_records",
]


def read_holdout_ids(study_dir: str | os.PathLike[str]) -> list[str]:
    """The non-member ids of a study (``holdout.json``; empty without a holdout)."""
    path = StudyPaths(study_dir).holdout
    if not path.exists():
        return []
    data = read_json(path, StudyError, "holdout record")
    ids = data.get("holdout") if isinstance(data, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise StudyError(f"{path}: 'holdout' must be a list of ids")
    return ids


def read_external_record(paths: StudyPaths) -> dict | None:
    """``external_model.json`` (the model audited, per variant), ``None`` for the paper's protocol."""
    path = paths.external_record
    if not path.is_file():
        return None
    record = read_json(path, StudyError, "external model record")
    if not isinstance(record, dict):
        raise StudyError(f"{path}: the external model record must be a JSON object")
    return record


def read_utility_records(paths: StudyPaths) -> list[dict]:
    """Every ``utility/*.json`` record (a released target's Dice and privacy), in name order;
    a damaged record or one that is not a JSON object is left out."""
    records = []
    for path in sorted(paths.utility_dir.glob("*.json")):
        try:
            record = read_json(path, StudyError, "utility record")
        except StudyError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def read_reader_study_section(paths: StudyPaths) -> list[str]:
    """The lines of ``reader_study/reader_study.md`` (a reader study's report section), empty
    when the study has none."""
    path = paths.reader_study_markdown
    if not path.exists():
        return []
    return read_text(path, StudyError, "reader study section").splitlines()
