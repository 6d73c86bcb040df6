"""The attack pair: a target model and the inversion decoder trained against it, loaded as one.

A target is a paper checkpoint (weights + JSON sidecar), MONAI weights with a network
class, a MONAI bundle folder or an nnU-Net trained model folder (:func:`target_source`),
the sources a study's ``[model]`` table accepts. :func:`load_target_any` loads one to train
a decoder against; :func:`load_attack_pair` loads a decoder and the target it records.
The decoder's sidecar is read once and says what the target is: a paper network (its
checkpoint and sidecar read once), or an external model rebuilt as recorded, never by
running code from its files. The pair is then checked (architecture, the target weights'
hash, the preprocessing). Errors are :class:`~inversion_audit.errors.CheckpointError` or
:class:`~inversion_audit.errors.ConfigError` naming the file. Torch is imported only inside
functions.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, ConfigError
from .models.external.args import SOURCES

if TYPE_CHECKING:
    from torch import nn

    from .data import PreprocessConfig
    from .models.external import ExternalModel

__all__ = [
    "AttackPair",
    "LoadedTarget",
    "TARGET_SOURCES",
    "TargetSpec",
    "load_attack_pair",
    "load_target_any",
    "model_stamp",
    "target_problem",
    "target_source",
]

#: what a target may be: this package's checkpoint, or an external model's source
TARGET_SOURCES = ("checkpoint", *SOURCES)
_WHAT = {
    "checkpoint": "a target checkpoint",
    "monai": "MONAI weights",
    "bundle": "a MONAI bundle folder",
    "nnunet": "an nnU-Net trained model folder",
}
#: the files of a MONAI bundle or nnU-Net folder whose change means another model
_MODEL_FILES = ("configs/*", "models/*", "*.json", "fold_*/checkpoint_*.pth")
_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")


def _folder_source(path: Path) -> str | None:
    if (path / "configs").is_dir():
        return "bundle"
    if (path / "plans.json").is_file():
        return "nnunet"
    return None


def target_source(path: str | os.PathLike[str], network: str | None = None) -> str:
    """``"bundle"``, ``"nnunet"`` (folders), ``"monai"`` (weights with ``network``) or ``"checkpoint"``.

    A folder that is neither a bundle nor an nnU-Net folder is a :class:`CheckpointError`.
    """
    p = Path(path)
    if p.is_dir():
        source = _folder_source(p)
        if source is None:
            raise CheckpointError(
                f"{p}: a folder that is neither a MONAI bundle (configs/) nor an nnU-Net "
                "trained model folder (plans.json)"
            )
        return source
    return "monai" if network else "checkpoint"


def target_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be a target, in a line naming it (``None`` when it may be one).

    Torch-free and cheap (no file is parsed): for a form's check before anything loads.
    """
    p = Path(path).expanduser()
    if not p.exists():
        return f"target model {p}: not found"
    if p.is_dir():
        if _folder_source(p) is None:
            return (
                f"target model {p}: a folder that is neither a MONAI bundle (configs/) nor an "
                "nnU-Net trained model folder (plans.json)"
            )
        return None
    if not p.name.lower().endswith(_WEIGHT_SUFFIXES):
        return f"target model {p}: not a weights file (.safetensors, .pt or .pth) or model folder"
    return None


def model_stamp(path: str | os.PathLike[str]) -> int:
    """Latest modification time (ns) of a target's or decoder's files: a checkpoint and its
    sidecar, or a model folder's configs, plans and weights (a cache key: a change reloads)."""
    p = Path(path)
    if p.is_dir():
        stamps = [f.stat().st_mtime_ns for g in _MODEL_FILES for f in p.glob(g) if f.is_file()]
        return max(stamps, default=p.stat().st_mtime_ns)
    try:
        stamp = p.stat().st_mtime_ns
    except OSError:
        raise CheckpointError(f"{p}: checkpoint not found") from None
    sidecar = p.with_suffix(".json")
    return max(stamp, sidecar.stat().st_mtime_ns) if sidecar.is_file() else stamp


