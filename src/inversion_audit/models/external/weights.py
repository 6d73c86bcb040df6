"""Reading external weights without running code: safetensors, or torch pickles with ``weights_only=True``.

nnU-Net checkpoints keep numpy scalars in their logging values; those load through an
explicit allowlist of numpy's scalar constructor, ``numpy.dtype`` and the numeric dtype
classes, and ``_codecs.encode``. Any other global is refused with
:class:`~inversion_audit.errors.CheckpointError`; nothing in the file is executed.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import CheckpointError
from ...io.weights import refusal_reason, state_mismatch, without_unsafe_advice

__all__ = ["numpy_globals", "read_pickle", "read_state_dict", "fill_network"]

#: nesting keys under which checkpoints keep their state dict (MONAI bundles, Lightning, nnU-Net)
STATE_KEYS = ("state_dict", "model", "network_weights", "model_state_dict")

_NUMERIC_DTYPES = (
    "Bool Byte UByte Short UShort Int UInt Long ULong LongLong ULongLong Int8 Int16 Int32 Int64 "
    "UInt8 UInt16 UInt32 UInt64 Float16 Float32 Float64 LongDouble Complex64 Complex128 CLongDouble"
).split()


def numpy_globals() -> list[Any]:
    """The numpy scalar and dtype globals that checkpoints' logging values need, and nothing else."""
    import _codecs

    import numpy as np
    import numpy.dtypes as dtypes

    scalar = np._core.multiarray.scalar
    out: list[Any] = [
        scalar,
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
        _codecs.encode,
    ]
    out += [getattr(dtypes, f"{n}DType") for n in _NUMERIC_DTYPES if hasattr(dtypes, f"{n}DType")]
    return out


def read_pickle(path: str | os.PathLike[str], allow_numpy: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` (with :func:`numpy_globals` when ``allow_numpy``).

    A pickle naming any other global is refused with :class:`CheckpointError`.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: weights file not found")
    allowed = numpy_globals() if allow_numpy else []
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{p}: refused: the pickle names objects beyond tensors and plain values, which could "
            "run code when loaded; nothing was executed. Export the weights as .safetensors. "
            f"({refusal_reason(exc)})"
        ) from None
    except Exception as exc:
        reason = without_unsafe_advice(str(exc))[:200]
        raise CheckpointError(
            f"{p}: unreadable torch checkpoint ({type(exc).__name__}: {reason})"
        ) from None


def read_state_dict(
    path: str | os.PathLike[str], allow_numpy: bool = False
) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors``, ``.pt`` or ``.pth``; nested ``{"model": ...}`` and the like unwrapped.

    A ``module.`` prefix (DataParallel) is removed.
    """
    p = Path(path)
    if p.suffix == ".safetensors":
        from ...io.weights import load_weights

        state: Any = load_weights(p)
    elif p.suffix in (".pt", ".pth"):
        state = read_pickle(p, allow_numpy)
        for key in STATE_KEYS:
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
                break
    else:
        raise CheckpointError(f"{p}: unsupported weights file; use .safetensors, .pt or .pth")
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise CheckpointError(
            f"{p}: expected a state dict of tensors (optionally under one of {', '.join(STATE_KEYS)})"
        )
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _tied(state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Each tensor name -> the names of every tensor sharing its memory (itself included)."""
    groups: dict[tuple, list[str]] = {}
    for name, t in state.items():
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
        groups.setdefault(ident, []).append(name)
    return {name: names for names in groups.values() for name in names}


def fill_network(network: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """Load ``state`` into ``network`` strictly; a mismatch raises :class:`CheckpointError` naming ``path``."""
    expected = network.state_dict()
    state = dict(state)
    for key, names in _tied(expected).items():  # tied tensors saved once (safetensors save_model)
        kept = [n for n in names if n in state]
        if key not in state and kept:
            state[key] = state[kept[0]]
    parts = state_mismatch(expected, state, limit=4)
    if parts:
        raise CheckpointError(f"{path}: weights do not fit {what}: " + "; ".join(parts))
    network.load_state_dict({k: state[k].to(expected[k].dtype) for k in expected}, strict=True)
