"""An open reader-study database: the frozen design read back and the append-only answer trail.

Every answer is committed in its own ``BEGIN IMMEDIATE`` transaction as soon as it is given.
Answers are never updated or deleted (triggers forbid it): changing an answer appends a new
revision, and the current answer is the latest. The file, its schema and connections are
:mod:`.database`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from .database import READABLE_SCHEMA_VERSIONS, ReaderStudyError, connect, has_design, utc_now
from .design import MATCH_NONE, Candidate, Case, Design

__all__ = ["Answer", "ReaderStudyStore"]


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


class ReaderStudyStore:
    """An open reader-study database.

    Parameters
    ----------
    db_path : a file written by :func:`write_design`.
    """

    def __init__(self, db_path: str | os.PathLike[str]):
        self.path = Path(db_path)
        if not self.path.is_file():
            raise ReaderStudyError(f"{self.path}: reader-study database not found")
        if not has_design(self.path):
            raise ReaderStudyError(f"{self.path}: not a reader-study database")
        self._conn = connect(self.path)
        self.design = self._load_design()

    # -- design -------------------------------------------------------------------------
    def _load_design(self) -> Design:
        c = self._conn
        meta = {k: json.loads(v) for k, v in c.execute("SELECT key, value FROM design")}
        version = meta.get("schema_version")
        if version not in READABLE_SCHEMA_VERSIONS:
            raise ReaderStudyError(
                f"{self.path}: schema version {version} is not one of {READABLE_SCHEMA_VERSIONS}"
            )
        self._meta = meta
        cands: dict[str, list[Candidate]] = {}
        for case_id, label, cid, path, is_true, ssim in c.execute(
            "SELECT case_id, label, candidate_id, path, is_true, ssim FROM case_candidates "
            "ORDER BY case_id, label"
        ):
            cands.setdefault(case_id, []).append(Candidate(label, cid, path, bool(is_true), ssim))
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
            for row in c.execute(
                "SELECT case_id, kind, run, fold, reconstruction_id, reconstruction_path, ssim_pick "
                "FROM cases ORDER BY position"
            )
        )
        readers = tuple(r for (r,) in c.execute("SELECT reader FROM readers ORDER BY position"))
        labels_column = "labels" if version >= 2 else "''"
        orders: dict[str, tuple[str, ...]] = {}
        candidate_orders: dict[str, dict[str, tuple[str, ...]]] = {}
        for r in readers:
            rows = c.execute(
                f"SELECT case_id, {labels_column} FROM reader_cases WHERE reader = ? "
                "ORDER BY position",
                (r,),
            ).fetchall()
            orders[r] = tuple(cid for cid, _ in rows)
            candidate_orders[r] = {cid: tuple(shown) for cid, shown in rows if shown}
        return Design(
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

    def reader_name(self, name: str) -> str:
        """The design's spelling of reader ``name`` (matched ignoring case and spaces)."""
        wanted = name.strip().lower()
        for r in self.design.readers:
            if r.lower() == wanted:
                return r
        raise ReaderStudyError(f"{self.path}: {name.strip()!r} is not a reader of this study")

    def case_order(self, reader: str) -> tuple[str, ...]:
        """Case ids in the order ``reader`` sees them."""
        return self.design.orders[self.reader_name(reader)]

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
        if case_id not in self.design.orders[reader]:
            raise ReaderStudyError(f"{self.path}: {case_id} is not a case of reader {reader}")
        case = self.design.case(case_id)
        asked = self.design.questions_for(case)
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
            if n and not self.design.allow_revisit:
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
        order = self.design.orders[reader]
        return next((i for i, cid in enumerate(order) if cid not in answered), len(order))

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` result (``"ok"`` when sound)."""
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ReaderStudyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
