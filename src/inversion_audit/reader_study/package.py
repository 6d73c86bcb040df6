"""``reader-study create``'s output: a reader package folder and a separate key file.

The **package** is what readers get: ``reader-study.sqlite`` (:mod:`.package_db`: the
blinded design and the answers) and one folder per case, named by its random case id,
holding ``reconstruction.nii.gz`` and ``A.nii.gz``, ``B.nii.gz``, ... (:mod:`.package_images`:
neutral copies on the case's common grid, scrubbed headers). The **key** (:mod:`.key`) is
the coordinator's: subjects, source files, truth and scores, for the analysis only.

Everything is checked first (outputs, then every image); then the package is written into a
hidden temporary folder beside ``out`` (cases in case-id order, so no file time follows
the design's subject order) and moved into place together with the key. A failure removes
everything written and leaves ``out`` and ``key`` as they were.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..io import atomic_path
from ..io.paths import check_output_folder
from .database import ReaderStudyError, fill_sqlite
from .design import Design
from .key import fill_key
from .package_db import ANSWER_COLUMNS, PACKAGE_DB, fill_package
from .package_images import check_case_images, write_case_images
from .store import ReaderStudyStore

__all__ = ["check_outputs", "split_database", "write_package"]


def check_outputs(out: str | os.PathLike[str], key: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Check, writing nothing, that a package can go to ``out`` and its key to ``key``.

    ``out`` must be absent or an empty folder; ``key`` absent, outside ``out``; both below
    writable folders.
    """
    out, key = Path(out), Path(key)
    check_output_folder(out, option="--out")
    if out.is_dir() and any(out.iterdir()):
        raise ReaderStudyError(f"{out}: folder is not empty; a reader package needs a new folder")
    if key.exists() or key.is_symlink():
        raise ReaderStudyError(f"{key}: exists; refusing to overwrite it (a key is written once)")
    if key.resolve().is_relative_to(out.resolve()):
        raise ReaderStudyError(
            f"{key}: the key must not lie inside the reader package {out}, which readers get"
        )
    check_output_folder(key.parent, option="--key")
    return out, key


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for d in reversed(missing):
        d.mkdir()
    return list(reversed(missing))


def write_package(
    out: str | os.PathLike[str],
    key: str | os.PathLike[str],
    design: Design,
    study_dir: str | os.PathLike[str] | None = None,
    answers: Sequence[Sequence[object]] = (),
) -> Path:
    """Write ``design`` as a reader package folder ``out`` and its key file ``key``.

    Images come from ``study_dir`` (default: the design's study). ``answers`` (rows of
    :data:`~.package_db.ANSWER_COLUMNS`) start the package's answer trail. Returns ``out``.
    """
    out, key = check_outputs(out, key)
    study = Path(study_dir if study_dir is not None else design.study_dir)
    check_case_images(study, design)
    package_id = secrets.token_hex(16)
    out_existed = out.is_dir()
    created = _make_parents(out.parent) + _make_parents(key.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    moved = False
    try:
        for case in sorted(design.cases, key=lambda c: c.case_id):
            write_case_images(tmp, study, case)
        with atomic_path(tmp / PACKAGE_DB) as db:
            fill_sqlite(db, lambda c: fill_package(c, design.blind(), package_id, answers))
        with atomic_path(key) as key_tmp:
            fill_sqlite(
                key_tmp, lambda c: fill_key(c, design, package_id, str(out.resolve())), wal=False
            )
            if key.exists():
                raise ReaderStudyError(f"{key}: appeared while writing; refusing to overwrite it")
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private
            try:
                os.rename(tmp, out)  # onto an absent or empty folder only
            except OSError as exc:
                raise ReaderStudyError(f"{out}: cannot move the package there ({exc})") from None
            moved = True
    except BaseException:
        if moved:
            shutil.rmtree(out, ignore_errors=True)
            if out_existed:
                out.mkdir()
        shutil.rmtree(tmp, ignore_errors=True)
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass
        raise
    return out


def split_database(
    db_path: str | os.PathLike[str], out: str | os.PathLike[str], key: str | os.PathLike[str]
) -> Path:
    """Turn a single-file database of earlier versions into a reader package ``out`` (with
    its answers so far) and a key ``key``; the database itself is left as it is."""
    check_outputs(out, key)
    with ReaderStudyStore(db_path) as store:
        design, study, history = store.design, store.study_dir, store.history()
    rows = [tuple(getattr(a, c) for c in ANSWER_COLUMNS) for a in history]
    return write_package(out, key, design, study_dir=study, answers=rows)
