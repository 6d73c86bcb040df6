"""Content hashes for cache keys and provenance."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VolumeError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["file_hash", "array_hash", "config_hash", "ids_hash", "state_hash"]


def file_hash(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex, first 16 characters).

    A missing or unreadable file (a symbolic link loop, a folder, no permission) raises
    :class:`~inversion_audit.errors.VolumeError` naming it.
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    except OSError as exc:
        reason = {
            errno.ELOOP: "symbolic link loop",
            errno.ENOENT: "file not found",
            errno.EISDIR: "is a folder, not a file",
            errno.EACCES: "permission denied",
        }.get(exc.errno, exc.strerror or type(exc).__name__)
        raise VolumeError(f"{path}: cannot read file to hash it ({reason})") from None
    return h.hexdigest()[:16]


def array_hash(array: np.ndarray, affine: np.ndarray | None = None) -> str:
    """SHA-256 of an array's dtype, shape and bytes (and affine, if given)."""
    h = hashlib.sha256()
    a = np.ascontiguousarray(array)
    h.update(str(a.dtype).encode())
    h.update(str(a.shape).encode())
    h.update(a.tobytes())
    if affine is not None:
        h.update(np.ascontiguousarray(affine, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def config_hash(obj: Any) -> str:
    """SHA-256 of a JSON-serialisable object with sorted keys."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ids_hash(ids: list[str] | tuple[str, ...]) -> str:
    """Hash of a set of subject ids: records *which* subjects without naming them."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def state_hash(model: nn.Module) -> str:
    """SHA-256 (16 hex) of a model's tensors: identifies the exact weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
