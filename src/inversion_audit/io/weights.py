"""Reading tensor weights from untrusted files: safetensors, or ``.pt``/``.pth`` state dicts
loaded with ``torch.load(..., weights_only=True)``; nothing in a file is ever executed.

No message repeats PyTorch's advice to load a refused file unsafely (``weights_only`` set
to ``False``, allowlisting its globals): :func:`refusal_reason` and :func:`without_unsafe_advice`
keep only what the file holds."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError

if TYPE_CHECKING:
    import torch

__all__ = ["load_weights", "refusal_reason", "state_mismatch", "without_unsafe_advice"]

_ADVICE = re.compile(
    r"weights_only|safe_globals|trust|can still be loaded|will likely succeed|file an issue",
    re.IGNORECASE,
)


def without_unsafe_advice(text: str) -> str:
    """``text`` less every sentence that advises loading unsafely (``weights_only``, allowlists)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    sentences = re.split(r"(?<=[.!?])\s+|\n+", text)
    return " ".join(s.strip() for s in sentences if s.strip() and not _ADVICE.search(s))


def refusal_reason(exc: BaseException) -> str:
    """What a refused pickle holds (``it names io.open``), without PyTorch's advice."""
    text = str(exc)
    found = re.search(r"GLOBAL ([A-Za-z_][\w.]*)", text)
    if found:
        return f"it names {found.group(1)}"
    found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    reason = without_unsafe_advice(found.group(1)) if found else ""
    return reason[:160] or type(exc).__name__


def _kind(dtype: torch.dtype) -> str:
    if dtype.is_floating_point:
        return "floating point"
    if dtype.is_complex:
        return "complex"
    return "boolean" if str(dtype) == "torch.bool" else "integer"


def state_mismatch(
    expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], limit: int = 5
) -> list[str]:
    """What keeps ``state`` from loading strictly into a network whose state dict is
    ``expected``: missing and unexpected tensor names, then shape and dtype differences
    (empty: it fits). A dtype of another kind (int8 where the network holds float32) does
    not fit; another precision of the same kind (float16 for float32) does."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    parts = [f"missing tensors {missing[:limit]}"] if missing else []
    parts += [f"unexpected tensors {unexpected[:limit]}"] if unexpected else []
    wrong = [
        f"{k} has shape {tuple(state[k].shape)}, the network expects {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    wrong += [
        f"{k} is {str(state[k].dtype).removeprefix('torch.')}, the network expects "
        f"{str(expected[k].dtype).removeprefix('torch.')} ({_kind(expected[k].dtype)})"
        for k in expected
        if k in state and _kind(state[k].dtype) != _kind(expected[k].dtype)
    ]
    return parts + wrong[:limit]


def load_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a tensor dict from ``.safetensors``, or from ``.pt``/``.pth`` with ``weights_only=True``.

    A pickle holding anything but plain tensors (e.g. objects whose unpickling would run
    code) is refused with :class:`CheckpointError`; nothing in it is executed.
    """
    import torch

    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint weights not found")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{p}: not a valid safetensors file ({exc})") from exc
    if p.suffix not in (".pt", ".pth"):
        raise CheckpointError(
            f"{p}: unsupported checkpoint type; use .safetensors (or .pt/.pth state dicts)"
        )
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{p}: refused: the file holds pickled objects beyond plain tensors, which could run code "
            "when loaded; nothing was executed. Only state dicts of tensors are accepted; convert "
            f"it to .safetensors. ({refusal_reason(exc)})"
        ) from None
    except Exception as exc:
        reason = without_unsafe_advice(str(exc))[:200]
        raise CheckpointError(
            f"{p}: unreadable torch checkpoint ({type(exc).__name__}: {reason})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p}: expected a state dict of tensors")
    return state
