"""The reader-study database file: its schema, a design frozen into a new file, and
connections to it.

One file holds everything. :func:`write_design` writes the schema and the design once (an
atomic write) and adds triggers that forbid changing the design or any answer afterwards;
:func:`connect` opens it in WAL mode with a busy timeout and full sync, so several napari
instances can share it. Reading the design back and recording answers is
:class:`~.store.ReaderStudyStore`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from .. import __version__
from ..errors import InversionAuditError
from ..io import atomic_path
from .design import Design

__all__ = [
    "READABLE_SCHEMA_VERSIONS",
    "SCHEMA_VERSION",
    "ReaderStudyError",
    "connect",
    "has_design",
    "utc_now",
    "write_design",
]

SCHEMA_VERSION = 2
#: versions this code reads; version 1 has no per-reader candidate order (case order is used)
READABLE_SCHEMA_VERSIONS = (1, 2)
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE design (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cases (
    case_id TEXT PRIMARY KEY,
    position INTEGER NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('match', 'quality')),
    run TEXT NOT NULL,
    fold INTEGER,
    reconstruction_id TEXT NOT NULL,
    reconstruction_path TEXT NOT NULL,
    true_label TEXT,
    ssim_pick TEXT
);
CREATE TABLE case_candidates (
    case_id TEXT NOT NULL REFERENCES cases(case_id),
    label TEXT NOT NULL,
    candidate_id TEXT NOT NULL,
    path TEXT NOT NULL,
    is_true INTEGER NOT NULL CHECK (is_true IN (0, 1)),
    ssim REAL,
    PRIMARY KEY (case_id, label)
);
CREATE TABLE readers (reader TEXT PRIMARY KEY, position INTEGER NOT NULL UNIQUE);
CREATE TABLE reader_cases (
    reader TEXT NOT NULL REFERENCES readers(reader),
    position INTEGER NOT NULL,
    case_id TEXT NOT NULL REFERENCES cases(case_id),
    labels TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (reader, position),
    UNIQUE (reader, case_id)
);
CREATE TABLE answers (
    answer_id INTEGER PRIMARY KEY AUTOINCREMENT,
    reader TEXT NOT NULL REFERENCES readers(reader),
    case_id TEXT NOT NULL REFERENCES cases(case_id),
    revision INTEGER NOT NULL CHECK (revision >= 1),
    match TEXT,
    confidence INTEGER CHECK (confidence BETWEEN 1 AND 5),
    anatomy INTEGER CHECK (anatomy BETWEEN 1 AND 5),
    comment TEXT,
    time_shown TEXT NOT NULL,
    time_answered TEXT NOT NULL,
    seconds REAL NOT NULL CHECK (seconds >= 0),
    UNIQUE (reader, case_id, revision)
);
CREATE INDEX answers_by_reader_case ON answers (reader, case_id, revision);
"""

_FROZEN = ("design", "cases", "case_candidates", "readers", "reader_cases")


def _freeze_sql() -> str:
    parts = []
    for table in _FROZEN:
        for op in ("INSERT", "UPDATE", "DELETE"):
            parts.append(
                f"CREATE TRIGGER {table}_frozen_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'the reader-study design is frozen'); END;"
            )
    for op in ("UPDATE", "DELETE"):
        parts.append(
            f"CREATE TRIGGER answers_append_only_{op.lower()} BEFORE {op} ON answers "
            f"BEGIN SELECT RAISE(ABORT, 'answers are append-only'); END;"
        )
    return "\n".join(parts)


class ReaderStudyError(InversionAuditError, ValueError):
    """A reader-study database is missing, foreign, or an answer does not fit its design."""


def utc_now() -> str:
    """The current UTC time as ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def connect(db_path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open ``db_path`` in autocommit mode with WAL journaling, a busy timeout and full sync."""
    conn = sqlite3.connect(str(db_path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.close()
        raise ReaderStudyError(f"{db_path}: cannot use WAL journaling here (got {mode!r})")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def has_design(path: Path) -> bool | None:
    """True if ``path`` holds a design, False if an SQLite file without one, None if not SQLite."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'design'"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None
    return row is not None


def write_design(db_path: str | os.PathLike[str], design: Design) -> Path:
    """Freeze ``design`` into a new SQLite file; refuse to overwrite an existing one."""
    path = Path(db_path)
    if path.exists():
        if has_design(path):
            raise ReaderStudyError(
                f"{path}: already holds a frozen reader-study design; refusing to overwrite it "
                "(choose another output file)"
            )
        raise ReaderStudyError(f"{path}: file exists; refusing to overwrite it")
    try:
        study_rel = os.path.relpath(design.study_dir, path.resolve().parent)
    except ValueError:  # another drive on Windows
        study_rel = design.study_dir
    meta = {
        "schema_version": SCHEMA_VERSION,
        "study_dir": design.study_dir,
        "study_dir_relative": study_rel,
        "run": design.run,
        "n_candidates": design.n_candidates,
        "strategy": design.strategy,
        "seed": design.seed,
        "allow_revisit": design.allow_revisit,
        "questions": list(design.questions),
        "created_at": utc_now(),
        "inversion_audit_version": __version__,
    }
    with atomic_path(path) as tmp:
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.executemany(
                "INSERT INTO design (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in meta.items()],
            )
            for pos, case in enumerate(design.cases):
                conn.execute(
                    "INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        case.case_id,
                        pos,
                        case.kind,
                        case.run,
                        case.fold,
                        case.reconstruction_id,
                        case.reconstruction_path,
                        case.true_label,
                        case.ssim_pick,
                    ),
                )
                conn.executemany(
                    "INSERT INTO case_candidates VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (case.case_id, c.label, c.candidate_id, c.path, int(c.is_true), c.ssim)
                        for c in case.candidates
                    ],
                )
            for rpos, reader in enumerate(design.readers):
                conn.execute("INSERT INTO readers VALUES (?, ?)", (reader, rpos))
                shown = design.candidate_orders.get(reader, {})
                conn.executemany(
                    "INSERT INTO reader_cases VALUES (?, ?, ?, ?)",
                    [
                        (reader, i, cid, "".join(shown.get(cid, ())))
                        for i, cid in enumerate(design.orders[reader])
                    ],
                )
            for stmt in _freeze_sql().split("\n"):
                conn.execute(stmt)
            conn.execute("COMMIT")
        finally:
            conn.close()
        if path.exists():
            raise ReaderStudyError(f"{path}: appeared while writing; refusing to overwrite it")
    return path
