"""The one weights format of every network the project saves: safetensors plus a JSON sidecar.

``write_weights("dir/name", state, record)`` writes ``dir/name.safetensors`` and
``dir/name.json`` atomically; the sidecar is ``record`` (its ``format``, ``kind`` and
arguments) plus ``weights_file``, ``weights_sha256`` (the first 16 hex digits of the
safetensors bytes' SHA-256), every tensor's shape and dtype and the package versions.
:func:`read_weights` reads them back as untrusted: the sidecar through
:func:`~inversion_audit.io.untrusted.read_json`, its format, the weights' plain file name,
their hash, then the tensors (:func:`~inversion_audit.io.weights.load_weights`) and each
one's dtype against the sidecar. Every refusal is a
:class:`~inversion_audit.errors.CheckpointError` naming the file. Fields of one kind
(architecture arguments, ...) are checked by its own module through ``check``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from .atomic import atomic_write_bytes, atomic_write_json
from .hashing import file_hash
from .untrusted import read_json
from .weights import load_weights

if TYPE_CHECKING:
    import torch

__all__ = [
    "FORBIDDEN_KEYS",
    "TENSOR_DTYPES",
    "WEIGHT_SUFFIXES",
    "read_record",
    "read_state",
    "read_weights",
    "software_versions",
    "weights_paths",
    "write_weights",
]

#: suffixes of weights files (safetensors, or ``weights_only`` state dicts where a kind allows them)
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
#: record keys refused by :func:`write_weights`: subject ids never go into a sidecar
FORBIDDEN_KEYS = ("ids", "subjects", "train_ids", "private_set", "attack_set")
#: dtypes a sidecar may record for a tensor (``torch.<name>``'s name)
TENSOR_DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8", "bool")
#: a weights file name: plain, beside its sidecar (no folder, no leading dot)
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
_HEX = re.compile(r"[0-9a-f]{16}")
_MAX_TENSORS = 10_000

#: ``check(record, sidecar)``: a kind's own field checks, raising :class:`CheckpointError`
Check = Callable[[dict[str, Any], Path], None]


def software_versions() -> dict[str, str]:
    """Versions of this package, Python, torch, monai, safetensors and numpy (for sidecars)."""
    from .. import __version__

    out = {"inversion_audit": __version__, "python": platform.python_version()}
    for dist in ("torch", "monai", "safetensors", "numpy"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:  # pragma: no cover
            out[dist] = "absent"
    return out


def weights_paths(
    path: str | os.PathLike[str], suffixes: tuple[str, ...] = (".safetensors",)
) -> tuple[Path, Path]:
    """``(weights, sidecar)`` for a weights file, a ``.json`` sidecar or a bare stem.

    For a sidecar or a stem, the weights are the first existing of ``suffixes``
    (``.safetensors`` if none exists).
    """
    p = Path(path)
    if p.suffix in WEIGHT_SUFFIXES:
        return p, p.with_suffix(".json")
    stem = p.with_suffix("") if p.suffix == ".json" else p
    for suffix in suffixes:
        if Path(f"{stem}{suffix}").exists():
            return Path(f"{stem}{suffix}"), Path(f"{stem}.json")
    return Path(f"{stem}.safetensors"), Path(f"{stem}.json")


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def write_weights(
    path: str | os.PathLike[str], state: dict[str, torch.Tensor], record: dict[str, Any]
) -> tuple[Path, Path]:
    """Write ``<stem>.safetensors`` and its ``<stem>.json`` sidecar atomically.

    ``record`` is JSON-safe and holds ``format``; keys naming subject ids
    (:data:`FORBIDDEN_KEYS`) are refused with ``ValueError`` before anything is written.
    Returns ``(weights, sidecar)``.
    """
    from safetensors.torch import save

    bad = [k for k in record if k in FORBIDDEN_KEYS]
    if bad:
        raise ValueError(
            f"sidecar metadata must not hold subject ids (keys {bad}); store ids_hash(ids) instead"
        )
    if not isinstance(record.get("format"), str):
        raise ValueError("a weights sidecar records its format")
    weights, sidecar = weights_paths(path)
    weights = weights.with_suffix(".safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    data = save(state)
    full = {
        **record,
        "weights_file": weights.name,
        "weights_sha256": hashlib.sha256(data).hexdigest()[:16],
        "tensors": {k: list(v.shape) for k, v in state.items()},
        "dtypes": {k: _dtype(v) for k, v in state.items()},
        "versions": software_versions(),
    }
    atomic_write_bytes(weights, data)
    atomic_write_json(sidecar, full)
    return weights, sidecar


def _article(what: str) -> str:
    return "an" if what[:1].lower() in "aeiou" else "a"


def read_record(
    path: str | os.PathLike[str],
    fmt: str,
    what: str,
    suffixes: tuple[str, ...] = (".safetensors",),
    legacy: str | None = None,
) -> tuple[dict[str, Any], Path, Path]:
    """``(record, weights, sidecar)``: the sidecar of a ``what`` (``"reid"``) as untrusted
    JSON, with format ``fmt``; ``legacy`` is what to say of a sidecar that records no format."""
    weights, sidecar = weights_paths(path, suffixes)
    if weights.suffix not in suffixes:
        raise CheckpointError(f"{weights}: {what} weights must be {' or '.join(suffixes)}")
    if not sidecar.exists():
        raise CheckpointError(
            f"{weights}: sidecar {sidecar.name} is missing; it records how to load the weights"
        )
    record = read_json(sidecar, CheckpointError, f"{what} sidecar")
    if legacy and isinstance(record, dict) and "format" not in record:
        raise CheckpointError(f"{sidecar}: {legacy}")
    if not isinstance(record, dict) or record.get("format") != fmt:
        raise CheckpointError(f"{sidecar}: not {_article(what)} {what} sidecar (format {fmt})")
    name = record.get("weights_file")
    if name is not None and not (isinstance(name, str) and _FILE_NAME.fullmatch(name)):
        raise CheckpointError(
            f"{sidecar}: weights_file must be a plain file name beside it, got {name!r:.80}"
        )
    return record, weights, sidecar


def _recorded_dtypes(record: dict[str, Any], sidecar: Path) -> dict[str, str]:
    dtypes = record.get("dtypes")
    if dtypes is None:
        return {}
    if not isinstance(dtypes, dict) or len(dtypes) > _MAX_TENSORS:
        raise CheckpointError(f"{sidecar}: dtypes must be a table of at most {_MAX_TENSORS}")
    for name, dtype in dtypes.items():
        if not isinstance(dtype, str) or dtype not in TENSOR_DTYPES:
            raise CheckpointError(
                f"{sidecar}: dtypes.{name!r:.80} must be one of {', '.join(TENSOR_DTYPES)}"
            )
    return dtypes


def read_state(
    record: dict[str, Any], weights: Path, sidecar: Path, what: str, hash_required: bool = True
) -> dict[str, torch.Tensor]:
    """The tensors of ``weights`` after their hash check against ``record``, each of the
    dtype the sidecar records (where it records dtypes)."""
    digest = record.get("weights_sha256")
    if digest is not None and not (isinstance(digest, str) and _HEX.fullmatch(digest)):
        raise CheckpointError(f"{sidecar}: weights_sha256 must be 16 hex characters")
    if digest is None and hash_required:
        raise CheckpointError(f"{sidecar}: sidecar lacks weights_sha256, the weights' hash")
    dtypes = _recorded_dtypes(record, sidecar)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: {what} weights not found")
    if digest is not None and weights.suffix == ".safetensors" and file_hash(weights) != digest:
        raise CheckpointError(
            f"{weights}: weights do not match their sidecar {sidecar.name} (hash differs)"
        )
    state = load_weights(weights)
    for name, want in dtypes.items():
        got = _dtype(state[name]) if name in state else want
        if got != want:
            raise CheckpointError(f"{weights}: tensor {name} is {got}, its sidecar records {want}")
    return state


def read_weights(
    path: str | os.PathLike[str],
    fmt: str,
    what: str,
    *,
    check: Check | None = None,
    suffixes: tuple[str, ...] = (".safetensors",),
    hash_required: bool = True,
    legacy: str | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(record, state)`` of weights saved by :func:`write_weights` (a stem, sidecar or weights file).

    Checked in this order: the sidecar (untrusted JSON of format ``fmt``), its plain
    ``weights_file`` name, ``check(record, sidecar)`` (the kind's own fields), the weights'
    hash (required unless ``hash_required`` is false; ``.pt``/``.pth`` weights, where
    ``suffixes`` allows them, have none to check), then every tensor's recorded dtype.
    """
    record, weights, sidecar = read_record(path, fmt, what, suffixes, legacy)
    if check is not None:
        check(record, sidecar)
    return record, read_state(record, weights, sidecar, what, hash_required)
