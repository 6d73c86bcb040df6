"""Open reader-study files: the append-only answer trail, over the blinded design.

Every answer is committed in its own ``BEGIN IMMEDIATE`` transaction as soon as it is given.
Answers are never updated or deleted (triggers forbid it): changing an answer appends a new
revision, and the current answer is the latest. :class:`PackageStore` is a reader package
(blinded design and answers, what readers open); :class:`ReaderStudyStore` a single-file
database of earlier versions (design with its key, and answers). The files, their schemas
and connections are :mod:`.database`.
"""

from __future__ import annotations

import math
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from ..io.paths import output_path
from .blind import BlindDesign
from .database import ReaderStudyError, connect, file_role, utc_now
from .design import MATCH_NONE
from .design_tables import read_design
from .package_db import PACKAGE_DB, read_package

__all__ = ["Answer", "AnswerStore", "PackageStore", "ReaderStudyStore", "RECONSTRUCTION_FILE"]

#: the reconstruction's file name in a package case folder (candidates are ``<label>.nii.gz``)
RECONSTRUCTION_FILE = "reconstruction"


@dataclass(frozen=True)
class Answer:
    """One row of the answer trail; the latest revision of a (reader, case) is current."""

    answer_id: int
    reader: str
    case_id: str
    revision: int
    match: str | None
    confidence: int | None
    anatomy: int | None
    comment: str | None
    time_shown: str
    time_answered: str
    seconds: float