@dataclass(frozen=True)
class TargetSpec:
    """A target path and what an external source needs to rebuild it.

    ``network``/``network_args``: MONAI weights' class and literal arguments; ``fold``: an
    nnU-Net fold (0..99 or ``"all"``); ``latent``: the module to tap (``None``: ``"auto"``).
    """

    path: Path
    network: str | None = None
    network_args: dict[str, Any] | None = None
    fold: int | str | None = None
    latent: str | None = None

    @classmethod
    def of(cls, target: str | os.PathLike[str] | TargetSpec) -> TargetSpec:
        """``target`` as a spec (a path alone names a checkpoint or a model folder)."""
        return target if isinstance(target, TargetSpec) else cls(Path(target).expanduser())

    @property
    def source(self) -> str:
        """:func:`target_source` of the path and network."""
        return target_source(self.path, self.network)

    def check_options(self, source: str) -> None:
        """Refuse options the source does not take (:class:`ConfigError` naming them)."""
        if self.network_args is not None and not self.network:
            raise ConfigError(f"{self.path}: network_args are given without the network class")
        if self.fold is not None and source != "nnunet":
            raise ConfigError(
                f"{self.path}: fold applies to nnU-Net folders only, not to {_WHAT[source]}"
            )
        if self.network and source != "monai":
            raise ConfigError(
                f"{self.path}: network applies to MONAI weights only, not to {_WHAT[source]}"
            )
        if self.latent is not None and source == "checkpoint":
            raise ConfigError(
                f"{self.path}: latent applies to external models, not to a checkpoint"
            )


@dataclass(frozen=True)
class LoadedTarget:
    """A target ready to train a decoder against.

    ``preprocess`` is the checkpoint's recorded preprocessing, or for an external model the
    given one on the model's grid (nnU-Net: its plans' spacing and patch). ``record`` is an
    external model's description (``None`` for a checkpoint).
    """

    target: nn.Module
    preprocess: PreprocessConfig
    source: str
    record: dict[str, Any] | None = None


@dataclass(frozen=True)
class AttackPair:
    """A target, the inversion decoder trained against it, the decoder's preprocessing."""

    target: nn.Module
    decoder: nn.Module
    preprocess: PreprocessConfig
    device: str
    source: str


def _checkpoint(path: Path, device: str) -> nn.Module:
    from .checkpoints import checkpoint_paths, load_target

    weights, sidecar = checkpoint_paths(path)
    if weights.is_file() and not sidecar.exists():
        raise CheckpointError(
            f"{weights}: sidecar {sidecar.name} is missing, so this is not a target checkpoint; "
            "MONAI weights need their network class (--network)"
        )
    return load_target(path, device=device)


def _external(
    spec: TargetSpec, source: str, preprocess: PreprocessConfig
) -> tuple[ExternalModel, PreprocessConfig]:
    """The external model on the preprocessing's grid, and the preprocessing that feeds it."""
    from .models.external import load_external

    if not spec.path.exists():
        raise CheckpointError(f"{spec.path}: model not found")
    if source == "monai" and preprocess.shape is None:
        raise ConfigError(f"{spec.path}: MONAI weights need the input grid (preprocess shape)")
    try:
        model = load_external(
            source,
            spec.path,
            network=spec.network,
            network_args=spec.network_args,
            fold=0 if spec.fold is None else spec.fold,
            grid=preprocess.shape,
            latent=spec.latent or "auto",
        )
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if str(spec.path) in text else f"{spec.path}: {text}") from exc
    if model.in_channels != 1:
        raise ConfigError(
            f"{model.weights}: {model.channels_key}: the cohort gives one image per subject; "
            f"this model takes {model.in_channels}"
        )
    if model.preprocess is not None:  # nnU-Net: its plans' spacing and patch size
        nyul = preprocess.intensity == "nyul"
        pre = dataclasses.replace(
            model.preprocess,
            skull_strip=preprocess.skull_strip,
            intensity=preprocess.intensity,
            nyul_landmarks=None if nyul else model.preprocess.nyul_landmarks,
        )
    elif preprocess.shape is None:  # a bundle's own grid
        pre = dataclasses.replace(preprocess, shape=tuple(model.grid))
    else:  # the model was built on the grid given
        pre = preprocess
    return model, pre


def load_target_any(
    target: str | os.PathLike[str] | TargetSpec,
    preprocess: PreprocessConfig | None = None,
    device: str = "cpu",
) -> LoadedTarget:
    """Load a target of any source to train a decoder against.

    A checkpoint brings its own preprocessing (``preprocess`` is not used); an external
    model needs ``preprocess`` (its ``shape`` is a MONAI network's input grid; ``None``
    takes a bundle's own grid; an nnU-Net folder's plans replace spacing and grid).
    """
    from .devices import get_device

    spec = TargetSpec.of(target)
    source = spec.source
    spec.check_options(source)
    dev = str(get_device(device))
    if source == "checkpoint":
        model = _checkpoint(spec.path, dev)
        pre = _recorded_preprocess(model.metadata, spec.path)
        if pre is None:
            raise CheckpointError(
                f"{spec.path}: sidecar has no preprocess config to prepare the attack set with"
            )
        return LoadedTarget(model, pre, source)
    if preprocess is None:
        raise ConfigError(f"{spec.path}: an external model needs the preprocessing that feeds it")
    external, pre = _external(spec, source, preprocess)
    return LoadedTarget(external.target().to(dev), pre, source, external.describe())


