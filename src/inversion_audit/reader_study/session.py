"""One reader's pass through a study, without any GUI: position, on-screen time, answers.

The napari widget is a thin view of a :class:`ReaderSession`. Everything a session hands to
a view is blinded: anonymised case ids, labels "Reconstruction", "A", "B"..., arrays and
voxel geometry, never a subject id, file name, score or fold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..io import read_volume
from .design import Case
from .store import Answer, ReaderStudyError, ReaderStudyStore, utc_now

__all__ = ["RECONSTRUCTION_LAYER", "CaseTimer", "CaseImage", "ReaderSession"]

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
class CaseImage:
    """A blinded image to display: its layer name, voxels and geometry (mm)."""

    name: str
    data: np.ndarray
    scale: tuple[float, float, float]
    translate: tuple[float, float, float]
    contrast_limits: tuple[float, float]


class ReaderSession:
    """A logged-in reader working through their case order.

    Parameters
    ----------
    store : the open study database.
    reader : a reader name of the design (case and surrounding spaces ignored).
    clock : monotonic seconds, replaceable for tests.
    """

    def __init__(
        self, store: ReaderStudyStore, reader: str, clock: Callable[[], float] = time.monotonic
    ):
        self.store = store
        self.reader = store.reader_name(reader)
        self.order = store.case_order(self.reader)
        self.timer = CaseTimer(clock)
        self._pending: dict[str, float] = {}
        self._shown_at: dict[str, str] = {}
        self.position = store.resume_position(self.reader)
        self._opened: int | None = None

    @property
    def total(self) -> int:
        return len(self.order)

    @property
    def done(self) -> bool:
        return self.position >= self.total

    @property
    def allow_revisit(self) -> bool:
        return self.store.design.allow_revisit

    @property
    def case(self) -> Case | None:
        """The case at the current position (``None`` when done)."""
        return None if self.done else self.store.design.case(self.order[self.position])

    def progress_text(self) -> str:
        if self.done:
            n = len({cid for (_, cid) in self.store.current_answers(self.reader)})
            return f"{n} of {self.total} cases answered"
        return f"case {self.position + 1} of {self.total}"

    def questions(self) -> tuple[str, ...]:
        case = self.case
        return () if case is None else self.store.design.questions_for(case)

    def current_answer(self) -> Answer | None:
        """The reader's latest answer to the current case, if any."""
        case = self.case
        if case is None:
            return None
        return self.store.current_answers(self.reader).get((self.reader, case.case_id))

    def n_answered(self) -> int:
        return len(self.store.current_answers(self.reader))

    # -- navigation and timing -----------------------------------------------------------
    def _leave(self) -> None:
        if self._opened is not None and self._opened < self.total:
            cid = self.order[self._opened]
            self.timer.pause()
            self._pending[cid] = self.timer.seconds
        self._opened = None

    def open_case(self) -> Case | None:
        """Start showing the current case: its clock runs from any time it already had."""
        self._leave()
        case = self.case
        if case is None:
            return None
        self._shown_at.setdefault(case.case_id, utc_now())
        self.timer.start(self._pending.get(case.case_id, 0.0))
        self._opened = self.position
        return case

    def go_to(self, position: int) -> Case | None:
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
            self.timer.start(self._pending.get(self.order[self._opened], 0.0))

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
        """Commit the answer to the current case and move to the next one."""
        case = self.case
        if case is None or self._opened != self.position:
            raise ReaderStudyError("no case is open")
        answer = self.store.record_answer(
            self.reader,
            case.case_id,
            match=match,
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
        return answer

    # -- images --------------------------------------------------------------------------
    def images(self) -> list[CaseImage]:
        """The current case's blinded images: the reconstruction, then candidates A, B, ..."""
        case = self.case
        if case is None:
            return []
        study = self.store.study_dir
        items = [(RECONSTRUCTION_LAYER, case.reconstruction_path)]
        items += [(c.label, c.path) for c in case.candidates]
        out = []
        for name, rel in items:
            try:
                vol = read_volume(study / rel)
            except Exception as exc:
                # the message names the file: log it for the coordinator, never show it
                log.error("reader study %s, %s: %s", case.case_id, name, exc)
                raise ReaderStudyError(
                    f"{case.case_id}: image {name} could not be opened; "
                    "please tell the study coordinator"
                ) from None
            lo, hi = (float(v) for v in np.percentile(vol.array, [0.5, 99.5]))
            out.append(
                CaseImage(name, vol.array, vol.spacing, vol.origin, (lo, max(hi, lo + 1e-6)))
            )
        return out
