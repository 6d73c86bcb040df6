"""Reading tensor weights from untrusted files: safetensors, or ``.pt``/``.pth`` state dicts
loaded with ``torch.load(..., weights_only=True)``; nothing in a file is ever executed."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError

if TYPE_CHECKING:
    import torch

__all__ = ["load_weights", "state_mismatch"]


def state_mismatch(
    expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], limit: int = 5
) -> list[str]:
    """What keeps ``state`` from loading strictly into a network whose state dict is
    ``expected``: missing and unexpected tensor names, then shape differences (empty: it fits)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    parts = [f"missing tensors {missing[:limit]}"] if missing else []
    parts += [f"unexpected tensors {unexpected[:limit]}"] if unexpected else []
    wrong = [
        f"{k} has shape {tuple(state[k].shape)}, the network expects {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
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
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(
            f"{p}: refused: the file holds pickled objects beyond plain tensors, which could run code "
            f"when loaded. Only state dicts of tensors are accepted; convert it to .safetensors. ({reason})"
        ) from None
    except Exception as exc:
        raise CheckpointError(
            f"{p}: unreadable torch checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p}: expected a state dict of tensors")
    return state
