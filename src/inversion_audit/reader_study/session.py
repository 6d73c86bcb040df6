"""One reader's pass through a study, without any GUI: position, on-screen time, answers.

The napari widget is a thin view of a :class:`ReaderSession`. Everything a session hands to
a view is blinded: a :class:`ReaderCase` (the case's number in this reader's order, its
kind, the letters shown and the questions) and :class:`CaseImage` arrays named
"Reconstruction", "A", "B"..., never a subject id, file name, score, fold or the answer key,
which stays in the store for analysis.

Every image of a case is shown on one common grid: the same shape, voxel size and the
centred preprocessed-space affine that scoring uses (no subject's scanner position), with
one intensity window for all (:data:`DISPLAY_WINDOW`, the preprocessed space's range).
Each reader sees each case's candidates in an order of their own
(:attr:`~inversion_audit.reader_study.design.Design.candidate_orders`): the n-th letter
shown is the n-th label of that order, and answers are stored under the case's labels.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import read_volume
from ..metrics.deformation import centred_affine
from .database import ReaderStudyError, utc_now
from .design import LABELS, Case
from .store import Answer, ReaderStudyStore

__all__ = [
    "RECONSTRUCTION_LAYER",
    "DISPLAY_WINDOW",
    "CaseTimer",
    "CaseImage",
    "BlindedStudy",
    "ReaderCase",
    "ReaderSession",
    "common_grid",
]

log = logging.getLogger(__name__)

#: the display name of a case's reconstruction; candidates are named by their label
RECONSTRUCTION_LAYER = "Reconstruction"
#: the intensity window of every image (preprocessed images are scaled to 0-1); values
#: outside are clipped, so no image carries a range of its own
DISPLAY_WINDOW = (0.0, 1.0)


class CaseTimer:
    """Seconds a case has been on screen, paused while it is hidden."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._total = 0.0
        self._since: float | None = None

    def start(self, offset: float = 0.0) -> None:
        """Restart at ``offset`` seconds and run."""
        self._total = float(offset)
        self._since = self._clock()

    def pause(self) -> None:
        if self._since is not None:
            self._total += self._clock() - self._since
            self._since = None

    def resume(self) -> None:
        if self._since is None:
            self._since = self._clock()

    @property
    def running(self) -> bool:
        return self._since is not None

    @property
    def seconds(self) -> float:
        running = self._clock() - self._since if self._since is not None else 0.0
        return self._total + running


@dataclass(frozen=True)
class ReaderCase:
    """What a reader may know about the case on screen, and nothing else."""

    number: int  #: 1-based position in this reader's order
    kind: str  #: ``"match"`` or ``"quality"``
    labels: tuple[str, ...]  #: the candidate letters shown, ``A``, ``B``, ... (none for quality)
    questions: tuple[str, ...]


@dataclass(frozen=True)
class CaseImage:
    """A blinded image to display: its layer name, voxels and geometry (mm)."""

    name: str
    data: np.ndarray
    scale: tuple[float, float, float]
    translate: tuple[float, float, float]
    contrast_limits: tuple[float, float]


def common_grid(
    arrays: list[np.ndarray], spacings: list[tuple[float, ...]]
) -> tuple[list[np.ndarray], tuple[float, ...], tuple[float, ...]]:
    """``arrays`` centred on one grid: (arrays, scale, translate) of the centred affine.

    Arrays of different shapes are zero-padded or cropped about their centres to the
    largest size along each axis; voxel sizes must agree (within 0.1%).
    """
    spacing = tuple(float(v) for v in spacings[0])
    if any(not np.allclose(sp, spacing, rtol=1e-3) for sp in spacings):
        raise ValueError("the images do not share one voxel size")
    shape = tuple(max(a.shape[i] for a in arrays) for i in range(3))
    out = []
    for a in arrays:
        canvas = np.zeros(shape, np.float32)
        src, dst = [], []
        for n, m in zip(a.shape, shape, strict=True):
            lo = (m - n) // 2 if m >= n else 0
            cut = (n - m) // 2 if n > m else 0
            size = min(n, m)
            dst.append(slice(lo, lo + size))
            src.append(slice(cut, cut + size))
        canvas[tuple(dst)] = a[tuple(src)]
        out.append(canvas)
    affine = centred_affine(shape, spacing)
    return out, spacing, tuple(float(t) for t in affine[:3, 3])


