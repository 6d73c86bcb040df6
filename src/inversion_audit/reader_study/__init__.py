"""Blinded expert reader studies: design, SQLite answer store, reader session, analysis.

No napari or Qt here; the reader widget lives in :mod:`inversion_audit.gui`.
"""

from .analysis import analyze, cohen_kappa, fleiss_kappa, wilson_interval
from .database import ReaderStudyError, write_design
from .design import LABELS, MATCH_NONE, QUESTIONS, Candidate, Case, Design, create_design
from .export import write_analysis
from .session import (
    DISPLAY_WINDOW,
    RECONSTRUCTION_LAYER,
    CaseImage,
    CaseTimer,
    ReaderCase,
    ReaderSession,
)
from .store import Answer, ReaderStudyStore

__all__ = [
    "DISPLAY_WINDOW",
    "LABELS",
    "MATCH_NONE",
    "QUESTIONS",
    "RECONSTRUCTION_LAYER",
    "Answer",
    "Candidate",
    "Case",
    "CaseImage",
    "CaseTimer",
    "Design",
    "ReaderCase",
    "ReaderSession",
    "ReaderStudyError",
    "ReaderStudyStore",
    "analyze",
    "cohen_kappa",
    "create_design",
    "fleiss_kappa",
    "wilson_interval",
    "write_analysis",
    "write_design",
]
