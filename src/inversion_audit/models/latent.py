"""The attack surface of a target network: its latent code and the threat models."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["Latent", "THREAT_MODELS", "check_threat_model"]

#: ``bottleneck``: the paper's attacker sees only Z = Enc(X).
#: ``bottleneck+skips``: the attacker also taps the U-Net skip features (SegNet: pooling indices).
THREAT_MODELS = ("bottleneck", "bottleneck+skips")


def check_threat_model(name: str) -> str:
    """Return ``name`` if it is a known threat model, else raise ``ValueError``."""
    if name not in THREAT_MODELS:
        raise ValueError(f"unknown threat model {name!r}; choose one of {', '.join(THREAT_MODELS)}")
    return name


@dataclass(frozen=True)
class Latent:
    """What the encoder emits for an input batch.

    Attributes
    ----------
    bottleneck : the code Z at the coarsest level, shape (B, C, X', Y', Z').
    skips : U-Net skip features, finest level first (empty for SegNet).
    indices : SegNet max-pooling indices, finest level first (empty for U-Net).
    """

    bottleneck: torch.Tensor
    skips: tuple[torch.Tensor, ...] = ()
    indices: tuple[torch.Tensor, ...] = ()

    def for_threat_model(self, threat_model: str) -> Latent:
        """Keep only what an attacker under ``threat_model`` sees."""
        if check_threat_model(threat_model) == "bottleneck":
            return Latent(self.bottleneck)
        return self

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Latent:
        """Move every tensor to ``device``."""

        def move(ts: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            return tuple(t.to(device, non_blocking=non_blocking) for t in ts)

        return replace(
            self,
            bottleneck=self.bottleneck.to(device, non_blocking=non_blocking),
            skips=move(self.skips),
            indices=move(self.indices),
        )

    def pin_memory(self) -> Latent:
        """Page-locked CPU copies, for non-blocking copies to CUDA."""
        return Latent(
            self.bottleneck.pin_memory(),
            tuple(t.pin_memory() for t in self.skips),
            tuple(t.pin_memory() for t in self.indices),
        )

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """All tensors: bottleneck, then skips, then indices."""
        return (self.bottleneck, *self.skips, *self.indices)

    @property
    def nbytes(self) -> int:
        """Memory held by the tensors, in bytes."""
        return sum(t.element_size() * t.nelement() for t in self.tensors())

    def select(self, rows: list[int]) -> Latent:
        """The latent of a sub-batch (``rows`` index the batch axis)."""
        return Latent(
            self.bottleneck[rows],
            tuple(t[rows] for t in self.skips),
            tuple(t[rows] for t in self.indices),
        )

    @staticmethod
    def cat(latents: list[Latent]) -> Latent:
        """Concatenate latents along the batch axis."""
        import torch

        first = latents[0]
        return Latent(
            torch.cat([lat.bottleneck for lat in latents]),
            tuple(torch.cat([lat.skips[k] for lat in latents]) for k in range(len(first.skips))),
            tuple(
                torch.cat([lat.indices[k] for lat in latents]) for k in range(len(first.indices))
            ),
        )
