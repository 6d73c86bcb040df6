"""The database of a reader package: the blinded design and the answers, nothing else.

Tables: ``package`` (settings as JSON: format, version, package id, questions, whether
answers may be revised), ``cases`` (anonymised id, kind, candidate labels; inserted in
case-id order), ``readers``, ``reader_cases`` (each reader's case order and, per case, the
order in which they see its candidates) and ``answers`` (the append-only trail, stored under
the case's own labels). No subject id, file name, run, fold, score or truth: those are in
the key (:mod:`.key`), which shares the package id.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from .blind import BlindCase, BlindDesign
from .database import (
    ANSWERS_SCHEMA,
    READER_TABLES,
    ReaderStudyError,
    freeze_sql,
    read_orders,
    run_script,
    utc_now,
)

__all__ = [
    "PACKAGE_DB",
    "PACKAGE_FORMAT",
    "PACKAGE_SCHEMA_VERSION",
    "fill_package",
    "read_package",
]

#: the package database's file name inside the package folder
PACKAGE_DB = "reader-study.sqlite"
PACKAGE_FORMAT = "inversion-audit reader package"
PACKAGE_SCHEMA_VERSION = 1

_SCHEMA = (
    """
CREATE TABLE package (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cases (
    case_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('match', 'quality')),
    labels TEXT NOT NULL DEFAULT ''
);
"""
    + READER_TABLES
)
_TABLES = ("package", "cases", "readers", "reader_cases")
#: the columns of ``answers`` copied when answers move into a package
ANSWER_COLUMNS = (
    "reader",
    "case_id",
    "revision",
    "match",
    "confidence",
    "anatomy",
    "comment",
    "time_shown",
    "time_answered",
    "seconds",
)


def fill_package(
    conn: sqlite3.Connection,
    blind: BlindDesign,
    package_id: str,
    answers: Sequence[Sequence[object]] = (),
) -> None:
    """Create the package tables in ``conn`` and fill them with ``blind``.

    ``answers`` are rows of :data:`ANSWER_COLUMNS` carried over from an earlier file.
    """
    run_script(conn, _SCHEMA)
    run_script(conn, ANSWERS_SCHEMA)
    meta = {
        "format": PACKAGE_FORMAT,
        "schema_version": PACKAGE_SCHEMA_VERSION,
        "package_id": package_id,
        "questions": list(blind.questions),
        "allow_revisit": blind.allow_revisit,
        "created_at": utc_now(),
        "inversion_audit_version": __version__,
    }
    conn.executemany(
        "INSERT INTO package (key, value) VALUES (?, ?)",
        [(k, json.dumps(v)) for k, v in meta.items()],
    )
    conn.executemany(
        "INSERT INTO cases VALUES (?, ?, ?)",
        [(c.case_id, c.kind, "".join(c.labels)) for c in sorted(blind.cases, key=_id)],
    )
    for rpos, reader in enumerate(blind.readers):
        conn.execute("INSERT INTO readers VALUES (?, ?)", (reader, rpos))
        shown = blind.candidate_orders.get(reader, {})
        conn.executemany(
            "INSERT INTO reader_cases VALUES (?, ?, ?, ?)",
            [
                (reader, i, cid, "".join(shown.get(cid, ())))
                for i, cid in enumerate(blind.orders[reader])
            ],
        )
    columns = ", ".join(ANSWER_COLUMNS)
    marks = ", ".join("?" * len(ANSWER_COLUMNS))
    conn.executemany(f"INSERT INTO answers ({columns}) VALUES ({marks})", answers)
    for stmt in freeze_sql(_TABLES, answers=True):
        conn.execute(stmt)


def _id(case: BlindCase) -> str:
    return case.case_id


def read_package(conn: sqlite3.Connection, path: Path) -> tuple[BlindDesign, dict]:
    """The blinded design stored in a package database and its settings."""
    try:
        meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM package")}
    except (sqlite3.DatabaseError, ValueError) as exc:
        raise ReaderStudyError(f"{path}: not a reader package ({exc})") from None
    if meta.get("format") != PACKAGE_FORMAT:
        raise ReaderStudyError(f"{path}: not a reader package")
    if meta.get("schema_version") != PACKAGE_SCHEMA_VERSION:
        raise ReaderStudyError(
            f"{path}: reader package version {meta.get('schema_version')} is not "
            f"{PACKAGE_SCHEMA_VERSION}"
        )
    cases = tuple(
        BlindCase(cid, kind, tuple(labels))
        for cid, kind, labels in conn.execute(
            "SELECT case_id, kind, labels FROM cases ORDER BY case_id"
        )
    )
    readers = tuple(r for (r,) in conn.execute("SELECT reader FROM readers ORDER BY position"))
    orders, candidate_orders = read_orders(conn, readers, with_labels=True)
    blind = BlindDesign(
        questions=tuple(meta["questions"]),
        allow_revisit=bool(meta["allow_revisit"]),
        readers=readers,
        cases=cases,
        orders=orders,
        candidate_orders=candidate_orders,
    )
    return blind, meta
