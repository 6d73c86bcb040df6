"""A trained re-identifier as the ``reid`` scoring function of the one pipeline.

:func:`~inversion_audit.matching.pipeline.score_reconstructions` takes it as ``reid_fn``, so
``reid`` is scored in the same call as SSIM and the other metrics (no second pipeline call).
:func:`load_reid_scorer` reads a re-identifier saved by
:func:`~inversion_audit.matching.reid_io.save_reid` (safetensors, hash-checked sidecar) and the
:class:`~inversion_audit.matching.reid.ReidConfig` its sidecar records (mode, patch size, ...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from torch import nn

    from .reid import ReidConfig

__all__ = ["ReidScorer", "load_reid_scorer"]


@dataclass(frozen=True)
class ReidScorer:
    """``reid_fn(R, C, brains)``: verification logits ``[N, M]`` (higher = same subject) of a
    trained re-identifier in its config's mode; ``source`` names it in errors."""

    net: Any  # torch.nn.Module (torch is imported on first use)
    config: ReidConfig
    device: str = "auto"
    source: str = "re-identifier"

    def __call__(self, R: np.ndarray, C: np.ndarray, brains: np.ndarray | None) -> np.ndarray:
        if self.config.mode == "patches":
            from .reid_patches import patch_reid_scores

            if brains is None:
                raise ValueError(f"{self.source}: patch mode needs the candidates' brain masks")
            return patch_reid_scores(self.net, R, C, brains, self.config, self.device)
        from .reid import reid_scores

        return reid_scores(self.net, list(R), list(C), self.config.input_size, self.device)

    def check_grid(self, shape: tuple[int, ...]) -> None:
        """Refuse, before any work, a grid smaller than the patches (``"patches"`` mode)."""
        size = self.config.patch_size
        if self.config.mode == "patches" and min(shape) < size:
            raise ConfigError(
                f"{self.source}: its {size}^3 patches do not fit the grid {tuple(shape)}"
            )


def sidecar_config(net: nn.Module, source: str) -> ReidConfig:
    """The :class:`ReidConfig` a loaded re-identifier's sidecar records (typed and bounded)."""
    from .reid import ReidConfig

    data = getattr(net, "metadata", {}).get("config")
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: the sidecar records no reid 'config' (mode, patches)")
    try:
        return ReidConfig.from_dict(data)
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from None


def load_reid_scorer(path: str | os.PathLike[str], device: str = "auto") -> ReidScorer:
    """Load a re-identifier with :func:`~inversion_audit.matching.reid_io.load_reid` (its
    sidecar checked, the weights' hash compared) and score as its recorded config says."""
    from .reid_io import load_reid

    net = load_reid(path, device=device)
    source = str(path)
    return ReidScorer(net, sidecar_config(net, source), device, source)