class BlindedStudy:
    """An open reader-study database as a reader's view may hold it: the reader names, the
    number of cases and :meth:`log_in`. The design (answer key, run, subject ids, files) stays
    in the private store; a view keeps this object and the :class:`ReaderSession`, never the
    store.
    """

    def __init__(self, db_path: str | os.PathLike[str]):
        self._store = ReaderStudyStore(db_path)

    @property
    def path(self) -> Path:
        """The database file the reader opened."""
        return self._store.path

    @property
    def readers(self) -> tuple[str, ...]:
        return tuple(self._store.design.readers)

    @property
    def n_cases(self) -> int:
        return len(self._store.design.cases)

    def log_in(self, reader: str, clock: Callable[[], float] = time.monotonic) -> ReaderSession:
        """A session for ``reader`` (a name of the design), at their first unanswered case."""
        return ReaderSession(self._store, reader, clock)

    def close(self) -> None:
        self._store.close()


class ReaderSession:
    """A logged-in reader working through their case order.

    Only :attr:`case`, :meth:`images`, :meth:`current_answer` and :meth:`submit` face the
    reader; they speak in the letters this reader sees. The answer key stays in the store.

    Parameters
    ----------
    store : the open study database.
    reader : a reader name of the design (case and surrounding spaces ignored).
    clock : monotonic seconds, replaceable for tests.
    """

    def __init__(
        self, store: ReaderStudyStore, reader: str, clock: Callable[[], float] = time.monotonic
    ):
        self._store = store
        self.reader = store.reader_name(reader)
        self._order = store.case_order(self.reader)
        self.timer = CaseTimer(clock)
        self._pending: dict[str, float] = {}
        self._shown_at: dict[str, str] = {}
        self.position = store.resume_position(self.reader)
        self._opened: int | None = None

    @property
    def total(self) -> int:
        return len(self._order)

    @property
    def done(self) -> bool:
        return self.position >= self.total

    @property
    def allow_revisit(self) -> bool:
        return self._store.design.allow_revisit

    def _key_case(self) -> Case | None:
        """The store's case at the current position, with its key (never for a view)."""
        return None if self.done else self._store.design.case(self._order[self.position])

    def _shown(self, case: Case) -> tuple[str, ...]:
        """The case's labels in the order this reader sees them (letter i shows label i)."""
        shown = self._store.design.shown_labels(self.reader, case.case_id)
        if sorted(shown) != sorted(case.labels):
            raise ReaderStudyError(
                f"{self._store.path}: the candidate order of {case.case_id} for {self.reader} "
                "does not match the case"
            )
        return shown

    def _to_key(self, case: Case, letter: str | None) -> str | None:
        """A shown letter as the case's label (``none`` and ``None`` stay as they are)."""
        if letter is None or not case.candidates or letter not in LABELS:
            return letter
        shown = self._shown(case)
        i = LABELS.index(letter)
        if i >= len(shown):
            raise ReaderStudyError(f"case {self.position + 1}: no candidate {letter}")
        return shown[i]

    def _to_letter(self, case: Case, label: str | None) -> str | None:
        if label is None or not case.candidates or label not in case.labels:
            return label
        return LABELS[self._shown(case).index(label)]

    @property
    def case(self) -> ReaderCase | None:
        """What the reader may know about the current case (``None`` when done)."""
        case = self._key_case()
        if case is None:
            return None
        return ReaderCase(
            number=self.position + 1,
            kind=case.kind,
            labels=tuple(LABELS[: len(case.candidates)]),
            questions=self._store.design.questions_for(case),
        )

    def progress_text(self) -> str:
        if self.done:
            n = len({cid for (_, cid) in self._store.current_answers(self.reader)})
            return f"{n} of {self.total} cases answered"
        return f"case {self.position + 1} of {self.total}"

    def questions(self) -> tuple[str, ...]:
        case = self.case
        return () if case is None else case.questions

    def _shown_answer(self, case: Case, answer: Answer) -> Answer:
        return dataclasses.replace(answer, match=self._to_letter(case, answer.match))

    def current_answer(self) -> Answer | None:
        """The reader's latest answer to the current case, its match as the letter shown."""
        case = self._key_case()
        if case is None:
            return None
        answer = self._store.current_answers(self.reader).get((self.reader, case.case_id))
        return None if answer is None else self._shown_answer(case, answer)

    def n_answered(self) -> int:
        return len(self._store.current_answers(self.reader))

    # -- navigation and timing -----------------------------------------------------------
    def _leave(self) -> None:
        if self._opened is not None and self._opened < self.total:
            cid = self._order[self._opened]
            self.timer.pause()
            self._pending[cid] = self.timer.seconds
        self._opened = None

    def open_case(self) -> ReaderCase | None:
        """Start showing the current case: its clock runs from any time it already had."""
        self._leave()
        case = self._key_case()
        if case is None:
            return None
        self._shown_at.setdefault(case.case_id, utc_now())
        self.timer.start(self._pending.get(case.case_id, 0.0))
        self._opened = self.position
        return self.case

    def go_to(self, position: int) -> ReaderCase | None:
        """Move to ``position`` in the order (going back needs a design allowing revisits)."""
        if not 0 <= position <= self.total:
            raise ReaderStudyError(f"position {position} outside 0..{self.total}")
        if position < self.position and not self.allow_revisit:
            raise ReaderStudyError("this study does not allow going back to earlier cases")
        self._leave()
        self.position = position
        return self.open_case()

    def restart_clock(self) -> None:
        """Restart the open case's clock from its earlier time, e.g. once its images are shown."""
        if self._opened is not None:
            self.timer.start(self._pending.get(self._order[self._opened], 0.0))

    def pause(self) -> None:
        """The case left the screen (widget hidden, window inactive)."""
        self.timer.pause()

    def resume(self) -> None:
        if self._opened is not None:
            self.timer.resume()

    def submit(
        self,
        match: str | None = None,
        confidence: int | None = None,
        anatomy: int | None = None,
        comment: str | None = None,
    ) -> Answer:
        """Commit the answer to the current case and move to the next one.

        ``match`` is the letter the reader chose as shown (or ``"none"``); the store keeps
        the case's own label. Returns the stored row with ``match`` as shown.
        """
        case = self._key_case()
        if case is None or self._opened != self.position:
            raise ReaderStudyError("no case is open")
        answer = self._store.record_answer(
            self.reader,
            case.case_id,
            match=self._to_key(case, match),
            confidence=confidence,
            anatomy=anatomy,
            comment=comment,
            time_shown=self._shown_at[case.case_id],
            seconds=self.timer.seconds,
        )
        self._pending.pop(case.case_id, None)
        self._shown_at.pop(case.case_id, None)
        self._opened = None
        self.position += 1
        self.open_case()
        return self._shown_answer(case, answer)

    # -- images --------------------------------------------------------------------------
    def images(self) -> list[CaseImage]:
        """The current case's blinded images, the reconstruction then letters A, B, ...

        All on one common centred grid, all in :data:`DISPLAY_WINDOW`.
        """
        case = self._key_case()
        if case is None:
            return []
        number = self.position + 1
        study = self._store.study_dir
        paths = {c.label: c.path for c in case.candidates}
        items = [(RECONSTRUCTION_LAYER, case.reconstruction_path)]
        items += [(LABELS[i], paths[label]) for i, label in enumerate(self._shown(case))]
        arrays, spacings = [], []
        for name, rel in items:
            try:
                vol = read_volume(study / rel)
            except Exception as exc:
                # the message names the file: log it for the coordinator, never show it
                log.error("reader study case %s, %s: %s", case.case_id, name, exc)
                raise ReaderStudyError(
                    f"case {number}: image {name} could not be opened; "
                    "please tell the study coordinator"
                ) from None
            arrays.append(np.clip(np.nan_to_num(vol.array), *DISPLAY_WINDOW))
            spacings.append(vol.spacing)
        try:
            arrays, scale, translate = common_grid(arrays, spacings)
        except ValueError as exc:
            log.error("reader study case %s: %s", case.case_id, exc)
            raise ReaderStudyError(
                f"case {number}: its images do not share one voxel size; "
                "please tell the study coordinator"
            ) from None
        return [
            CaseImage(name, data, scale, translate, DISPLAY_WINDOW)
            for (name, _), data in zip(items, arrays, strict=True)
        ]
