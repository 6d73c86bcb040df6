"""The network one run attacks in one fold, as its attacker and as the hospital see it.

An undefended run attacks the fold's target; a defended run the target its defence
releases: the same target with perturbed latent codes (latent noise), a target trained with
DP-SGD, or one trained on obfuscated scans (whose attacker's decoder trains through the
obfuscation only when it knows the domain). An external model's run attacks the frozen
model. :class:`Network` carries what the run's stage keys hash about that network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data import Fold
from ..io import config_hash
from .defences_config import DefenceSetting
from .layout import StudyPaths
from .plan import Run, StudyPlan

if TYPE_CHECKING:
    from .context import StudyContext

__all__ = ["Network", "protocol_network", "external_network", "vae_path", "obfuscation_config"]


@dataclass(frozen=True)
class Network:
    """The attacked network of one run and fold.

    ``inversion_inputs`` is what the inversion stage key hashes about it, ``reid_key`` what
    the re-identifier's key does, ``metadata`` what the decoder's sidecar adds; ``load``
    gives the network as ``"attack"`` (what the decoder trains through) or ``"release"``
    (what the hospital releases and segments with) sees it.
    """

    inversion_inputs: dict[str, Any]
    reid_key: str
    metadata: dict[str, Any] | None
    load: Callable[[str], Any]


def vae_path(paths: StudyPaths, arch: str, variant: str, fold: Fold) -> Path:
    """One VAE per fold, variant and architecture, shared by every obfuscation strength."""
    return paths.vae_dir(arch, variant, fold.index)


def obfuscation_config(setting: DefenceSetting) -> Any:
    """The ``ObfuscationConfig`` of an obfuscation setting (its seed filled by the config)."""
    from ..defences.obfuscation import ObfuscationConfig

    return ObfuscationConfig(**setting.obfuscation())


def obfuscator(plan: StudyPlan, ctx: StudyContext, run: Run, fold: Fold) -> Any:
    """The obfuscation of an obfuscation run (its VAE, trained on the fold's attack set)."""
    from ..defences.obfuscation import Obfuscator
    from ..defences.vae_io import load_vae

    cfg = obfuscation_config(run.defence)
    return Obfuscator(
        load_vae(vae_path(ctx.paths, run.arch, run.variant, fold), cfg, ctx.device), cfg
    )


def protocol_network(
    plan: StudyPlan, run: Run, ctx: StudyContext, fold: Fold, target_key: str
) -> Network:
    """The target of a protocol run (``target_key``: the stage key of the target the run's
    defence releases; the undefended target's for an undefended run)."""
    s = run.defence
    path = ctx.paths.target(run.arch, run.target_variant, fold.index)

    def load(purpose: str) -> Any:
        from ..checkpoints import load_target

        target = load_target(path, device=ctx.device)
        if s is not None and s.kind == "latent-noise":
            from ..defences.latent_noise import release_latents

            release_latents(target, s.latent_noise())
        if s is not None and s.kind == "obfuscation" and (purpose == "release" or s.knows_domain):
            from ..defences.obfuscation import obfuscate_inputs

            obfuscate_inputs(target, obfuscator(plan, ctx, run, fold))
        return target

    if s is None:
        return Network({"target": target_key}, target_key, None, load)
    inputs = {"target": target_key, "knows": s.knows_domain}
    return Network(inputs, config_hash(inputs), {"defence": s.tag}, load)


def external_network(model: Any, fold: Fold, pre: dict[str, Any]) -> Network:
    """An external model's frozen network (``pre``: the run's preprocessing, as a dict)."""
    model_key = config_hash({"model": model.describe(), "fold": fold.private_set})
    inputs = {"model": model_key, "pre": pre}
    meta = {"external_model": model.describe()}
    return Network(inputs, config_hash(inputs), meta, lambda purpose: model.target())
