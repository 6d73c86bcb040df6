"""The ``[[defences]]`` list of a study config: each defence, its strengths and its settings.

.. code-block:: toml

    [[defences]]
    kind = "latent-noise"               # "dp-sgd" | "latent-noise" | "obfuscation"
    strengths = [0.25, 0.5, 1.0, 2.0]    # latent-noise: σ relative to the code's sd

    [[defences]]
    kind = "dp-sgd"
    strengths = [0.5, 1.0, 2.0]          # noise multipliers
    max_grad_norm = 1.0
    delta = 1e-3
    sampling = "poisson"

    [[defences]]
    kind = "obfuscation"
    strengths = [32, 16, 8]              # output levels of the intensity mapping
    knows_domain = [false, true]         # attacks without and with the obfuscated domain

Each (defence, strength[, knows_domain]) is one *setting*; each setting is one more run
of the study per (fold, variant, arch, threat model), named
``<arch>_<variant>_<threat>_<tag>`` with tags like ``latent-noise-0.5``,
``latent-noise-q8`` (quantisation to 8 levels), ``dp-sgd-1`` or ``obfuscation-8-known``.
Latent noise and obfuscation draw random numbers with the table's ``seed``, else the study's
(filled once when the config is read).
Standard library only (the GUI parses run names without torch).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..defences import DEFENCE_KINDS
from ..errors import ConfigError

__all__ = [
    "DEFENCE_KINDS",
    "DefenceSetting",
    "DefenceSpec",
    "all_settings",
    "parse_defence_tag",
    "parse_defences",
]

#: kind -> keys allowed beside ``kind`` and ``strengths`` (with their types)
_PARAMS: dict[str, dict[str, tuple[type, ...]]] = {
    "dp-sgd": {
        "max_grad_norm": (int, float),
        "delta": (float,),
        "sampling": (str,),
        "accountant": (str,),
    },
    "latent-noise": {"mode": (str,), "levels": (int,), "seed": (int,)},
    "obfuscation": {
        "knows_domain": (bool, list),
        "bins": (int,),
        "seed": (int,),
        "vae_filters": (int,),
        "vae_latent": (int,),
        "vae_epochs": (int,),
        "vae_lr": (int, float),
        "vae_beta": (int, float),
    },
}

#: the kinds whose settings draw random numbers (``seed``: ``study.seed`` unless given)
SEEDED = tuple(kind for kind in DEFENCE_KINDS if "seed" in _PARAMS[kind])

_TAG = re.compile(
    rf"^({'|'.join(map(re.escape, DEFENCE_KINDS))})-(q?)([0-9][0-9.e+-]*?)(?:-(known|unknown))?$"
)


def format_strength(value: float) -> str:
    """``0.5`` -> ``"0.5"``, ``2.0`` -> ``"2"``: the strength as it appears in run names."""
    return format(float(value), "g")


@dataclass(frozen=True)
class DefenceSetting:
    """One defended setting: a defence at one strength (and, for obfuscation, one attacker).

    ``params`` holds the kind's other keys from the config (e.g. ``max_grad_norm``), with
    ``seed`` filled for the kinds that draw random numbers (:data:`SEEDED`).
    ``knows_domain`` is ``None`` except for obfuscation.
    """

    kind: str
    strength: float
    params: dict[str, Any] = field(default_factory=dict)
    knows_domain: bool | None = None

    @property
    def quantise(self) -> bool:
        """Latent noise swept over quantisation levels instead of σ."""
        return self.kind == "latent-noise" and self.params.get("mode") == "quantise"

    @property
    def tag(self) -> str:
        """The run-name suffix, e.g. ``latent-noise-0.5`` or ``obfuscation-8-known``."""
        text = f"{self.kind}-{'q' if self.quantise else ''}{format_strength(self.strength)}"
        if self.knows_domain is not None:
            text += "-known" if self.knows_domain else "-unknown"
        return text

    @property
    def target_tag(self) -> str:
        """Tag of the target this setting trains (``None``-free): obfuscation attackers share one."""
        return f"{self.kind}-{format_strength(self.strength)}"

    @property
    def retrains_target(self) -> bool:
        """DP-SGD and obfuscation train their own target; latent noise reuses the undefended one."""
        return self.kind != "latent-noise"

    @property
    def stronger_is_larger(self) -> bool:
        """Whether a larger strength protects more (σ, noise multiplier) or less (levels)."""
        return not (self.kind == "obfuscation" or self.quantise)

    def dp_config(self) -> dict[str, Any]:
        """The ``target.dp`` table of a DP-SGD setting."""
        return {"noise_multiplier": self.strength, **self.params}

    def latent_noise(self) -> dict[str, Any]:
        """``LatentNoise`` keyword arguments of a latent-noise setting."""
        seed = self.params.get("seed", 0)
        if self.quantise:
            return {"sigma": 0.0, "levels": int(self.strength), "seed": seed}
        return {"sigma": self.strength, "levels": self.params.get("levels"), "seed": seed}

    def obfuscation(self) -> dict[str, Any]:
        """``ObfuscationConfig`` keyword arguments of an obfuscation setting."""
        out = {k: v for k, v in self.params.items() if k != "knows_domain"}
        return {"levels": int(self.strength), "seed": 0, **out}


@dataclass(frozen=True)
class DefenceSpec:
    """One ``[[defences]]`` table: a kind, its strengths, its other settings, and the table
    as its file wrote it (``written``; ``None``: built in code), which ``config.toml`` records."""

    kind: str
    strengths: tuple[float, ...]
    params: dict[str, Any] = field(default_factory=dict)
    written: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def with_seed(self, seed: int) -> DefenceSpec:
        """The spec with ``seed`` in its params where its kind draws random numbers and its
        table gives none."""
        given = self.params if self.written is None else self.written
        if self.kind not in SEEDED or "seed" in given:
            return self
        return dataclasses.replace(self, params={**self.params, "seed": seed})

    def to_dict(self) -> dict[str, Any]:
        """The table as ``config.toml`` records it."""
        if self.written is not None:
            return copy.deepcopy(dict(self.written))
        return {"kind": self.kind, "strengths": list(self.strengths), **self.params}

    def settings(self) -> list[DefenceSetting]:
        """Every setting of this defence, in strength order as configured."""
        params = {k: v for k, v in self.params.items() if k != "knows_domain"}
        if self.kind != "obfuscation":
            return [DefenceSetting(self.kind, s, params) for s in self.strengths]
        known = self.params.get("knows_domain", [False, True])
        known = known if isinstance(known, list) else [known]
        return [DefenceSetting(self.kind, s, params, k) for s in self.strengths for k in known]


def _check_spec(k: int, table: Any) -> DefenceSpec:
    where = f"defences[{k}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table with 'kind' and 'strengths'")
    kind = table.get("kind")
    if kind not in DEFENCE_KINDS:
        raise ConfigError(f"{where}.kind must be one of {', '.join(DEFENCE_KINDS)}, got {kind!r}")
    strengths = table.get("strengths")
    if not isinstance(strengths, list) or not strengths:
        raise ConfigError(f"{where}.strengths must be a non-empty list of numbers")
    for s in strengths:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s < 0:
            raise ConfigError(f"{where}.strengths: {s!r} is not a number >= 0")
    if len(set(strengths)) != len(strengths):
        raise ConfigError(f"{where}.strengths has repeated values")
    allowed = _PARAMS[kind]
    params = {}
    for key, value in table.items():
        if key in ("kind", "strengths"):
            continue
        if key not in allowed:
            raise ConfigError(
                f"unknown key '{where}.{key}' for kind {kind!r} "
                f"(allowed: kind, strengths, {', '.join(sorted(allowed))})"
            )
        if (
            isinstance(value, bool)
            and bool not in allowed[key]
            or not isinstance(value, allowed[key])
        ):
            raise ConfigError(f"{where}.{key} has the wrong type: {value!r}")
        params[key] = value
    spec = DefenceSpec(kind, tuple(float(s) for s in strengths), params, copy.deepcopy(table))
    _check_values(where, spec)
    return spec


def _check_values(where: str, spec: DefenceSpec) -> None:
    """Kind-specific checks, by the defences' own validators where they are torch-free."""
    p = spec.params
    if spec.kind == "latent-noise":
        if p.get("mode", "noise") not in ("noise", "quantise"):
            raise ConfigError(f"{where}.mode must be 'noise' or 'quantise', got {p['mode']!r}")
        if p.get("mode") == "quantise" and any(s != int(s) or s < 2 for s in spec.strengths):
            raise ConfigError(f"{where}.strengths: quantisation levels must be integers >= 2")
        if "levels" in p and p["levels"] < 2:
            raise ConfigError(f"{where}.levels must be >= 2, got {p['levels']}")
    elif spec.kind == "obfuscation":
        known = p.get("knows_domain", [False, True])
        if isinstance(known, list) and (not known or not all(isinstance(b, bool) for b in known)):
            raise ConfigError(f"{where}.knows_domain must be a boolean or a list of booleans")
        if any(s != int(s) for s in spec.strengths):
            raise ConfigError(f"{where}.strengths: obfuscation levels must be integers")
        from ..defences.obfuscation import ObfuscationConfig

        for setting in spec.settings():
            try:
                ObfuscationConfig(**setting.obfuscation())
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
    else:
        from ..training.dp import DPConfig

        for setting in spec.settings():
            try:
                DPConfig.from_dict(setting.dp_config())
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None


