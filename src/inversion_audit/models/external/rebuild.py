"""Rebuilding the external model an inversion decoder was trained against, from its sidecar.

The decoder's sidecar records the source, the network (with its literal arguments for a
MONAI network, the fold for nnU-Net), the input grid, the tapped module and the weights'
hash; with the model's path (weights file, bundle folder, nnU-Net folder) that is enough
to rebuild it safely and check that it is the same model.
"""

from __future__ import annotations

import os
from typing import Any

from ...errors import CheckpointError, ConfigError
from .args import check_external_args
from .model import ExternalTarget

__all__ = ["rebuild_target"]


def rebuild_target(path: str | os.PathLike[str], target_args: dict[str, Any]) -> ExternalTarget:
    """The external network at ``path`` as the decoder recorded it (``arch_args.target_args``).

    Raises :class:`CheckpointError` naming ``path`` when the model there is not that one
    (another network, grid, tapped module or weights).
    """
    from . import load_external

    try:
        check_external_args(target_args, "arch_args.target_args")
        model = load_external(
            target_args["source"],
            path,
            network=target_args["network"],
            network_args=target_args.get("network_args"),
            fold=target_args.get("fold", 0),
            grid=tuple(target_args["grid"]),
            latent=target_args["latent"]["module"],
        )
    except ConfigError as exc:
        raise CheckpointError(f"{path}: cannot rebuild the decoder's model: {exc}") from exc
    target = model.target()
    differs = sorted(
        k
        for k in {*target.arch_args, *target_args}
        if target.arch_args.get(k) != target_args.get(k)
    )
    if differs:
        raise CheckpointError(
            f"{path}: not the model the decoder was trained against ({', '.join(differs)} differ)"
        )
    return target
