"""A reader study's answer key, the coordinator's file: the full design (subjects, source
files, truth, SSIM, runs, folds, reader orders) and the id of its reader package.

The key is written beside its package (never inside it) by :func:`~.package.write_package`;
only the analysis reads it, joining it with the answers of the package (or of readers'
copies of it) in :func:`read_results`. A single-file database of earlier versions is its own
key and answer trail.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from .database import (
    DESIGN_TABLES,
    ReaderStudyError,
    connect_read_only,
    file_role,
    freeze_sql,
)
from .design import Design
from .design_tables import insert_design, read_design
from .store import Answer, PackageStore, ReaderStudyStore

__all__ = ["KEY_SCHEMA_VERSION", "fill_key", "read_key", "read_results"]

KEY_SCHEMA_VERSION = 3


def fill_key(conn: sqlite3.Connection, design: Design, package_id: str, package_dir: str) -> None:
    """Create the design tables of a key in ``conn``, frozen, with no answer table."""
    insert_design(
        conn,
        design,
        KEY_SCHEMA_VERSION,
        role="key",
        package_id=package_id,
        package_dir=package_dir,
    )
    for stmt in freeze_sql(DESIGN_TABLES, answers=False):
        conn.execute(stmt)


def read_key(path: str | os.PathLike[str]) -> tuple[Design, dict]:
    """The design of key ``path`` and its settings (``package_id``, ``package_dir``, ...)."""
    path = Path(path)
    if not path.is_file():
        raise ReaderStudyError(f"{path}: reader-study key not found")
    if file_role(path) != "key":
        raise ReaderStudyError(f"{path}: not a reader-study key")
    conn = connect_read_only(path)
    try:
        return read_design(conn, path)
    finally:
        conn.close()


def _package_answers(
    key: Path, design: Design, meta: dict, packages: Sequence[str | os.PathLike[str]]
) -> list[Answer]:
    blind = design.blind()
    history: list[Answer] = []
    source: dict[str, Path] = {}
    for given in packages:
        with PackageStore(given) as store:
            if store.package_id != meta["package_id"]:
                raise ReaderStudyError(
                    f"{store.path}: not the reader package of key {key} (their ids differ)"
                )
            if store.blind != blind:
                raise ReaderStudyError(f"{store.path}: its cases differ from those of key {key}")
            rows = store.history()
        for reader in sorted({a.reader for a in rows}):
            if reader in source:
                raise ReaderStudyError(
                    f"{store.path}: answers of {reader} are also in {source[reader]}; "
                    "give each reader's answers once"
                )
            source[reader] = store.path
        history += rows
    return history


def read_results(
    path: str | os.PathLike[str], packages: Sequence[str | os.PathLike[str]] = ()
) -> tuple[Design, list[Answer]]:
    """The design and the answer trail of a reader study.

    ``path`` is a key, with ``packages`` its reader package and any readers' copies (by
    default the package recorded in the key), or a single-file database of earlier versions
    (no packages). Each reader's answers must come from one package.
    """
    path = Path(path)
    if path.is_dir():
        raise ReaderStudyError(
            f"{path}: is a folder (a reader package?); the analysis takes the study's key "
            "file, with the package given as --package"
        )
    role = file_role(path)
    if role == "single":
        if packages:
            raise ReaderStudyError(f"{path}: a single-file database takes no reader package")
        with ReaderStudyStore(path) as store:
            return store.design, store.history()
    if role == "package":
        raise ReaderStudyError(
            f"{path}: is a reader package's database; the analysis takes the study's key "
            "file, with the package given as --package"
        )
    if role is None:
        raise ReaderStudyError(
            f"{path}: not a reader-study key" if path.exists() else f"{path}: file not found"
        )
    design, meta = read_key(path)
    if not packages:
        recorded = Path(meta["package_dir"])
        if not recorded.is_dir():
            raise ReaderStudyError(
                f"{path}: its reader package {recorded} is not there; give the package with "
                "--package"
            )
        packages = [recorded]
    return design, _package_answers(path, design, meta, packages)
