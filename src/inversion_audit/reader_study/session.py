"""One reader's pass through a reader package, without any GUI: position, on-screen time,
answers.

The napari widget is a thin view of a :class:`ReaderSession`. A session opens only a
reader package (:class:`~.store.PackageStore`), which holds the blinded design and neutral
copies of the case images: nothing a session holds, public or private, reaches a subject id,
a source file, a score or the answer key, which stays in the coordinator's key file.
Everything it hands to a view is a :class:`ReaderCase` (the case's number in this reader's
order, its kind, the letters shown and the questions) and :class:`CaseImage` arrays named
"Reconstruction", "A", "B"...

Every image of a case is shown on one common grid (:mod:`.grid`: same shape, voxel size and
the centred affine) in one intensity window computed from the case's own images
(:func:`~.grid.case_window`: the lowest to the highest of their 0.5th-99.5th percentiles over
their brain voxels), the same for every image of the case. Each reader sees each case's
candidates in an order of their own: the n-th letter shown is the n-th label of that order,
and answers are stored under the case's labels.
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
from .blind import BlindCase
from .database import ReaderStudyError, utc_now
from .design import LABELS
from .grid import DISPLAY_WINDOW, case_window, common_grid, display_array
from .store import RECONSTRUCTION_FILE, Answer, PackageStore

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
    """A blinded image to display: its layer name, voxels, geometry (mm) and window (the
    case's, the same for every image of the case)."""

    name: str
    data: np.ndarray
    scale: tuple[float, float, float]
    translate: tuple[float, float, float]
    contrast_limits: tuple[float, float]


class BlindedStudy:
    """An open reader package as a reader's view holds it: the reader names, the number of
    cases and :meth:`log_in`. The package has no key; a single-file database of earlier
    versions or a key is refused (:class:`~.store.PackageStore`).
    """

    def __init__(self, path: str | os.PathLike[str]):
        self._store = PackageStore(path)

    @property
    def path(self) -> Path:
        """The package folder the reader opened."""
        return self._store.path

    @property
    def readers(self) -> tuple[str, ...]:
        return tuple(self._store.blind.readers)

    @property
    def n_cases(self) -> int:
        return len(self._store.blind.cases)

    def log_in(self, reader: str, clock: Callable[[], float] = time.monotonic) -> ReaderSession:
        """A session for ``reader`` (a name of the design), at their first unanswered case."""
        return ReaderSession(self._store, reader, clock)

    def close(self) -> None:
        self._store.close()


class ReaderSession:
    """A logged-in reader working through their case order.

    Only :attr:`case`, :meth:`images`, :meth:`current_answer` and :meth:`submit` face the
    reader; they speak in the letters this reader sees.

    Parameters
    ----------
    store : the open reader package.
    reader : a reader name of the design (case and surrounding spaces ignored).
    clock : monotonic seconds, replaceable for tests.
    """

    def __init__(
        self, store: PackageStore, reader: str, clock: Callable[[], float] = time.monotonic
    ):
        if not isinstance(store, PackageStore):
            raise ReaderStudyError("a reader session opens a reader package only")
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
        return self._store.blind.allow_revisit

    def _key_case(self) -> BlindCase | None:
        """The package's case at the current position (its id is for the store only)."""
        return None if self.done else self._store.blind.case(self._order[self.position])

    def _shown(self, case: BlindCase) -> tuple[str, ...]:
        """The case's labels in the order this reader sees them (letter i shows label i)."""
        shown = self._store.blind.shown_labels(self.reader, case.case_id)
        if sorted(shown) != sorted(case.labels):
            raise ReaderStudyError(
                f"{self._store.path}: the candidate order of {case.case_id} for {self.reader} "
                "does not match the case"
            )
        return shown

    def _to_key(self, case: BlindCase, letter: str | None) -> str | None:
        """A shown letter as the case's label (``none`` and ``None`` stay as they are)."""
        if letter is None or not case.labels or letter not in LABELS:
            return letter
        shown = self._shown(case)
        i = LABELS.index(letter)
        if i >= len(shown):
            raise ReaderStudyError(f"case {self.position + 1}: no candidate {letter}")
        return shown[i]

    def _to_letter(self, case: BlindCase, label: str | None) -> str | None:
        if label is None or not case.labels or label not in case.labels:
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
            labels=tuple(LABELS[: len(case.labels)]),
            questions=self._store.blind.questions_for(case),
        )

    def progress_text(self) -> str:
        if self.done:
            n = len({cid for (_, cid) in self._store.current_answers(self.reader)})
            return f"{n} of {self.total} cases answered"
        return f"case {self.position + 1} of {self.total}"

    def questions(self) -> tuple[str, ...]:
        case = self.case
        return () if case is None else case.questions

    def _shown_answer(self, case: BlindCase, answer: Answer) -> Answer:
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

        All on one common centred grid, all in the one window of the case
        (:func:`~.grid.case_window` of these images).
        """
        case = self._key_case()
        if case is None:
            return []
        number = self.position + 1
        items = [(RECONSTRUCTION_LAYER, RECONSTRUCTION_FILE)]
        items += [(LABELS[i], label) for i, label in enumerate(self._shown(case))]
        arrays, spacings = [], []
        for name, file in items:
            try:
                vol = read_volume(self._store.image_file(case.case_id, file))
            except Exception as exc:
                # the message names the file: log it for the coordinator, never show it
                log.error("reader study case %s, %s: %s", case.case_id, name, exc)
                raise ReaderStudyError(
                    f"case {number}: image {name} could not be opened; "
                    "please tell the study coordinator"
                ) from None
            arrays.append(display_array(vol.array))
            spacings.append(vol.spacing)
        try:
            arrays, scale, translate = common_grid(arrays, spacings)
        except ValueError as exc:
            log.error("reader study case %s: %s", case.case_id, exc)
            raise ReaderStudyError(
                f"case {number}: its images do not share one voxel size; "
                "please tell the study coordinator"
            ) from None
        window = case_window(arrays)  # one window from all the case's images: no cue
        return [
            CaseImage(name, data, scale, translate, window)
            for (name, _), data in zip(items, arrays, strict=True)
        ]
