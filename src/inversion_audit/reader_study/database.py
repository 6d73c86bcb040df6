"""Reader-study SQLite files: their schemas, connections, and the design tables.

Three kinds of file share these pieces. A **key** (:mod:`.key`, the coordinator's) holds the
design: cases, subjects, files, truth and scores, and the reader orders. A **reader package**
(:mod:`.package_db`) holds only the blinded design and the answers. A **single-file**
database of earlier versions (:func:`~.design_tables.write_design`, schema 1 and 2) holds
the design and the answers together; it is still read for analysis but never by readers.

Every file is written once, atomically, and frozen by triggers: the design cannot change and
answers are append-only. :func:`connect` opens a file for answers in WAL mode with a busy
timeout and full sync, so several napari instances can share it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ..errors import InversionAuditError
from ..io import atomic_path

__all__ = [
    "ANSWERS_SCHEMA",
    "DESIGN_SCHEMA",
    "READABLE_SCHEMA_VERSIONS",
    "SCHEMA_VERSION",
    "ReaderStudyError",
    "connect",
    "connect_read_only",
    "design_meta",
    "file_role",
    "fill_sqlite",
    "freeze_sql",
    "read_orders",
    "run_script",
    "utc_now",
    "write_new_sqlite",
]

#: the single-file format's version (:func:`write_design`)
SCHEMA_VERSION = 2
#: design-table versions this code reads: 1 has no per-reader candidate order, 3 is a key
READABLE_SCHEMA_VERSIONS = (1, 2, 3)
BUSY_TIMEOUT_MS = 30_000

#: each reader and each reader's case order (and letter order per case), in both files
READER_TABLES = """
CREATE TABLE readers (reader TEXT PRIMARY KEY, position INTEGER NOT NULL UNIQUE);
CREATE TABLE reader_cases (
    reader TEXT NOT NULL REFERENCES readers(reader),
    position INTEGER NOT NULL,
    case_id TEXT NOT NULL REFERENCES cases(case_id),
    labels TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (reader, position),
    UNIQUE (reader, case_id)
);
"""
DESIGN_SCHEMA = (
    """
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
"""
    + READER_TABLES
)
#: the answer trail; ``case_id`` references the file's own ``cases`` table
ANSWERS_SCHEMA = """
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
DESIGN_TABLES = ("design", "cases", "case_candidates", "readers", "reader_cases")


def freeze_sql(tables: tuple[str, ...], answers: bool) -> list[str]:
    """Triggers that forbid any change of ``tables`` (and, with ``answers``, any update or
    delete of an answer)."""
    out = [
        f"CREATE TRIGGER {table}_frozen_{op.lower()} BEFORE {op} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'the reader-study design is frozen'); END"
        for table in tables
        for op in ("INSERT", "UPDATE", "DELETE")
    ]
    if answers:
        out += [
            f"CREATE TRIGGER answers_append_only_{op.lower()} BEFORE {op} ON answers "
            f"BEGIN SELECT RAISE(ABORT, 'answers are append-only'); END"
            for op in ("UPDATE", "DELETE")
        ]
    return out


class ReaderStudyError(InversionAuditError, ValueError):
    """A reader-study file is missing, foreign, or an answer does not fit its design."""


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


def connect_read_only(db_path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open ``db_path`` read-only (it must exist)."""
    path = Path(db_path).resolve()
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)


def _tables(path: Path) -> set[str] | None:
    """The table names of SQLite file ``path``, None if it is not one."""
    try:
        conn = connect_read_only(path)
        try:
            return {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None


def design_meta(conn: sqlite3.Connection) -> dict:
    """The ``design`` table's settings, JSON-decoded."""
    return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM design")}


def file_role(path: str | os.PathLike[str]) -> str | None:
    """``"key"``, ``"package"`` (a reader package's database), ``"single"`` (design and
    answers in one file, the format of earlier versions), or None when none of these."""
    path = Path(path)
    if not path.is_file():
        return None
    tables = _tables(path)
    if tables is None:
        return None
    if "package" in tables:
        return "package"
    if "design" not in tables:
        return None
    conn = connect_read_only(path)
    try:
        role = design_meta(conn).get("role")
    except (sqlite3.DatabaseError, ValueError):
        return None
    finally:
        conn.close()
    return "key" if role == "key" else "single"


def write_new_sqlite(
    path: str | os.PathLike[str], fill: Callable[[sqlite3.Connection], None], wal: bool = True
) -> Path:
    """Write a new SQLite file atomically: ``fill`` runs in one transaction on a temporary
    file renamed to ``path``. Refuses to overwrite anything."""
    path = Path(path)
    if path.exists():
        if file_role(path):
            raise ReaderStudyError(
                f"{path}: already holds a frozen reader-study design; refusing to overwrite it "
                "(choose another output file)"
            )
        raise ReaderStudyError(f"{path}: file exists; refusing to overwrite it")
    with atomic_path(path) as tmp:
        fill_sqlite(tmp, fill, wal)
        if path.exists():
            raise ReaderStudyError(f"{path}: appeared while writing; refusing to overwrite it")
    return path


def fill_sqlite(tmp: Path, fill: Callable[[sqlite3.Connection], None], wal: bool = True) -> None:
    """Run ``fill`` in one transaction on a new SQLite file ``tmp`` and close it."""
    conn = sqlite3.connect(str(tmp), isolation_level=None)
    try:
        if wal:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN")
        fill(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()


def run_script(conn: sqlite3.Connection, script: str) -> None:
    """Execute the ``;``-separated statements of ``script`` (no ``;`` inside a statement)."""
    for stmt in script.split(";"):
        if stmt.strip():
            conn.execute(stmt)


def read_orders(
    conn: sqlite3.Connection, readers: tuple[str, ...], with_labels: bool
) -> tuple[dict[str, tuple[str, ...]], dict[str, dict[str, tuple[str, ...]]]]:
    """Each reader's case order and candidate orders from the ``reader_cases`` table."""
    labels_column = "labels" if with_labels else "''"
    orders: dict[str, tuple[str, ...]] = {}
    candidate_orders: dict[str, dict[str, tuple[str, ...]]] = {}
    for r in readers:
        rows = conn.execute(
            f"SELECT case_id, {labels_column} FROM reader_cases WHERE reader = ? ORDER BY position",
            (r,),
        ).fetchall()
        orders[r] = tuple(cid for cid, _ in rows)
        candidate_orders[r] = {cid: tuple(shown) for cid, shown in rows if shown}
    return orders, candidate_orders
