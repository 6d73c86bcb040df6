"""Untrusted names on disk: subject ids and every output path built from them.

Subject ids come from file names and CSV manifests, i.e. from whoever prepared the
cohort. They become file names (``<id>_recon.nii.gz``, ``preprocessed/<variant>/<id>.nii.gz``),
so an id such as ``../../x`` or ``/etc/x`` would write outside the output folder.
:func:`check_subject_id` allows one safe character set; :func:`output_path` is the one
function that joins a folder and file names, and refuses any result outside the folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import CohortError, ConfigError

__all__ = [
    "MAX_ID_LENGTH",
    "SUBJECT_ID_PATTERN",
    "check_output_folder",
    "check_subject_id",
    "output_path",
]

#: longest accepted subject id (file names stay well under the usual 255-byte limit)
MAX_ID_LENGTH = 128
#: a letter or digit, then letters, digits, ``.``, ``_`` or ``-``: no separators, no
#: leading dot (so neither ``..`` nor hidden files), nothing a shell or a CSV would mangle
SUBJECT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_subject_id(subject_id: object, where: str | os.PathLike[str] = "cohort") -> str:
    """Return ``subject_id`` if it is a safe id, else raise :class:`CohortError` naming ``where``.

    Safe: a string of at most :data:`MAX_ID_LENGTH` characters matching
    :data:`SUBJECT_ID_PATTERN` (``IXI002-Guys-0828``, ``sub01``, ``case_7.a``).
    """
    if not isinstance(subject_id, str):
        raise CohortError(f"{where}: subject id must be text, got {type(subject_id).__name__}")
    shown = subject_id if len(subject_id) <= 60 else subject_id[:60] + "..."
    if not subject_id:
        raise CohortError(f"{where}: empty subject id")
    if len(subject_id) > MAX_ID_LENGTH:
        raise CohortError(
            f"{where}: subject id {shown!r} is longer than {MAX_ID_LENGTH} characters"
        )
    if not SUBJECT_ID_PATTERN.fullmatch(subject_id):
        raise CohortError(
            f"{where}: unsafe subject id {shown!r}: ids are letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (no path separators, no '..', no leading dot)"
        )
    return subject_id


def _check_part(folder: Path, part: str) -> None:
    if (
        not part
        or part in (".", "..")
        or "/" in part
        or "\\" in part
        or "\0" in part
        or os.path.isabs(part)
    ):
        raise CohortError(f"{folder}: output name {part!r} would leave the folder")


def output_path(folder: str | os.PathLike[str], *parts: str) -> Path:
    """``folder / part / ...`` for an output file, refusing any path that leaves ``folder``.

    Every output whose name holds a subject id or a run name is built here: the study
    layout (:class:`~inversion_audit.study.layout.StudyPaths`), ``reconstruct``, ``match``
    and reader studies. Each part must be a single name (no separator, not ``.``/``..``);
    the joined path, with symbolic links resolved, must lie inside ``folder`` (resolved),
    so a link inside the folder that points elsewhere is refused too. Raises
    :class:`CohortError` naming the folder and the offending name. The returned path is
    ``folder`` joined with ``parts`` as given (not resolved).
    """
    folder = Path(folder)
    for part in parts:
        _check_part(folder, str(part))
    path = folder.joinpath(*parts)
    root = folder.resolve()
    if not path.resolve().is_relative_to(root):
        raise CohortError(f"{folder}: output {'/'.join(parts)!r} resolves outside the folder")
    return path


def check_output_folder(
    folder: str | os.PathLike[str], names: tuple[str, ...] = (), option: str = "--out"
) -> Path:
    """Check, before any work, that ``folder`` can hold outputs ``names``; create nothing.

    ``folder`` must be a folder or not exist yet, below a writable existing folder; each
    of ``names`` must not be an existing folder. Raises :class:`ConfigError` naming
    ``option`` and the path.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {folder}: exists and is not a folder")
    parent = folder
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{option} {folder}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {folder}: {parent} is not writable")
    for name in names:
        target = output_path(folder, name)
        if target.is_dir():
            raise ConfigError(f"{option} {folder}: {target} exists and is a folder")
    return folder
