"""The on-disk cache of registration results (``cache_dir()/deformation/<key>.npz``).

A key hashes both volumes (arrays and affines), the backend and its settings
(:func:`~.deformation.deformation_cache_path`); an entry holds the magnitude map, the
warped moving volume, the registration's wall and CPU seconds and, when asked for, the
displacement field.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..io import atomic_write_bytes, cache_dir, config_hash

__all__ = ["cache_entry_path", "load_entry", "save_entry"]


def cache_entry_path(key_fields: dict) -> Path:
    """The cache file of a result keyed by ``key_fields`` (JSON-able)."""
    return cache_dir() / "deformation" / f"{config_hash(key_fields)}.npz"


def save_entry(
    path: Path,
    magnitude: np.ndarray,
    warped: np.ndarray,
    seconds: float,
    displacement: np.ndarray | None,
    cpu_seconds: float = float("nan"),
) -> None:
    """Cache a result; the (large) displacement field only when it was asked for."""
    arrays = {
        "magnitude": magnitude,
        "warped": warped,
        "seconds": np.float64(seconds),
        "cpu_seconds": np.float64(cpu_seconds),
    }
    if displacement is not None:
        arrays["displacement"] = displacement
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_entry(
    path: Path, need_displacement: bool
) -> tuple[np.ndarray, np.ndarray, float, float, np.ndarray | None] | None:
    """A cached result ``(magnitude, warped, seconds, cpu_seconds, field)``, or ``None`` when
    missing, damaged or lacking a needed field (``cpu_seconds`` NaN in older entries)."""
    try:
        with np.load(path) as z:
            if need_displacement and "displacement" not in z.files:
                return None
            field = z["displacement"] if "displacement" in z.files else None
            cpu = float(z["cpu_seconds"]) if "cpu_seconds" in z.files else float("nan")
            return z["magnitude"], z["warped"], float(z["seconds"]), cpu, field
    except Exception:  # a damaged cache entry is recomputed
        return None
