"""Argument helpers shared by CLI commands."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..data import Cohort, Subject

__all__ = [
    "add_device_args",
    "add_quiet_arg",
    "check_subjects",
    "fail",
    "load_cohort_arg",
    "split_ids",
    "setup_logging",
]


def add_device_args(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|mps`` and ``--threads N``."""
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda", "mps"],
        help="compute device (auto: cuda, then mps, then cpu)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def add_quiet_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars (for CI)")


def split_ids(values: list[str] | None) -> list[str] | None:
    """Accept ``--subjects a b c`` and ``--subjects a,b,c``."""
    if not values:
        return None
    out: list[str] = []
    for v in values:
        out.extend(x for x in v.split(",") if x)
    return out


def fail(message: str, code: int = 2) -> int:
    print(f"inversion-audit: error: {message}", file=sys.stderr)
    return code


def setup_logging(quiet: bool = False) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )


def load_cohort_arg(path: str, image_pattern: str, labels_pattern: str) -> Cohort:
    """The cohort a command-line argument names: a folder, a CSV manifest, ``sample`` or
    ``sample:N`` (the synthetic sample cohort, see
    :func:`~inversion_audit.sample_data.resolve_cohort_path`). Every command's cohort
    argument goes through here."""
    from ..data import load_cohort
    from ..sample_data import resolve_cohort_path

    return load_cohort(resolve_cohort_path(path), image_pattern, labels_pattern)


def check_subjects(
    subjects: list[Subject],
    skull_strip: str,
    where: str | os.PathLike[str],
    require_labels: bool = False,
) -> None:
    """Refuse, before a command writes anything, subjects it could not finish: every file is
    opened (header and voxels) and each subject must have what ``skull_strip`` needs (labels
    or a mask). Raises :class:`~inversion_audit.errors.CohortError` naming ``where`` and each
    bad file."""
    from ..data.cohort import require_valid
    from ..errors import CohortError

    if skull_strip == "mask":
        no_mask = [s.id for s in subjects if s.mask is None]
        if no_mask:
            raise CohortError(f"{where}: skull_strip='mask' but no mask for {', '.join(no_mask)}")
    require_valid(subjects, require_labels=require_labels or skull_strip == "labels", where=where)
