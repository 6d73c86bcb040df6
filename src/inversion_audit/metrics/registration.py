"""Registration backends of the deformation metric, and what both make of a displacement field.

Two backends register a reconstruction (moving) to a candidate (fixed):

- ``"ants"``: ANTs (``antspyx``), presets ``paper`` (affine + SyN as the paper ran it) and
  ``fast`` (:data:`~.deformation.DEFORMATION_PRESETS`);
- ``"greedy"``: Yushkevich's greedy (``picsl_greedy``), affine then NCC deformable, preset
  ``fast`` only (:mod:`.registration_greedy`).

Either gives the composed forward displacement field on the fixed grid; both turn it into the
magnitude map and the mean displacement with the functions here, so the numbers mean the same.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = [
    "BACKEND_PRESETS",
    "REGISTRATION_BACKENDS",
    "backend_label",
    "check_registration",
    "displacement_magnitude",
    "lps_to_ras",
    "mean_displacement",
]

#: the registration backends, in the order the front doors offer them (ANTs the default)
REGISTRATION_BACKENDS = ("ants", "greedy")

#: the presets each backend has; ``paper`` is ANTs SyN as the paper ran it, so ANTs only
BACKEND_PRESETS: dict[str, tuple[str, ...]] = {"ants": ("paper", "fast"), "greedy": ("fast",)}

_LABELS = {"ants": "ANTs", "greedy": "greedy"}
#: ITK's physical space is LPS; the project's volumes and fields are RAS
_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


def backend_label(registration: str) -> str:
    """How a backend is named to people: ``ANTs`` or ``greedy``."""
    return _LABELS.get(registration, registration)


def check_registration(registration: str, preset: str) -> None:
    """Refuse an unknown backend, or a preset the backend does not have, with the reason.

    Raises :class:`~inversion_audit.errors.ConfigError` (a ``ValueError``).
    """
    if registration not in REGISTRATION_BACKENDS:
        raise ConfigError(
            f"unknown registration backend {registration!r}; choose "
            f"{' or '.join(REGISTRATION_BACKENDS)}"
        )
    presets = BACKEND_PRESETS[registration]
    if preset not in presets:
        if preset == "paper":
            raise ConfigError(
                f"registration {registration!r} has no 'paper' preset: 'paper' is ANTs SyN as the "
                f"paper ran it; use registration 'ants' with preset 'paper', or "
                f"{registration!r} with preset {' or '.join(repr(p) for p in presets)}"
            )
        raise ConfigError(
            f"unknown deformation preset {preset!r} for registration {registration!r}; "
            f"choose {' or '.join(presets)}"
        )


def lps_to_ras(field: np.ndarray) -> np.ndarray:
    """A displacement field ``(..., 3)`` in ITK's LPS physical mm, as RAS mm (float32)."""
    return (np.asarray(field, dtype=np.float64) * _LPS_TO_RAS).astype(np.float32)


def displacement_magnitude(field: np.ndarray) -> np.ndarray:
    """The norm (mm) of each displacement vector of a field ``(X, Y, Z, 3)``, as float32.

    Computed in float64; the norm does not depend on the field's LPS or RAS axes.
    """
    values = np.asarray(field, dtype=np.float64)
    if values.ndim < 1 or values.shape[-1] != 3:
        raise ValueError(f"a displacement field has 3 components, got shape {values.shape}")
    return np.sqrt((values**2).sum(axis=-1)).astype(np.float32)


def mean_displacement(magnitude: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The mean of a magnitude map (mm) over ``mask`` (a boolean array on its grid), or over
    every voxel without one."""
    values = np.asarray(magnitude)
    return float(
        (values if mask is None else values[np.asarray(mask, bool)]).mean(dtype=np.float64)
    )