def _plain(value: Any) -> Any:
    """``value`` as JSON would record it (tuples as lists)."""
    return json.loads(json.dumps(value))


def _check_recorded(spec: TargetSpec, recorded: dict[str, Any], inversion: Path) -> None:
    """The path and the options given must be what the decoder's sidecar records."""
    source = recorded["source"]
    kind = _folder_source(spec.path) if spec.path.is_dir() else "monai"
    if kind != source:
        what = _WHAT[kind] if kind else "a folder that is neither a bundle nor an nnU-Net folder"
        raise CheckpointError(
            f"{spec.path}: is {what}, but the decoder {inversion} was trained against "
            f"{_WHAT[source]} ({recorded['network']})"
        )
    spec.check_options(source)
    want = {**recorded, "latent": recorded["latent"]["module"]}
    given = {
        "network": spec.network,
        "network_args": spec.network_args,
        "fold": spec.fold,
        "latent": None if spec.latent == "auto" else spec.latent,
    }
    for key, value in given.items():
        if value is not None and _plain(value) != _plain(want.get(key)):
            raise CheckpointError(
                f"{inversion}: the decoder was trained against {key} {want.get(key)!r}, "
                f"not {value!r}"
            )


def _recorded_preprocess(meta: dict[str, Any], path: Path) -> PreprocessConfig | None:
    """The preprocessing a sidecar records; an invalid one is an error naming ``path``."""
    from .data.sidecar import preprocess_config

    try:
        return preprocess_config(meta)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _check_pair(target: nn.Module, decoder: nn.Module, target_path: Path, inversion: Path) -> None:
    """Architecture, the target weights' hash and the preprocessing of the pair."""
    from .attack.decoder import check_decoder_matches
    from .io import state_hash

    try:
        check_decoder_matches(target, decoder)
    except ValueError as exc:
        raise CheckpointError(f"{inversion}: {exc}") from None
    recorded = decoder.target_weights_sha256
    if recorded and recorded != state_hash(target):
        raise CheckpointError(
            f"{inversion}: decoder was trained against different target weights than {target_path}"
        )
    mine = _recorded_preprocess(decoder.metadata, inversion)
    theirs = _recorded_preprocess(getattr(target, "metadata", None) or {}, target_path)
    if mine is not None and theirs is not None and mine != theirs:
        a, b = mine.to_dict(), theirs.to_dict()
        keys = ", ".join(k for k in sorted(a) if a[k] != b[k])
        raise CheckpointError(
            f"{inversion}: the decoder's preprocessing differs from its target's in {keys}: "
            f"it was not trained against {target_path}"
        )


def load_attack_pair(
    target: str | os.PathLike[str] | TargetSpec,
    inversion: str | os.PathLike[str],
    device: str = "cpu",
) -> AttackPair:
    """The decoder at ``inversion`` and the target it was trained against, checked as a pair.

    ``target`` is a checkpoint, MONAI weights, a bundle or an nnU-Net folder; an external
    model is rebuilt as the decoder's sidecar records it (network, arguments, fold, grid,
    tapped module, weights' hash), so a :class:`TargetSpec`'s options are optional and, when
    given, must agree with that record.
    """
    from .checkpoints import load_inversion
    from .devices import get_device
    from .models.external import rebuild_target

    spec = TargetSpec.of(target)
    inv = Path(inversion).expanduser()
    dev = str(get_device(device))
    decoder = load_inversion(inv, device=dev)  # its sidecar, read once, says what the target is
    args = decoder.arch_args
    if args["target_arch"] == "external":
        _check_recorded(spec, args["target_args"], inv)
        model = rebuild_target(spec.path, args["target_args"]).to(dev)
        source = args["target_args"]["source"]
    else:
        source = spec.source
        if source != "checkpoint":
            raise CheckpointError(
                f"{inv}: not a decoder trained against an external model, but {spec.path} is "
                f"{_WHAT[source]}; the decoder was trained against a {args['target_arch']} "
                "target checkpoint"
            )
        spec.check_options(source)
        model = _checkpoint(spec.path, dev)
    _check_pair(model, decoder, spec.path, inv)
    pre = _recorded_preprocess(decoder.metadata, inv) or _recorded_preprocess(
        getattr(model, "metadata", None) or {}, spec.path
    )
    if pre is None:
        raise CheckpointError(f"{inv}: sidecar has no 'preprocess' config to prepare inputs with")
    return AttackPair(model, decoder, pre, dev, source)