def _check_level(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise ReaderStudyError(f"{name} must be an integer from 1 to 5, got {value!r}")


class AnswerStore:
    """The answer trail of an open file, validated against its blinded design."""

    path: Path
    blind: BlindDesign

    def __init__(self, path: Path, conn: sqlite3.Connection, blind: BlindDesign):
        self.path = path
        self.blind = blind
        self._conn = conn

    def reader_name(self, name: str) -> str:
        """The design's spelling of reader ``name`` (matched ignoring case and spaces)."""
        wanted = name.strip().lower()
        for r in self.blind.readers:
            if r.lower() == wanted:
                return r
        raise ReaderStudyError(f"{self.path}: {name.strip()!r} is not a reader of this study")

    def case_order(self, reader: str) -> tuple[str, ...]:
        """Case ids in the order ``reader`` sees them."""
        return self.blind.orders[self.reader_name(reader)]

    # -- answers ------------------------------------------------------------------------
    def record_answer(
        self,
        reader: str,
        case_id: str,
        *,
        match: str | None = None,
        confidence: int | None = None,
        anatomy: int | None = None,
        comment: str | None = None,
        time_shown: str,
        seconds: float,
        time_answered: str | None = None,
    ) -> Answer:
        """Validate and commit one answer as a new revision; return the stored row.

        Every question the case asks (except ``comment``) needs an answer; questions it does
        not ask must be ``None``. ``seconds`` is the time the case was on screen.
        """
        reader = self.reader_name(reader)
        if case_id not in self.blind.orders[reader]:
            raise ReaderStudyError(f"{self.path}: {case_id} is not a case of reader {reader}")
        case = self.blind.case(case_id)
        asked = self.blind.questions_for(case)
        given = {"match": match, "confidence": confidence, "anatomy": anatomy}
        for q, v in given.items():
            if q in asked and v is None:
                raise ReaderStudyError(f"{case_id}: the {q!r} question needs an answer")
            if q not in asked and v is not None:
                raise ReaderStudyError(f"{case_id}: the {q!r} question is not asked")
        if comment and "comment" not in asked:
            raise ReaderStudyError(f"{case_id}: the 'comment' question is not asked")
        if match is not None and match not in (*case.labels, MATCH_NONE):
            raise ReaderStudyError(
                f"{case_id}: match must be one of {', '.join(case.labels)} or {MATCH_NONE!r}, "
                f"got {match!r}"
            )
        _check_level("confidence", confidence)
        _check_level("anatomy", anatomy)
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds < 0:
            raise ReaderStudyError(f"{case_id}: seconds must be >= 0, got {seconds}")
        time_answered = time_answered or utc_now()
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            (n,) = c.execute(
                "SELECT COUNT(*) FROM answers WHERE reader = ? AND case_id = ?", (reader, case_id)
            ).fetchone()
            if n and not self.blind.allow_revisit:
                raise ReaderStudyError(
                    f"{case_id}: already answered by {reader} and this design allows no changes"
                )
            cur = c.execute(
                "INSERT INTO answers (reader, case_id, revision, match, confidence, anatomy, "
                "comment, time_shown, time_answered, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    reader,
                    case_id,
                    n + 1,
                    match,
                    confidence,
                    anatomy,
                    comment or None,
                    time_shown,
                    time_answered,
                    seconds,
                ),
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return Answer(
            cur.lastrowid,
            reader,
            case_id,
            n + 1,
            match,
            confidence,
            anatomy,
            comment or None,
            time_shown,
            time_answered,
            seconds,
        )

    def history(self, reader: str | None = None, case_id: str | None = None) -> list[Answer]:
        """Every answer row (the audit trail), oldest first, optionally filtered."""
        sql = "SELECT * FROM answers WHERE 1 = 1"
        args: list[str] = []
        if reader is not None:
            sql += " AND reader = ?"
            args.append(self.reader_name(reader))
        if case_id is not None:
            sql += " AND case_id = ?"
            args.append(case_id)
        return [Answer(*row) for row in self._conn.execute(sql + " ORDER BY answer_id", args)]

    def current_answers(self, reader: str | None = None) -> dict[tuple[str, str], Answer]:
        """The latest answer of each (reader, case_id)."""
        return {(a.reader, a.case_id): a for a in self.history(reader)}

    def resume_position(self, reader: str) -> int:
        """Index in the reader's order of their first unanswered case (= number of cases when done)."""
        reader = self.reader_name(reader)
        answered = {cid for (_, cid) in self.current_answers(reader)}
        order = self.blind.orders[reader]
        return next((i for i, cid in enumerate(order) if cid not in answered), len(order))

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` result (``"ok"`` when sound)."""
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _refuse(path: Path, role: str | None, wanted: str) -> ReaderStudyError:
    """Why ``path`` (a file of ``role``) cannot be opened as ``wanted``."""
    if role == "key":
        return ReaderStudyError(
            f"{path}: this is a reader study's answer key (the coordinator's); readers open "
            "the reader package folder, and 'reader-study analyze KEY --package PACKAGE' "
            "joins the two"
        )
    if role == "package":
        return ReaderStudyError(f"{path}: this is a reader package, not a {wanted}")
    if role == "single":
        return ReaderStudyError(
            f"{path}: a reader-study database of an earlier version holds the answer key and "
            "cannot be opened by readers; make a reader package and a key from it with "
            "'inversion-audit reader-study split'"
        )
    return ReaderStudyError(f"{path}: not a {wanted}")


class ReaderStudyStore(AnswerStore):
    """A single-file reader-study database (design, key and answers; earlier versions).

    Opened for analysis and for :func:`~.package.split_database`; never by readers.

    Parameters
    ----------
    db_path : a file written by :func:`~.design_tables.write_design`.
    """

    def __init__(self, db_path: str | os.PathLike[str]):
        path = Path(db_path)
        if not path.is_file():
            raise ReaderStudyError(f"{path}: reader-study database not found")
        role = file_role(path)
        if role != "single":
            raise _refuse(path, role, "reader-study database")
        conn = connect(path)
        try:
            self.design, self._meta = read_design(conn, path)
        except BaseException:
            conn.close()
            raise
        super().__init__(path, conn, self.design.blind())

    @property
    def study_dir(self) -> Path:
        """The study folder: the recorded path, or the same relative to this file if moved."""
        recorded = Path(self._meta["study_dir"])
        if recorded.is_dir():
            return recorded
        moved = (self.path.resolve().parent / self._meta["study_dir_relative"]).resolve()
        if moved.is_dir():
            return moved
        raise ReaderStudyError(f"{self.path}: study folder {recorded} not found")


class PackageStore(AnswerStore):
    """An open reader package: its blinded design, case images and answer trail.

    Parameters
    ----------
    path : the package folder written by :func:`~.package.write_package` (or its
        ``reader-study.sqlite``).
    """

    def __init__(self, path: str | os.PathLike[str]):
        given = Path(path)
        folder = given if given.is_dir() else given.parent
        db = folder / PACKAGE_DB if given.is_dir() else given
        if not given.exists():
            raise ReaderStudyError(f"{given}: reader package not found")
        role = file_role(db)
        if role != "package":
            raise _refuse(given, file_role(given) if given.is_file() else role, "reader package")
        conn = connect(db)
        try:
            blind, self._meta = read_package(conn, db)
        except BaseException:
            conn.close()
            raise
        super().__init__(folder, conn, blind)

    @property
    def package_id(self) -> str:
        """The id the package shares with its key."""
        return str(self._meta["package_id"])

    def image_file(self, case_id: str, name: str) -> Path:
        """A case image: ``<case_id>/<name>.nii.gz`` (``reconstruction`` or a label)."""
        return output_path(self.path, case_id, f"{name}.nii.gz")
