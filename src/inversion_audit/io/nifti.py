"""Reading and writing NIfTI volumes in canonical RAS orientation."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import VolumeError
from .atomic import atomic_path

__all__ = [
    "Volume",
    "read_volume",
    "read_labels",
    "write_volume",
    "to_nifti",
    "scrub_header",
    "FREE_TEXT_FIELDS",
    "MAX_GRID_AXIS",
    "MAX_GRID_VOXELS",
    "NIFTI_SUFFIXES",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: Header fields that may carry free text (names, dates, scanner notes).
FREE_TEXT_FIELDS = ("descrip", "aux_file", "db_name", "intent_name")
#: the largest grid a header may claim, per axis and in all: checked before any voxel is read
MAX_GRID_AXIS = 2048
MAX_GRID_VOXELS = 2**31


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D volume in canonical RAS voxel order.

    Attributes
    ----------
    array : float32 (or integer for labels) array of shape (X, Y, Z), RAS order.
    affine : 4x4 voxel-to-world (RAS mm) matrix.
    path : the source file, if read from disk.
    """

    array: np.ndarray
    affine: np.ndarray
    path: Path | None = None
    meta: dict = field(default_factory=dict, repr=False)  # may hold header free text

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis."""
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))

    @property
    def origin(self) -> tuple[float, float, float]:
        """World coordinate (mm) of voxel (0, 0, 0)."""
        return tuple(float(v) for v in self.affine[:3, 3])

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else "<memory>"

    def with_array(self, array: np.ndarray) -> Volume:
        """Return a volume on the same grid holding ``array``."""
        if array.shape[:3] != self.array.shape[:3]:
            raise ValueError(f"array shape {array.shape} does not match grid {self.array.shape}")
        return Volume(array, self.affine.copy(), self.path, dict(self.meta))


#: what reading a cut-off or damaged (gzip) file raises
_TRUNCATED = (EOFError, zlib.error, gzip.BadGzipFile)


def _truncated(path: Path, exc: BaseException) -> VolumeError:
    return VolumeError(f"{path}: truncated or corrupt file ({type(exc).__name__}: {exc})")


def _is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def _load_canonical(path: Path) -> nib.Nifti1Image:
    if not path.exists():
        raise VolumeError(f"{path}: file not found")
    if not _is_nifti(path):
        raise VolumeError(f"{path}: not a NIfTI file (expected .nii or .nii.gz)")
    try:
        img = nib.load(str(path))
    except (
        OSError,
        EOFError,
        zlib.error,
        gzip.BadGzipFile,
        nib.filebasedimages.ImageFileError,
    ) as exc:
        if isinstance(exc, _TRUNCATED):
            raise _truncated(path, exc) from exc
        raise VolumeError(f"{path}: unreadable NIfTI ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # nibabel raises many kinds on corrupt headers
        raise VolumeError(f"{path}: corrupt NIfTI header ({type(exc).__name__}: {exc})") from exc
    _check_grid(path, img.shape)
    if len(img.shape) < 3 or (len(img.shape) > 3 and any(s != 1 for s in img.shape[3:])):
        raise VolumeError(f"{path}: expected a 3D volume, got shape {img.shape}")
    try:
        canonical = nib.as_closest_canonical(img)
    except _TRUNCATED as exc:  # reorienting reads the voxels, which may end early
        raise _truncated(path, exc) from exc
    except Exception as exc:
        raise VolumeError(f"{path}: invalid affine ({exc})") from exc
    # the on-disk grid before reorientation, to write results back onto it
    canonical.source_grid = {
        "affine": img.affine.copy(),
        "shape": tuple(int(s) for s in img.shape[:3]),
    }
    canonical.header_text = _header_text(img.header)
    return canonical


def _check_grid(path: Path, shape: tuple[int, ...]) -> None:
    """Refuse, from the header alone, a grid that is empty or too large to allocate."""
    dims = [int(s) for s in shape]
    if any(d < 1 for d in dims):
        raise VolumeError(f"{path}: header claims an empty grid {tuple(dims)}")
    if any(d > MAX_GRID_AXIS for d in dims[:3]) or math.prod(dims) > MAX_GRID_VOXELS:
        raise VolumeError(
            f"{path}: header claims a {'x'.join(map(str, dims))} grid, larger than "
            f"{MAX_GRID_AXIS} voxels per axis or {MAX_GRID_VOXELS} voxels in all; refused unread"
        )


def _header_text(header) -> dict[str, bytes]:
    """The non-empty free-text fields of a NIfTI header (kept in memory, never logged)."""
    out = {}
    for key in FREE_TEXT_FIELDS:
        try:
            value = bytes(np.asarray(header[key]).tobytes()).rstrip(b"\0")
        except (KeyError, ValueError):
            continue
        if value:
            out[key] = value
    return out


def _read_data(img: nib.Nifti1Image, path: Path) -> np.ndarray:
    try:
        data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise _truncated(path, exc) from exc
    return data.reshape(data.shape[:3])


def read_volume(path: str | os.PathLike[str], check_finite: bool = True) -> Volume:
    """Read a NIfTI image as float32 in canonical RAS orientation.

    Scaled integer storage (``scl_slope``/``scl_inter``) is applied. Raises
    :class:`VolumeError` naming the file when it is missing, corrupt, truncated,
    not 3D, or (with ``check_finite``) holds NaN or Inf voxels.
    """
    path = Path(path)
    img = _load_canonical(path)
    data = _read_data(img, path).astype(np.float32, copy=False)
    if check_finite and not np.isfinite(data).all():
        n_bad = int((~np.isfinite(data)).sum())
        raise VolumeError(f"{path}: {n_bad} NaN or Inf voxels")
    return Volume(
        np.ascontiguousarray(data),
        img.affine.astype(np.float64),
        path,
        {"source_grid": img.source_grid, "header_text": img.header_text},
    )


def read_labels(path: str | os.PathLike[str]) -> Volume:
    """Read a label map as int32 in canonical RAS orientation."""
    path = Path(path)
    img = _load_canonical(path)
    data = _read_data(img, path)
    if np.issubdtype(data.dtype, np.floating):
        if not np.isfinite(data).all():
            raise VolumeError(f"{path}: NaN or Inf voxels in label map")
        if not np.allclose(data, np.rint(data)):
            raise VolumeError(f"{path}: label map holds non-integer values")
        data = np.rint(data)
    return Volume(
        np.ascontiguousarray(data.astype(np.int32)),
        img.affine.astype(np.float64),
        path,
        {"source_grid": img.source_grid, "header_text": img.header_text},
    )


def scrub_header(header: nib.Nifti1Header) -> nib.Nifti1Header:
    """Blank the free-text header fields that may identify a patient."""
    for key in FREE_TEXT_FIELDS:
        header[key] = b""
    return header


def to_nifti(
    volume: Volume | np.ndarray, affine: np.ndarray | None = None, scrub: bool = True
) -> nib.Nifti1Image:
    """Build a :class:`nibabel.Nifti1Image` from a volume or an array plus affine.

    A volume read from disk carries its header's free text (``descrip``, ...) in
    ``meta["header_text"]``; it is written back only with ``scrub=False``.
    """
    text: dict[str, bytes] = {}
    if isinstance(volume, Volume):
        array, affine = volume.array, volume.affine
        text = volume.meta.get("header_text", {})
    else:
        array = np.asarray(volume)
        if affine is None:
            raise ValueError("an affine is required when writing a bare array")
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    img = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    if scrub:
        scrub_header(img.header)
    else:
        for key, value in text.items():
            img.header[key] = value
    return img


def write_volume(
    path: str | os.PathLike[str],
    volume: Volume | np.ndarray,
    affine: np.ndarray | None = None,
    scrub: bool = True,
) -> Path:
    """Write a volume to ``.nii``/``.nii.gz`` atomically, preserving its affine.

    With ``scrub`` (the default) the free-text header fields are blanked; without it, a
    volume read from disk keeps its source header's free text.
    """
    path = Path(path)
    if not _is_nifti(path):
        raise VolumeError(f"{path}: output must end in .nii or .nii.gz")
    img = to_nifti(volume, affine, scrub=scrub)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path
