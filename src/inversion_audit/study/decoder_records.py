"""The inversion decoders' sidecars read back: how each run's attacker trained, per fold.

A decoder's sidecar (``checkpoints/<run>/fold<k>/inversion.json``, see
:func:`~inversion_audit.checkpoints.training_metadata`) records its training: the epochs
run against the budget and, when part of the attack set was held out, its ``convergence``
table (why training stopped, the loss curves and the attacker-side validation scores). A
privacy audit only bounds from below what an attacker can learn (Jagielski et al.,
"Auditing differentially private machine learning", NeurIPS 2020), so the report says how far each
decoder was trained. Read through :func:`~inversion_audit.io.untrusted.read_json`; torch-free.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..errors import StudyError
from ..io.untrusted import read_json
from .layout import StudyPaths

__all__ = ["read_decoder_records"]

log = logging.getLogger(__name__)


def _sidecar(paths: StudyPaths, run: str, fold: int):
    """The JSON sidecar beside ``checkpoints/<run>/fold<k>/inversion.safetensors``."""
    return paths.inversion(run, fold).with_suffix(".json")


def read_decoder_records(paths: StudyPaths, run_folds: Iterable[tuple[str, int]]) -> list[dict]:
    """``[{"run", "fold", "metadata"}]``: the decoder sidecar of each ``(run, fold)`` that has
    one, in (run, fold) order; ``metadata`` is the sidecar as a JSON object (its
    ``convergence`` table absent on decoders trained before it was recorded). A missing
    sidecar, a damaged one or one that is not a JSON object is left out (logged)."""
    records = []
    for run, fold in sorted(set(run_folds)):
        path = _sidecar(paths, run, fold)
        if not path.is_file():
            continue
        try:
            record = read_json(path, StudyError, "inversion decoder sidecar")
        except StudyError as exc:
            log.warning("decoder record left out: %s", exc)
            continue
        if not isinstance(record, dict):
            log.warning("decoder record left out: %s is not a JSON object", path)
            continue
        records.append({"run": run, "fold": fold, "metadata": record})
    return records
