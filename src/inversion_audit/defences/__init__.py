"""Defences against model inversion, each with a strength that a study can sweep.

- ``dp-sgd``: the target is trained with Opacus (:mod:`inversion_audit.training.dp`).
- ``latent-noise``: Gaussian noise (σ relative to the code's sd) or quantisation on every
  latent code the model releases (:mod:`.latent_noise`).
- ``obfuscation``: Popescu et al.'s (2022) VAE plus a secret non-bijective intensity mapping applied to
  scans before the target sees them (:mod:`.obfuscation`).

Importing this package does not import torch.
"""

from __future__ import annotations

DEFENCE_KINDS = ("dp-sgd", "latent-noise", "obfuscation")

__all__ = ["DEFENCE_KINDS"]
