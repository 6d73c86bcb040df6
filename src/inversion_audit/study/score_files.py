"""The study's score tables on disk, read and checked: ``scores/scores.csv`` (long format,
:data:`~.layout.SCORE_COLUMNS`) and ``rankings/<run>.csv``.

:class:`~.index.StudyIndex` reads them through these functions; a problem raises
:class:`~inversion_audit.errors.StudyError` naming the file (and line).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from ..errors import StudyError
from ..io.untrusted import not_utf8
from .layout import SCORE_COLUMNS

__all__ = [
    "RANKING_COLUMNS",
    "Ranking",
    "ScoreRow",
    "legacy_threat",
    "read_rankings",
    "read_scores",
]

RANKING_COLUMNS = ("reconstruction_id", "metric", "rank_of_true_match", "top1_candidate")


class ScoreRow(TypedDict):
    """One row of ``scores/scores.csv`` (long format, :data:`SCORE_COLUMNS`)."""

    fold: int | None
    arch: str
    variant: str
    threat_model: str
    #: the defence setting's tag (``latent-noise-0.5``), ``""`` for an undefended run
    defence: str
    reconstruction_id: str
    candidate_id: str
    metric: str
    value: float


def legacy_threat(column: str) -> tuple[str, str]:
    """``(threat_model, defence)`` of the ``threat_model`` column of a table written before
    the ``defence`` column, where a defended run's read ``<threat>_<tag>``
    (``"bottleneck_latent-noise-0.5"`` -> ``("bottleneck", "latent-noise-0.5")``)."""
    threat, _, defence = column.partition("_")
    return threat, defence


@contextmanager
def _table(path: Path, columns: tuple[str, ...], what: str) -> Iterator[csv.DictReader]:
    """A reader of the CSV table ``path``; every failure while it is read is a
    :class:`StudyError` naming the file (a short row reads as empty values)."""
    if not path.is_file():
        raise StudyError(f"{path}: {what} not found (is {path.parent.parent} a finished study?)")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, restval="")
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise StudyError(f"{path}: missing column(s) {', '.join(missing)}")
            yield reader
    except UnicodeDecodeError:
        raise not_utf8(path, StudyError) from None
    except csv.Error as exc:
        raise StudyError(f"{path}: malformed {what} ({exc})") from None
    except OSError as exc:
        raise StudyError(f"{path}: unreadable {what} ({exc.strerror or exc})") from None


def read_scores(path: str | os.PathLike[str]) -> list[ScoreRow]:
    """Every row of a long-format ``scores.csv``, in file order.

    ``fold`` is an int (``None`` when empty), ``value`` a float (``nan`` allowed), ``metric``
    lower case; a table without the ``defence`` column (written before it) has the defence
    read from its ``threat_model`` column (:func:`legacy_threat`). Raises :class:`StudyError` naming the file (and line) when it is missing,
    lacks a column, or holds an empty id or a value that is not a number.
    """
    path = Path(path)
    rows: list[ScoreRow] = []
    required = tuple(c for c in SCORE_COLUMNS if c != "defence")
    with _table(path, required, "scores table") as reader:
        legacy = "defence" not in (reader.fieldnames or [])
        for line, r in enumerate(reader, start=2):
            rid, cid = r["reconstruction_id"], r["candidate_id"]
            if not rid or not cid:
                raise StudyError(f"{path}:{line}: empty reconstruction_id or candidate_id")
            try:
                value = float(r["value"])
                fold = int(float(r["fold"])) if r["fold"].strip() else None
            except ValueError as exc:
                raise StudyError(f"{path}:{line}: {exc}") from exc
            threat, defence = (
                legacy_threat(r["threat_model"]) if legacy else (r["threat_model"], r["defence"])
            )
            rows.append(
                ScoreRow(
                    fold=fold,
                    arch=r["arch"],
                    variant=r["variant"],
                    threat_model=threat,
                    defence=defence,
                    reconstruction_id=rid,
                    candidate_id=cid,
                    metric=r["metric"].strip().lower(),
                    value=value,
                )
            )
    return rows


@dataclass(frozen=True)
class Ranking:
    """One row of ``rankings/<run>.csv``: where the true original ranked under one metric
    (a tie shares the mean of its ranks, so a rank may be fractional)."""

    reconstruction_id: str
    metric: str
    rank_of_true_match: float
    top1_candidate: str


def read_rankings(path: str | os.PathLike[str]) -> list[Ranking]:
    """Every row of a ``rankings/<run>.csv``, in file order; raises :class:`StudyError` naming
    the file when it is missing, lacks a column or holds a rank that is not a number."""
    path = Path(path)
    rows: list[Ranking] = []
    with _table(path, RANKING_COLUMNS, "rankings table") as reader:
        for line, r in enumerate(reader, start=2):
            try:
                rank = float(r["rank_of_true_match"])
            except ValueError as exc:
                raise StudyError(f"{path}:{line}: {exc}") from exc
            rows.append(Ranking(r["reconstruction_id"], r["metric"], rank, r["top1_candidate"]))
    return rows
