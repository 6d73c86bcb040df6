"""The re-identifier's weights on disk: the project's one weights format
(:mod:`inversion_audit.io.weights_format`: safetensors plus a hash-checked JSON sidecar).

The sidecar records the architecture arguments (bounded integers, checked on load), the
weights' hash, every tensor's shape and dtype and the settings it was trained with; it
never holds subject ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from ..io.weights import state_mismatch
from ..io.weights_format import FORBIDDEN_KEYS, read_weights, weights_paths, write_weights

if TYPE_CHECKING:
    from torch import nn

__all__ = ["REID_FORMAT", "load_reid", "save_reid"]

REID_FORMAT = "inversion-audit-reid/1"


def save_reid(
    path: str | os.PathLike[str], net: nn.Module, metadata: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``<stem>.safetensors`` and the ``<stem>.json`` sidecar atomically (no subject ids)."""
    metadata = dict(metadata or {})
    bad = [k for k in metadata if k in FORBIDDEN_KEYS]
    if bad:
        raise ValueError(f"reid metadata must not hold subject ids (keys {bad})")
    record = {
        **metadata,
        "format": REID_FORMAT,
        "kind": "reid",
        "architecture": "reid",
        "arch_args": dict(net.arch_args),
    }
    return write_weights(path, net.state_dict(), record)


def _check_args(meta: dict[str, Any], sidecar: Path) -> None:
    """The reid's own field: ``arch_args``, two bounded integers."""
    args = meta.get("arch_args")
    ok = isinstance(args, dict) and set(args) == {"base_filters", "embed_dim"}
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in args.values())
    if not ok or not (1 <= args["base_filters"] <= 256 and 1 <= args["embed_dim"] <= 4096):
        raise CheckpointError(f"{sidecar}: arch_args must be base_filters and embed_dim integers")


def load_reid(path: str | os.PathLike[str], device: str = "cpu") -> nn.Module:
    """Load a re-identifier saved by :func:`save_reid`; ``net.metadata`` holds the sidecar.

    The sidecar is untrusted: its format, architecture arguments (bounded integers), the
    weights' hash and dtypes are checked (``read_weights``); every tensor must match the
    rebuilt network by name and shape.
    """
    from ..devices import get_device
    from .reid import build_reid_network

    meta, state = read_weights(path, REID_FORMAT, "reid", check=_check_args)
    weights = weights_paths(path)[0]
    net = build_reid_network(meta["arch_args"]["base_filters"], meta["arch_args"]["embed_dim"])
    wrong = state_mismatch(net.state_dict(), state)
    if wrong:
        raise CheckpointError(
            f"{weights}: tensors do not match the reid network: {'; '.join(wrong)}"
        )
    net.load_state_dict(state, strict=True)
    net.metadata = meta  # type: ignore[attr-defined]
    return net.eval().to(get_device(device))
