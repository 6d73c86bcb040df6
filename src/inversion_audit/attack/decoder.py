"""The attacker's inversion decoder D^: mirrors the target's encoder and ends in one image channel."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import ARCHITECTURES
from ..models.blocks import conv_block
from ..models.latent import Latent, check_threat_model
from ..models.segnet import convs_per_level

__all__ = ["InversionDecoder", "build_inversion_decoder", "check_decoder_matches"]


class InversionDecoder(nn.Module):
    """Decoder from a target's latent to an image (B, 1, X, Y, Z).

    Parameters
    ----------
    target_arch : ``"unet"`` or ``"segnet"``: the decoder mirrors that encoder.
        ``"external"``: the decoder is sized from the tapped latent alone (see
        :class:`~inversion_audit.models.external.ExternalTarget`): up-convolutions double the
        grid per stage from the bottleneck's size to the input grid, halving the channels.
    target_args : the target's ``arch_args`` (depth, base_filters, kernel_size, pool_size, norm;
        for ``"external"``: ``grid``, ``axes`` and ``latent`` with the tapped shapes).
    threat_model : ``"bottleneck"``: up-convolutions from Z alone. ``"bottleneck+skips"``:
        U-Net skip features are concatenated at each level; SegNet unpools with the
        encoder's pooling indices.

    The output is unbounded; :func:`~inversion_audit.attack.reconstruct` clips it to [0, 1].
    After training, ``target_weights_sha256`` identifies the target weights it inverts
    (checked by :func:`~inversion_audit.checkpoints.load_inversion`).
    """

    target_weights_sha256: str | None = None

    arch = "inversion"

    def __init__(
        self, target_arch: str, target_args: dict[str, Any], threat_model: str = "bottleneck"
    ) -> None:
        super().__init__()
        check_threat_model(threat_model)
        if target_arch not in (*ARCHITECTURES, "external"):
            raise ValueError(f"unknown target architecture {target_arch!r}")
        self.arch_args = {
            "target_arch": target_arch,
            "target_args": dict(target_args),
            "threat_model": threat_model,
        }
        self.threat_model = threat_model
        self.target_arch = target_arch
        if target_arch == "external":
            self._build_from_latent(target_args)
            return
        n, z = int(target_args["depth"]), int(target_args["base_filters"])
        x, y, norm = (
            int(target_args["kernel_size"]),
            int(target_args["pool_size"]),
            target_args.get("norm", "batch"),
        )
        self.uses_skips = threat_model == "bottleneck+skips" and target_arch == "unet"
        self.uses_indices = threat_model == "bottleneck+skips" and target_arch == "segnet"
        if target_arch == "unet":
            ch = [z * 2**k for k in range(n + 1)]
            self.up = nn.ModuleList(
                nn.ConvTranspose3d(ch[k + 1], ch[k], y, stride=y) for k in range(n)
            )
            width = 2 if self.uses_skips else 1
            self.dec = nn.ModuleList(conv_block(width * ch[k], ch[k], 2, x, norm) for k in range(n))
        else:
            ch = [z * 2**k for k in range(n)]
            n_convs = convs_per_level(n)
            self.up = nn.ModuleList(
                nn.MaxUnpool3d(y)
                if self.uses_indices
                else nn.ConvTranspose3d(ch[k], ch[k], y, stride=y)
                for k in range(n)
            )
            self.dec = nn.ModuleList(
                conv_block(ch[k], ch[max(k - 1, 0)], n_convs[k], x, norm) for k in range(n)
            )
        self.head = nn.Conv3d(ch[0], 1, 1)

    def _build_from_latent(self, args: dict[str, Any]) -> None:
        """Stages from the bottleneck's grid to the input grid, each at most doubling an axis."""
        lat = args["latent"]
        axes = [int(a) for a in args.get("axes", range(len(args["grid"])))]
        grid = tuple(int(args["grid"][a]) for a in axes)  # network axis order
        channels, size = int(lat["shape"][0]), tuple(int(s) for s in lat["shape"][1:])
        if len(size) != len(grid) or any(s > g for s, g in zip(size, grid, strict=True)):
            raise ValueError(f"latent grid {size} does not fit inside the input grid {grid}")
        self.uses_skips = self.threat_model == "bottleneck+skips"
        self.uses_indices = False
        self.sizes: list[tuple[int, ...]] = []
        while not self.sizes or self.sizes[-1] != grid:
            cur = self.sizes[-1] if self.sizes else size
            self.sizes.append(
                tuple(min(2 * c, g) if c < g else c for c, g in zip(cur, grid, strict=True))
            )
        skip_shapes = [tuple(int(v) for v in s) for s in lat.get("skip_shapes", [])]
        # each skip joins the stage whose grid is closest to its own (resampled if it differs)
        self.skip_stage = [
            min(
                range(len(self.sizes)),
                key=lambda k, s=s: abs(math.log(math.prod(self.sizes[k]) / math.prod(s[1:]))),
            )
            for s in skip_shapes
        ]
        self.skip_sizes = [s[1:] for s in skip_shapes]
        self.output_axes = tuple(axes.index(a) for a in range(len(axes)))
        widths, ups, decs = channels, [], []
        for k, nxt in enumerate(self.sizes):
            cur = self.sizes[k - 1] if k else size
            out = max(8, min(256, channels >> (k + 1)))
            stride = tuple(2 if n > c else 1 for n, c in zip(nxt, cur, strict=True))
            ups.append(nn.ConvTranspose3d(widths, out, stride, stride=stride))
            extra = sum(
                s[0]
                for s, j in zip(skip_shapes, self.skip_stage, strict=True)
                if j == k and self.uses_skips
            )
            decs.append(conv_block(out + extra, out, 2, 3, "batch"))
            widths = out
        self.up, self.dec = nn.ModuleList(ups), nn.ModuleList(decs)
        self.head = nn.Conv3d(widths, 1, 1)

    def _forward_from_latent(self, latent: Latent) -> torch.Tensor:
        if self.uses_skips and len(latent.skips) != len(self.skip_stage):
            raise ValueError(
                f"threat model {self.threat_model!r} needs {len(self.skip_stage)} skip features, "
                f"latent has {len(latent.skips)}"
            )
        x = latent.bottleneck
        for k, size in enumerate(self.sizes):
            x = self.up[k](x)
            if tuple(x.shape[2:]) != size:
                x = F.interpolate(x, size=size, mode="trilinear", align_corners=False)
            if self.uses_skips:
                joined = [
                    s
                    if tuple(s.shape[2:]) == size
                    else F.interpolate(s, size=size, mode="trilinear")
                    for s, j in zip(latent.skips, self.skip_stage, strict=True)
                    if j == k
                ]
                x = torch.cat([x, *(s.to(x.dtype) for s in joined)], dim=1)
            x = self.dec[k](x)
        x = self.head(x)
        if self.output_axes != tuple(range(len(self.output_axes))):
            x = x.permute(0, 1, *(2 + a for a in self.output_axes))
        return x

    def forward(self, latent: Latent) -> torch.Tensor:
        """D^(Z): the reconstructed image batch."""
        if self.target_arch == "external":
            return self._forward_from_latent(latent)
        n = len(self.dec)
        if self.uses_skips and len(latent.skips) != n:
            raise ValueError(
                f"threat model {self.threat_model!r} needs {n} skip features, latent has {len(latent.skips)}"
            )
        if self.uses_indices and len(latent.indices) != n:
            raise ValueError(
                f"threat model {self.threat_model!r} needs {n} pooling indices, latent has {len(latent.indices)}"
            )
        x = latent.bottleneck
        for k in reversed(range(n)):
            x = self.up[k](x, latent.indices[k]) if self.uses_indices else self.up[k](x)
            if self.uses_skips:
                x = torch.cat([latent.skips[k], x], dim=1)
            x = self.dec[k](x)
        return self.head(x)


def build_inversion_decoder(
    target_model: nn.Module, threat_model: str = "bottleneck"
) -> InversionDecoder:
    """An untrained inversion decoder mirroring ``target_model``'s encoder."""
    return InversionDecoder(target_model.arch, target_model.arch_args, threat_model)


def check_decoder_matches(target_model: nn.Module, decoder: InversionDecoder) -> None:
    """Raise ``ValueError`` unless ``decoder`` was built for ``target_model``'s architecture."""
    want = (target_model.arch, dict(target_model.arch_args))
    have = (decoder.arch_args["target_arch"], dict(decoder.arch_args["target_args"]))
    if want != have:
        raise ValueError(
            f"inversion decoder was built for {have[0]} {have[1]}, not for target {want[0]} {want[1]}"
        )
