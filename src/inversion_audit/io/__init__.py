"""Volume I/O: NIfTI reading in canonical RAS, atomic writing, header scrubbing, hashes."""

from .atomic import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text
from .cache import cache_dir
from .hashing import array_hash, config_hash, file_hash, ids_hash, state_hash
from .nifti import (
    FREE_TEXT_FIELDS,
    NIFTI_SUFFIXES,
    Volume,
    read_labels,
    read_volume,
    scrub_header,
    to_nifti,
    write_volume,
)

__all__ = [
    "FREE_TEXT_FIELDS",
    "NIFTI_SUFFIXES",
    "Volume",
    "array_hash",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "cache_dir",
    "config_hash",
    "file_hash",
    "ids_hash",
    "read_labels",
    "read_volume",
    "scrub_header",
    "state_hash",
    "to_nifti",
    "write_volume",
]
