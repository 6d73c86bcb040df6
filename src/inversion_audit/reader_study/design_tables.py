"""The design tables of a key or a single-file database: written from a
:class:`~.design.Design` and read back, and :func:`write_design`, the single-file format of
earlier versions."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from .. import __version__
from .database import (
    ANSWERS_SCHEMA,
    DESIGN_SCHEMA,
    DESIGN_TABLES,
    READABLE_SCHEMA_VERSIONS,
    SCHEMA_VERSION,
    ReaderStudyError,
    design_meta,
    freeze_sql,
    read_orders,
    run_script,
    utc_now,
    write_new_sqlite,
)
from .design import Candidate, Case, Design

__all__ = ["insert_design", "read_design", "write_design"]


def _meta(design: Design, version: int, **extra: object) -> dict:
    return {
        "schema_version": version,
        "study_dir": design.study_dir,
        "run": design.run,
        "n_candidates": design.n_candidates,
        "strategy": design.strategy,
        "seed": design.seed,
        "allow_revisit": design.allow_revisit,
        "questions": list(design.questions),
        "created_at": utc_now(),
        "inversion_audit_version": __version__,
        **extra,
    }


def insert_design(conn: sqlite3.Connection, design: Design, version: int, **extra: object) -> None:
    """Create the design tables and fill them with ``design`` (settings plus ``extra``)."""
    run_script(conn, DESIGN_SCHEMA)
    meta = _meta(design, version, **extra)
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


def read_design(conn: sqlite3.Connection, path: Path) -> tuple[Design, dict]:
    """The design stored in ``conn`` (a key or a single-file database) and its settings."""
    meta = design_meta(conn)
    version = meta.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        raise ReaderStudyError(
            f"{path}: schema version {version} is not one of {READABLE_SCHEMA_VERSIONS}"
        )
    cands: dict[str, list[Candidate]] = {}
    for case_id, label, cid, cpath, is_true, ssim in conn.execute(
        "SELECT case_id, label, candidate_id, path, is_true, ssim FROM case_candidates "
        "ORDER BY case_id, label"
    ):
        cands.setdefault(case_id, []).append(Candidate(label, cid, cpath, bool(is_true), ssim))
    cases = tuple(
        Case(
            case_id=row[0],
            kind=row[1],
            run=row[2],
            fold=row[3],
            reconstruction_id=row[4],
            reconstruction_path=row[5],
            candidates=tuple(cands.get(row[0], ())),
            ssim_pick=row[6],
        )
        for row in conn.execute(
            "SELECT case_id, kind, run, fold, reconstruction_id, reconstruction_path, ssim_pick "
            "FROM cases ORDER BY position"
        )
    )
    readers = tuple(r for (r,) in conn.execute("SELECT reader FROM readers ORDER BY position"))
    orders, candidate_orders = read_orders(conn, readers, version >= 2)
    design = Design(
        study_dir=meta["study_dir"],
        run=meta["run"],
        n_candidates=int(meta["n_candidates"]),
        strategy=meta["strategy"],
        seed=int(meta["seed"]),
        allow_revisit=bool(meta["allow_revisit"]),
        questions=tuple(meta["questions"]),
        readers=readers,
        cases=cases,
        orders=orders,
        candidate_orders=candidate_orders,
    )
    return design, meta


def write_design(db_path: str | os.PathLike[str], design: Design) -> Path:
    """Freeze ``design`` and an empty answer trail into one new SQLite file.

    The single-file format of earlier versions, kept for the Python API and for analysis:
    it holds the answer key, so it is never a reader's file (``reader-study create`` writes
    a reader package and a separate key, :func:`~.package.write_package`).
    """
    path = Path(db_path)
    try:
        study_rel = os.path.relpath(design.study_dir, path.resolve().parent)
    except ValueError:  # another drive on Windows
        study_rel = design.study_dir

    def fill(conn: sqlite3.Connection) -> None:
        insert_design(conn, design, SCHEMA_VERSION, study_dir_relative=study_rel)
        run_script(conn, ANSWERS_SCHEMA)
        for stmt in freeze_sql(DESIGN_TABLES, answers=True):
            conn.execute(stmt)

    return write_new_sqlite(path, fill)
