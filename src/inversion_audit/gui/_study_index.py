"""The study index the widgets read: :mod:`inversion_audit.study.index` (Qt-free), re-exported
for the GUI modules that import it from here."""

from __future__ import annotations

from ..study.index import CandidateScore, ReconstructionEntry, StudyIndex

__all__ = ["CandidateScore", "ReconstructionEntry", "StudyIndex"]