def parse_defences(value: Any, seed: int = 0) -> list[DefenceSpec]:
    """Validate the ``defences`` list of a study config; errors name ``defences[k].key``.
    ``seed`` is the seed of the kinds that draw random numbers where a table gives none (a
    study's is its ``study.seed``)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError("defences must be a list of tables ([[defences]])")
    specs = [_check_spec(k, table).with_seed(seed) for k, table in enumerate(value)]
    tags = [s.tag for spec in specs for s in spec.settings()]
    repeated = sorted({t for t in tags if tags.count(t) > 1})
    if repeated:
        raise ConfigError(f"defences: setting(s) {', '.join(repeated)} appear more than once")
    return specs


def all_settings(specs: Iterable[DefenceSpec]) -> list[DefenceSetting]:
    """Every setting of parsed ``[[defences]]`` tables, in config order."""
    return [s for spec in specs for s in spec.settings()]


def parse_defence_tag(tag: str) -> tuple[str, float, bool, bool | None]:
    """``"obfuscation-8-known"`` -> ``("obfuscation", 8.0, False, True)``:
    kind, strength, whether it is a quantisation level, knows_domain (``None`` if unset).

    Raises ``ValueError`` for anything else.
    """
    m = _TAG.match(tag)
    if not m:
        raise ValueError(f"{tag!r} is not a defence tag <kind>-<strength>")
    kind, q, strength, known = m.groups()
    try:
        value = float(strength)
    except ValueError:
        raise ValueError(f"{tag!r}: strength {strength!r} is not a number") from None
    if (q and kind != "latent-noise") or (known and kind != "obfuscation"):
        raise ValueError(f"{tag!r} is not a defence tag <kind>-<strength>")
    return kind, value, bool(q), None if known is None else known == "known"
