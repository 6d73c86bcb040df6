"""Defended runs: every ``[[defences]]`` setting as one more run of the study.

For each fold, variant and architecture (after the undefended runs):

- ``utility``: the target's Dice on the fold's private set, undefended and per setting
  (``utility/<arch>_<variant>[_<tag>]_fold<k>.json``, with ε for DP-SGD);
- ``dp-sgd``: a target trained with Opacus (``checkpoints/<arch>_<variant>_<tag>/``);
- ``latent-noise``: the undefended target releasing perturbed codes;
- ``obfuscation``: a VAE trained on the attack set, a target trained on obfuscated private
  scans; the attacker's decoder trains on obfuscated (``-known``) or plain (``-unknown``)
  attack scans, and the private scans are always released obfuscated;

then per threat model the inversion, reconstruction, ``reid`` (where it is a metric) and
scoring stages, the run named ``<arch>_<variant>_<threat>_<tag>`` (the ``threat_model``
column of ``scores.csv`` reads ``<threat>_<tag>``). Identification is always scored against
the true originals.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import Fold
from ..errors import CohortError
from ..io import atomic_write_json, config_hash
from .defences_config import DefenceSetting, defence_settings
from .layout import run_name

if TYPE_CHECKING:
    from torch import nn

    from .runner import _Study

__all__ = ["run_defences", "defended_threat", "utility_path", "UTILITY_DIR"]

UTILITY_DIR = "utility"
# the ObfuscationConfig fields the VAE depends on (the mapping's levels and bins are not)
VAE_KEYS = ("seed", "vae_filters", "vae_latent", "vae_epochs", "vae_lr", "vae_beta")


def defended_threat(threat: str, setting: DefenceSetting) -> str:
    """The ``threat_model`` column of a defended run: ``bottleneck_latent-noise-0.5``."""
    return f"{threat}_{setting.tag}"


def utility_path(study_root: Path, arch: str, variant: str, fold: int, tag: str | None) -> Path:
    """``utility/<arch>_<variant>[_<tag>]_fold<k>.json``."""
    name = f"{arch}_{variant}" + (f"_{tag}" if tag else "")
    return Path(study_root) / UTILITY_DIR / f"{name}_fold{fold}.json"


class _Defended:
    """One setting in one fold/variant/arch: where its target is and how it is released."""

    def __init__(
        self, study: _Study, fold: Fold, variant: str, arch: str, setting: DefenceSetting | None
    ) -> None:
        self.study, self.fold, self.variant, self.arch = study, fold, variant, arch
        self.setting = setting
        own_target = setting is not None and setting.retrains_target
        self.target_variant = f"{variant}_{setting.target_tag}" if own_target else variant
        self.target_path = study.paths.target(arch, self.target_variant, fold.index)
        self.pcfg = study.fold_pre_config(variant, fold)
        # one VAE per fold, variant and architecture, shared by every obfuscation strength
        # (it depends on the attack set and the vae_* settings, not on the intensity mapping)
        self.vae_variant = f"{variant}_obfuscation"
        self.vae_path = study.paths.target(arch, self.vae_variant, fold.index).parent / "vae"
        self.obfuscation = None
        # non-members reconstructed by this fold's networks (issue 18), where the study has them
        self.holdout = list(getattr(study, "holdout_of", lambda f: [])(fold))
        if setting is not None and setting.kind == "obfuscation":
            from ..defences.obfuscation import ObfuscationConfig

            self.obfuscation = ObfuscationConfig(**setting.obfuscation(study.config.study.seed))

    @property
    def label(self) -> str:
        tag = f" {self.setting.tag}" if self.setting else ""
        return f"fold {self.fold.index} {self.arch} {self.variant}{tag}"

    def obfuscator(self):
        from ..defences.obfuscation import Obfuscator, load_vae

        return Obfuscator(
            load_vae(self.vae_path, self.obfuscation, self.study.device), self.obfuscation
        )

    def load(self, purpose: str) -> nn.Module:
        """The target as ``purpose`` sees it: ``"release"`` (what the hospital's model releases
        and segments) or ``"attack"`` (what the attacker's decoder trains through)."""
        from ..checkpoints import load_target

        target = load_target(self.target_path, device=self.study.device)
        s = self.setting
        if s is not None and s.kind == "latent-noise":
            from ..defences.latent_noise import release_latents

            release_latents(target, s.latent_noise(self.study.config.study.seed))
        if s is not None and s.kind == "obfuscation" and (purpose == "release" or s.knows_domain):
            from ..defences.obfuscation import obfuscate_inputs

            obfuscate_inputs(target, self.obfuscator())
        return target


def _train_vae(d: _Defended) -> str:
    from ..defences.obfuscation import save_vae, train_vae

    study = d.study
    attack_ids, attack_cohort = study.attack_ids(d.fold)
    vae_settings = {k: v for k, v in d.obfuscation.__dict__.items() if k in VAE_KEYS}
    key = config_hash({"vae": vae_settings, "pre": d.pcfg.to_dict(), **study.attack_key(d.fold)})

    def work() -> list[Path]:
        images = [study.pre(i, d.pcfg, attack_cohort).image for i in attack_ids]
        vae, _ = train_vae(images, d.obfuscation, device=study.device)
        return save_vae(d.vae_path, vae, d.obfuscation)

    study.stages.run(f"fold{d.fold.index}/{d.arch}_{d.vae_variant}/vae", key, work)
    return key


def _train_target(d: _Defended, target_key: str) -> str:
    """The setting's own target (DP-SGD, obfuscation); the stage key its runs build on."""
    from ..checkpoints import save_checkpoint, training_metadata
    from ..training import train_target
    from ..training.target import TRAINING_REVISION

    study, s = d.study, d.setting
    if s is None or not s.retrains_target:
        extra = s.latent_noise(study.config.study.seed) if s is not None else None
        return config_hash({"target": target_key, "latent_noise": extra}) if extra else target_key
    tcfg = study.config.target_config(d.arch)
    extra: dict[str, Any] = {}
    if s.kind == "dp-sgd":
        from ..training.dp import with_dp

        tcfg = with_dp(tcfg, s.dp_config())
    else:
        extra["vae"] = _train_vae(d)
    key = config_hash(
        {
            "target": tcfg.to_dict(),
            "training_revision": TRAINING_REVISION,
            "pre": d.pcfg.to_dict(),
            "private": study.files_key(d.fold.private_set),
            "fold": d.fold.index,
            **extra,
        }
    )

    def work() -> list[Path]:
        pres = [study.pre(i, d.pcfg) for i in d.fold.private_set]
        if any(p.labels is None for p in pres):
            raise CohortError(
                f"{study.cohort.root}: training a target needs labels for every private subject"
            )
        images = [p.image for p in pres]
        if d.obfuscation is not None:
            obfuscate = d.obfuscator()
            images = [obfuscate(img) for img in images]
        model, history = train_target(
            images,
            [p.labels for p in pres],
            tcfg,
            device=study.device,
            progress=study.stage_progress(d.label),
        )
        meta = training_metadata(tcfg, history, d.pcfg, list(d.fold.private_set))
        meta.update(fold=d.fold.index, variant=d.variant, defence=s.target_tag)
        if history.privacy:
            meta["privacy"] = history.privacy
        return list(save_checkpoint(d.target_path, model, meta))

    study.stages.run(f"fold{d.fold.index}/{d.arch}_{d.target_variant}/target", key, work)
    return key


def _utility(d: _Defended, key: str) -> None:
    """The released target's Dice on the fold's private set (what the defence costs)."""
    from ..checkpoints import read_metadata
    from ..metrics.dice import dice_baseline
    from ..training import segment
    from ..training.target import apply_label_map

    study, tag = d.study, d.setting.tag if d.setting else None
    path = utility_path(study.paths.root, d.arch, d.variant, d.fold.index, tag)
    label_map = study.config.target_config(d.arch).label_map

    def work() -> list[Path]:
        target = d.load("release")
        dice: dict[str, float] = {}
        for sid in [*d.fold.private_set, *d.holdout]:
            pre = study.pre(sid, d.pcfg)
            if pre.labels is None:
                continue
            truth = apply_label_map(pre.labels, label_map, sid)
            _, dice[sid] = dice_baseline(
                lambda img: segment(target, img, device=study.device), pre.image, truth
            )
        privacy = read_metadata(d.target_path).get("privacy") if d.setting else None
        record = {
            "arch": d.arch,
            "variant": d.variant,
            "fold": d.fold.index,
            "defence": tag,
            "dice": {k: _num(v) for k, v in dice.items() if k not in d.holdout},
            "holdout_dice": {k: _num(v) for k, v in dice.items() if k in d.holdout},
            "privacy": privacy,
        }
        return [atomic_write_json(path, record)]

    study.stages.run(
        f"fold{d.fold.index}/{d.arch}_{d.variant}{'_' + tag if tag else ''}/utility",
        config_hash({"target": key, "ids": study.files_key([*d.fold.private_set, *d.holdout])}),
        work,
    )


def _attack(d: _Defended, threat: str, key: str) -> None:
    """Inversion, reconstruction (released codes of the private scans), the re-identifier
    where ``reid`` is a metric, and scoring."""
    from .protocol import _score, reconstruct_stage, train_inversion_stage

    study, s = d.study, d.setting
    column = defended_threat(threat, s)
    run = run_name(d.arch, d.variant, column)
    inv_key = train_inversion_stage(
        study,
        d.fold,
        d.variant,
        threat,
        run,
        {"target": key, "knows": s.knows_domain},
        lambda: d.load("attack"),
        {"defence": s.tag},
    )
    ids = [*d.fold.private_set, *d.holdout]
    rec_key = reconstruct_stage(
        study,
        d.fold,
        d.variant,
        run,
        inv_key,
        lambda: d.load("release"),
        {"inversion": inv_key, "ids": study.files_key(ids)},
    )
    reid_key = None
    if "reid" in study.config.matching.metrics:
        # the attacker's re-identifier, trained on cross-fitted reconstructions through the
        # target as this attacker sees it, so a defence is judged against the strongest matcher
        from .reid_stage import train_reid_stage

        attacker = config_hash({"target": key, "knows": s.knows_domain})
        reid_key = train_reid_stage(
            study, d.fold, d.variant, d.arch, threat, attacker, run, lambda: d.load("attack")
        )
    # scored against the true originals; the 'dice' metric segments with the released target
    _score(
        study,
        d.fold,
        d.variant,
        d.arch,
        column,
        rec_key,
        reid_key,
        segmenter=lambda: d.load("release"),
    )


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def defended_runs(config) -> list[str]:
    """Names of every defended run of ``config`` (for collecting score parts)."""
    return [
        run_name(a, v, defended_threat(t, s))
        for s in defence_settings(config.defences)
        for v in config.variants
        for a in config.archs
        for t in config.threat_models
    ]


def run_defences(study: _Study, fold: Fold, variant: str, arch: str, target_key: str) -> None:
    """Utility of the undefended target, then every defended setting's stages."""
    settings = defence_settings(study.config.defences)
    if not settings:
        return
    _utility(_Defended(study, fold, variant, arch, None), target_key)
    keys: dict[str, str] = {}  # obfuscation's two attackers share one VAE and target
    for setting in settings:
        d = _Defended(study, fold, variant, arch, setting)
        if setting.target_tag not in keys or not setting.retrains_target:
            keys[setting.target_tag] = _train_target(d, target_key)
        key = keys[setting.target_tag]
        _utility(d, key)
        for threat in study.config.threat_models:
            _attack(d, threat, key)
