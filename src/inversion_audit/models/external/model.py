"""An external model as the attack sees it: the network, where its latent is tapped, its input."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..latent import Latent
from .latent import LatentTaps, tap_latent

if TYPE_CHECKING:
    from ...data import PreprocessConfig

__all__ = ["ExternalModel", "ExternalTarget"]


class ExternalTarget(nn.Module):
    """A frozen external network with the target networks' interface: ``encode(x)`` gives a :class:`Latent`.

    ``arch`` is ``"external"``; ``arch_args`` record the source, network, input and the
    tapped modules with their shapes, so an inversion decoder can be sized (and rebuilt
    from its sidecar) without the network.
    """

    arch = "external"

    def __init__(self, network: nn.Module, taps: LatentTaps, arch_args: dict[str, Any]) -> None:
        super().__init__()
        self.network = network
        self.taps = taps
        self.arch_args = arch_args

    def encode(self, x: torch.Tensor) -> Latent:
        """The tapped bottleneck and skip features for an input batch on the model's grid."""
        want = (int(self.arch_args["in_channels"]), *self.arch_args["grid"])
        if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
            raise ValueError(
                f"{self.arch_args['network']}: expected input (B, {', '.join(map(str, want))}), "
                f"got {tuple(x.shape)}; preprocess to the model's grid"
            )
        return tap_latent(self.network, self.taps, self.model_input(x))

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (project axis order, intensities in [0, 1]) as the network saw its inputs.

        The spatial axes are permuted by ``arch_args["axes"]`` (network axis k is project
        axis ``axes[k]``); ``normalization`` ``"zscore"`` standardises each image and channel,
        ``"zscore-mask"`` does so inside its nonzero voxels and sets the rest to 0 (nnU-Net).
        """
        axes = tuple(self.arch_args.get("axes", range(x.ndim - 2)))
        if axes != tuple(range(len(axes))):
            x = x.permute(0, 1, *(2 + a for a in axes))
        scheme = self.arch_args.get("normalization", "none")
        if scheme in ("zscore", "zscore-mask"):
            dims = tuple(range(2, x.ndim))
            xf = x.float()
            mask = (xf != 0).float() if scheme == "zscore-mask" else torch.ones_like(xf)
            n = mask.sum(dims, keepdim=True).clamp_min(1.0)
            mean = (xf * mask).sum(dims, keepdim=True) / n
            std = (((xf - mean) * mask) ** 2).sum(dims, keepdim=True).div(n).sqrt()
            x = ((xf - mean) / std.clamp_min(1e-8) * mask).to(x.dtype)
        return x.contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.model_input(x))


@dataclass(eq=False)
class ExternalModel:
    """What every model source returns.

    Attributes
    ----------
    network : the rebuilt network with its weights, in eval mode.
    source : ``"monai"``, ``"bundle"`` or ``"nnunet"``.
    name : the network class.
    in_channels, grid : the input the audit feeds, (C,) and (X, Y, Z) in the project's axis order.
    taps : the tapped modules and their output shapes.
    weights : the weights file; ``weights_sha256`` its hash (16 hex).
    preprocess : the project preprocessing closest to what the model saw (nnU-Net), or ``None``.
    preprocess_differences : where that preprocessing differs from the model's own.
    axes : network axis k is project axis ``axes[k]`` (nnU-Net reads (z, y, x) and transposes).
    normalization : what :meth:`ExternalTarget.model_input` applies: ``"none"``, ``"zscore"``
        or ``"zscore-mask"``.
    build : what else rebuilds the network from its path (MONAI ``network_args``, nnU-Net ``fold``).
    channels_key : the file and key that set ``in_channels`` (named when the cohort cannot feed it).
    """

    network: nn.Module
    source: str
    name: str
    in_channels: int
    grid: tuple[int, ...]
    taps: LatentTaps
    weights: Path
    weights_sha256: str
    preprocess: PreprocessConfig | None = None
    preprocess_differences: tuple[str, ...] = ()
    axes: tuple[int, ...] = (0, 1, 2)
    normalization: str = "none"
    build: dict[str, Any] = field(default_factory=dict)
    channels_key: str = "model.network_args.in_channels"
    _target: ExternalTarget | None = field(default=None, repr=False)

    def describe(self) -> dict[str, Any]:
        """JSON-safe record for sidecars and reports."""
        return {
            "source": self.source,
            "network": self.name,
            "in_channels": self.in_channels,
            "grid": list(self.grid),
            "weights_file": self.weights.name,
            "weights_sha256": self.weights_sha256,
            "axes": list(self.axes),
            "normalization": self.normalization,
            "latent": self.taps.to_dict(),
            **self.build,
            "preprocess_differences": list(self.preprocess_differences),
        }

    @property
    def network_grid(self) -> tuple[int, ...]:
        """The grid in the network's own axis order."""
        return tuple(self.grid[a] for a in self.axes)

    def target(self) -> ExternalTarget:
        """The network wrapped with ``encode`` (one wrapper per model)."""
        if self._target is None:
            args = self.describe()
            args.pop("preprocess_differences")
            self._target = ExternalTarget(self.network.eval(), self.taps, args)
        return self._target
