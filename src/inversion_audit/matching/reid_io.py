"""The re-identifier's weights on disk: safetensors plus a JSON sidecar, loaded as untrusted.

The sidecar records the architecture arguments (bounded integers, checked on load), the
weights' hash and the settings it was trained with; it never holds subject ids.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["REID_FORMAT", "load_reid", "save_reid"]

REID_FORMAT = "inversion-audit-reid/1"


def save_reid(
    path: str | os.PathLike[str], net: nn.Module, metadata: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``<stem>.safetensors`` and the ``<stem>.json`` sidecar atomically (no subject ids)."""
    from safetensors.torch import save

    from ..checkpoints import FORBIDDEN_KEYS, _versions, checkpoint_paths
    from ..io import atomic_write_bytes, atomic_write_json

    metadata = dict(metadata or {})
    bad = [k for k in metadata if k in FORBIDDEN_KEYS]
    if bad:
        raise ValueError(f"reid metadata must not hold subject ids (keys {bad})")
    weights, sidecar = checkpoint_paths(path)
    weights = weights.with_suffix(".safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    data = save(state)
    record = {
        **metadata,
        "format": REID_FORMAT,
        "kind": "reid",
        "architecture": "reid",
        "arch_args": dict(net.arch_args),
        "weights_file": weights.name,
        "weights_sha256": hashlib.sha256(data).hexdigest()[:16],
        "tensors": {k: list(v.shape) for k, v in state.items()},
        "versions": _versions(),
    }
    atomic_write_bytes(weights, data)
    atomic_write_json(sidecar, record)
    return weights, sidecar


def load_reid(path: str | os.PathLike[str], device: str = "cpu") -> nn.Module:
    """Load a re-identifier saved by :func:`save_reid`; ``net.metadata`` holds the sidecar.

    The sidecar is untrusted: its format, architecture arguments (bounded integers) and the
    weights' hash are checked; every tensor must match the rebuilt network by name and shape.
    """
    from ..checkpoints import checkpoint_paths, load_weights
    from ..devices import get_device
    from ..io import file_hash
    from ..io.untrusted import read_json
    from ..io.weights import state_mismatch

    weights, sidecar = checkpoint_paths(path)
    meta = read_json(sidecar, CheckpointError, "reid sidecar")
    if not isinstance(meta, dict) or meta.get("format") != REID_FORMAT:
        raise CheckpointError(f"{sidecar}: not a reid sidecar (format {REID_FORMAT})")
    args = meta.get("arch_args")
    ok = isinstance(args, dict) and set(args) == {"base_filters", "embed_dim"}
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in args.values())
    if not ok or not (1 <= args["base_filters"] <= 256 and 1 <= args["embed_dim"] <= 4096):
        raise CheckpointError(f"{sidecar}: arch_args must be base_filters and embed_dim integers")
    if weights.suffix != ".safetensors":
        raise CheckpointError(f"{weights}: reid weights must be .safetensors")
    if weights.exists() and file_hash(weights) != meta.get("weights_sha256"):
        raise CheckpointError(f"{weights}: weights do not match their sidecar (hash differs)")
    state = load_weights(weights)
    from .reid import build_reid_network

    net = build_reid_network(args["base_filters"], args["embed_dim"])
    wrong = state_mismatch(net.state_dict(), state)
    if wrong:
        raise CheckpointError(
            f"{weights}: tensors do not match the reid network: {'; '.join(wrong)}"
        )
    net.load_state_dict(state, strict=True)
    net.metadata = meta  # type: ignore[attr-defined]
    return net.eval().to(get_device(device))
