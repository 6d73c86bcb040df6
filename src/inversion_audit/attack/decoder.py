"""The attacker's inversion decoder D^: mirrors the target's encoder and ends in one image channel."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..models.blocks import conv_block
from ..models.latent import Latent, check_threat_model
from ..models.segnet import convs_per_level

__all__ = ["InversionDecoder", "build_inversion_decoder", "check_decoder_matches"]


class InversionDecoder(nn.Module):
    """Decoder from a target's latent to an image (B, 1, X, Y, Z).

    Parameters
    ----------
    target_arch : ``"unet"`` or ``"segnet"``; the decoder mirrors that encoder.
    target_args : the target's ``arch_args`` (depth, base_filters, kernel_size, pool_size, norm).
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
        if target_arch not in ("unet", "segnet"):
            raise ValueError(f"unknown target architecture {target_arch!r}")
        self.arch_args = {
            "target_arch": target_arch,
            "target_args": dict(target_args),
            "threat_model": threat_model,
        }
        n, z = int(target_args["depth"]), int(target_args["base_filters"])
        x, y, norm = (
            int(target_args["kernel_size"]),
            int(target_args["pool_size"]),
            target_args.get("norm", "batch"),
        )
        self.threat_model = threat_model
        self.target_arch = target_arch
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

    def forward(self, latent: Latent) -> torch.Tensor:
        """D^(Z): the reconstructed image batch."""
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
