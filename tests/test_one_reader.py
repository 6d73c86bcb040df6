"""The report reads a study folder only through ``StudyIndex`` (issue 28).

Every module of ``src/inversion_audit/report`` is parsed with ``ast``: no call that reads
files (``open``, ``read_json``, ``read_text``, ``glob``, ``iterdir``, ``json.load``,
``read_volume``, ...) and no catch-all ``except Exception``. Paths in a study folder are
``StudyPaths``'s, reads ``StudyIndex``'s.
"""

from __future__ import annotations

import ast

from test_layering import ROOT

REPORT = ROOT / "report"

#: functions that read a file, called by name (``open(...)``, ``read_json(...)``)
READ_NAMES = {
    "open",
    "read_json",
    "read_toml",
    "read_text",
    "read_volume",
    "read_scores",
    "read_rankings",
    "read_provenance",
    "load_study_config",
}
#: methods that read a file or a folder (``path.glob(...)``, ``json.load(...)``, ``np.load``)
READ_METHODS = {
    "open",
    "load",
    "glob",
    "rglob",
    "iterdir",
    "read_text",
    "read_bytes",
    "exists",
    "is_file",
    "is_dir",
    "stat",
    "walk",
    "listdir",
    "scandir",
}
CATCH_ALL = {"Exception", "BaseException"}


def reader_violations(source: str, filename: str = "<source>") -> list[str]:
    """Every file read and catch-all handler of ``source``, as ``file:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in READ_NAMES:
                found.append(f"{filename}:{node.lineno}: calls {func.id}()")
            elif isinstance(func, ast.Attribute) and func.attr in READ_METHODS | READ_NAMES:
                found.append(f"{filename}:{node.lineno}: calls .{func.attr}()")
        elif isinstance(node, ast.ExceptHandler):
            caught = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            names = {c.id for c in caught if isinstance(c, ast.Name)}
            if node.type is None or names & CATCH_ALL:
                found.append(f"{filename}:{node.lineno}: catches everything")
    return found


def test_the_report_reads_only_through_the_study_index():
    files = sorted(REPORT.rglob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "document.py", "summary.py"}
    found = [
        v
        for f in files
        for v in reader_violations(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))
    ]
    assert found == []


def test_a_synthetic_violation_is_found():
    source = """
import json
from pathlib import Path

def rows(study_dir):
    with open(Path(study_dir) / "scores" / "scores.csv") as fh:
        data = json.load(fh)
    parts = sorted((Path(study_dir) / "utility").glob("*.json"))
    names = [p.name for p in Path(study_dir).iterdir()]
    text = (Path(study_dir) / "reader_study.md").read_text()
    record = read_json(Path(study_dir) / "holdout.json", ValueError)
    try:
        return data, parts, names, text, record
    except (ValueError, Exception):
        return None
"""
    found = reader_violations(source)
    for what in ("open()", ".load()", ".glob()", ".iterdir()", ".read_text()", "read_json()"):
        assert any(what in v for v in found), (what, found)
    assert any("catches everything" in v for v in found)
    clean = """
def rows(study):
    try:
        return study.score_table(), study.utility_records()
    except (OSError, ValueError):
        return None
"""
    assert reader_violations(clean) == []
