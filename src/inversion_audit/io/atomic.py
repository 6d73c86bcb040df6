"""Atomic file writing: write to a temporary file in the same folder, then rename.

A full disk (``ENOSPC``) or an exceeded quota (``EDQUOT``) raises
:class:`~inversion_audit.errors.OutputError` naming the file, with the temporary file
removed and any older file left as it was.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import InversionAuditError, OutputError

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_bytes", "atomic_write_json"]

#: errno values that mean "the disk (or the user's share of it) is full"
_NO_SPACE = {errno.ENOSPC: "", getattr(errno, "EDQUOT", -1): " (disk quota exceeded)"}


def _suffixes(path: Path) -> str:
    # keep '.nii.gz' etc. so that writers choosing a format by extension still work
    return "".join(path.suffixes)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` on success.

    If the body raises, the temporary file is removed and any older ``path`` is
    left intact.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=f".tmp{_suffixes(path)}", dir=path.parent
        )
        os.close(fd)
    except OSError as exc:
        _raise_no_space(path, exc)
        raise
    tmp_path = Path(tmp)
    try:
        umask = os.umask(0)
        os.umask(umask)
        # mkstemp creates 0600; final files get normal permissions
        os.chmod(tmp_path, 0o666 & ~umask)
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        _raise_no_space(path, exc)
        raise


def _raise_no_space(path: Path, exc: BaseException) -> None:
    """Raise :class:`OutputError` naming ``path`` if ``exc`` (or an exception it was raised
    from, e.g. inside a writer library) says the disk is full; else return."""
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain: the writer may have wrapped the OS error
        if seen is None or isinstance(seen, InversionAuditError) or not isinstance(seen, Exception):
            return  # already named, or an interrupt
        if isinstance(seen, OSError) and seen.errno in _NO_SPACE:
            raise OutputError(
                f"no space left on device writing {path}{_NO_SPACE[seen.errno]}; "
                "nothing was replaced"
            ) from exc
        seen = seen.__cause__ or seen.__context__


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically and return the path."""
    return atomic_write_text(
        path, json.dumps(obj, indent=indent, sort_keys=True, default=str) + "\n"
    )
