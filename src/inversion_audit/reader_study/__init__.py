"""Blinded expert reader studies: design, reader package and key, reader session, analysis.

``reader-study create`` writes a reader package (:func:`write_package`: neutral case images
and the blinded design, where answers go) and a separate key (the design with subjects,
files, truth and scores), which only the analysis reads. No napari or Qt here; the reader
widget lives in :mod:`inversion_audit.gui`.
"""

from .analysis import analyze, cohen_kappa, fleiss_kappa, wilson_interval
from .blind import BlindCase, BlindDesign
from .database import ReaderStudyError
from .design import LABELS, MATCH_NONE, QUESTIONS, Candidate, Case, Design, create_design
from .design_tables import write_design
from .export import write_analysis
from .key import read_key, read_results
from .package import check_outputs, split_database, write_package
from .session import (
    DISPLAY_WINDOW,
    RECONSTRUCTION_LAYER,
    BlindedStudy,
    CaseImage,
    CaseTimer,
    ReaderCase,
    ReaderSession,
)
from .store import Answer, PackageStore, ReaderStudyStore

__all__ = [
    "DISPLAY_WINDOW",
    "LABELS",
    "MATCH_NONE",
    "QUESTIONS",
    "RECONSTRUCTION_LAYER",
    "Answer",
    "BlindCase",
    "BlindDesign",
    "BlindedStudy",
    "Candidate",
    "Case",
    "CaseImage",
    "CaseTimer",
    "Design",
    "PackageStore",
    "ReaderCase",
    "ReaderSession",
    "ReaderStudyError",
    "ReaderStudyStore",
    "analyze",
    "check_outputs",
    "cohen_kappa",
    "create_design",
    "fleiss_kappa",
    "read_key",
    "read_results",
    "split_database",
    "wilson_interval",
    "write_analysis",
    "write_design",
    "write_package",
]
