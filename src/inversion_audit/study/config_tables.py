"""The tables of a study config that hold another layer's settings: ``[target]``,
``[inversion]`` and ``[reid]``, each parsed and checked once into a frozen dataclass.

They wrap :class:`~inversion_audit.training.TargetConfig` (one per architecture),
:class:`~inversion_audit.attack.InversionConfig` (one per threat model, plus the decoder's
convergence settings) and :class:`~inversion_audit.matching.reid.ReidConfig`; their ``seed``
is filled from ``study.seed`` where the table gives none, once, by
:class:`~.config.StudyConfig`.

A table read from a file keeps what the file wrote (``written``): ``config.toml`` and
``provenance.json`` record the config as written, so they do not change when a default
does. The convergence settings, added after studies were run, enter the inversion stage's
key only when they differ from their default, so earlier studies keep their stage keys
(resume, ``--reuse-from``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..attack.config import InversionConfig
from ..attack.convergence import CONVERGENCE_DEFAULTS, LR_SCHEDULES, check_convergence_args
from ..errors import ConfigError
from ..matching.reid import ReidConfig
from ..training.config import MAX_EPOCHS, TargetConfig
from .config_types import check_bounded, check_type

__all__ = [
    "CONVERGENCE",
    "MAX_VALIDATION_FRACTION",
    "InversionTable",
    "ReidTable",
    "TargetTable",
    "nested",
]


def nested(cls: type, data: dict, name: str) -> Any:
    """``cls.from_dict(data)``, its errors naming the ``[name]`` table."""
    try:
        return cls.from_dict(data)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if f"{name}." in msg else f"[{name}] {msg}") from exc


def _table(data: Any, name: str) -> dict[str, Any]:
    check_type(data, dict, name)
    return copy.deepcopy(data)


class _Written:
    """What the tables share: ``settings`` (another layer's frozen settings, ``seed``
    included) and ``written``, the table as its file wrote it (``None``: built in code)."""

    settings: Any
    written: Mapping[str, Any] | None

    @property
    def seed(self) -> int:
        """The seed the table trains with (``study.seed`` where it gives none)."""
        return self.settings.seed

    def with_seed(self, seed: int) -> Any:
        """The table with ``seed`` in its settings, unless its file gives one."""
        if self.written is None or "seed" in self.written:
            return self
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, seed=seed))

    def to_dict(self) -> dict[str, Any]:
        """The table as ``config.toml`` records it: as written, else its settings."""
        if self.written is not None:
            return copy.deepcopy(dict(self.written))
        return self._derived()

    def _derived(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class TargetTable(_Written):
    """``[target]``: the target networks and their training. One
    :class:`~inversion_audit.training.TargetConfig` per architecture of ``archs``
    (:meth:`config`); an ``arch`` key in the table is overridden by each."""

    settings: TargetConfig = field(default_factory=TargetConfig)
    written: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, data: Any) -> TargetTable:
        """The table from its TOML value; :class:`ConfigError` names the bad key."""
        table = _table(data, "target")
        return cls(nested(TargetConfig, copy.deepcopy(table), "target"), table)

    def config(self, arch: str) -> TargetConfig:
        """The settings of the target of architecture ``arch``."""
        return dataclasses.replace(self.settings, arch=arch)

    def _derived(self) -> dict[str, Any]:
        out = self.settings.to_dict()
        out.pop("arch")
        return {k: v for k, v in out.items() if v is not None}


#: ``[inversion]`` keys beside :class:`InversionConfig`'s: training to convergence
#: (:mod:`inversion_audit.attack.convergence`), given to ``train_inversion`` as keywords
CONVERGENCE = tuple(CONVERGENCE_DEFAULTS)
#: the largest share of the attack set a study may hold out for validation
MAX_VALIDATION_FRACTION = 0.5


@dataclass(frozen=True)
class InversionTable(_Written):
    """``[inversion]``: the attacker's inversion decoder. One
    :class:`~inversion_audit.attack.InversionConfig` per threat model (:meth:`config`), and
    the convergence settings of its training (:meth:`training_kwargs`)."""

    settings: InversionConfig = field(default_factory=InversionConfig)
    #: share of the attack set's subjects held out to validate the decoder, in [0, 0.5)
    validation_fraction: float = CONVERGENCE_DEFAULTS["validation_fraction"]
    #: epochs without a better validation loss before training stops (0: never)
    patience: int = CONVERGENCE_DEFAULTS["patience"]
    #: the least decrease of the validation loss that counts as better
    min_delta: float = CONVERGENCE_DEFAULTS["min_delta"]
    #: the learning rate's schedule (:data:`~inversion_audit.attack.convergence.LR_SCHEDULES`)
    lr_schedule: str = CONVERGENCE_DEFAULTS["lr_schedule"]
    written: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name, tp in (("validation_fraction", float), ("patience", int), ("min_delta", float)):
            check_type(getattr(self, name), tp, f"inversion.{name}")
        check_type(self.lr_schedule, str, "inversion.lr_schedule")
        for name in ("validation_fraction", "min_delta"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if not 0.0 <= self.validation_fraction < MAX_VALIDATION_FRACTION:
            raise ConfigError(
                f"inversion.validation_fraction must be in [0, {MAX_VALIDATION_FRACTION}), "
                f"got {self.validation_fraction}"
            )
        check_bounded("inversion.patience", self.patience, 0, MAX_EPOCHS)
        if not math.isfinite(self.min_delta) or self.min_delta < 0:
            raise ConfigError(
                f"inversion.min_delta must be a finite number >= 0, got {self.min_delta}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"inversion.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                f"got {self.lr_schedule!r}"
            )
        try:
            check_convergence_args(**self.training_kwargs())
        except ValueError as exc:
            raise ConfigError(f"inversion.{exc}") from None

    @classmethod
    def parse(cls, data: Any) -> InversionTable:
        """The table from its TOML value; :class:`ConfigError` names the bad key."""
        table = _table(data, "inversion")
        allowed = {f.name for f in dataclasses.fields(InversionConfig)} | set(CONVERGENCE)
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise ConfigError(
                f"unknown inversion key(s): {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
            )
        own = {k: v for k, v in table.items() if k in CONVERGENCE}
        rest = {k: v for k, v in table.items() if k not in CONVERGENCE}
        return cls(nested(InversionConfig, rest, "inversion"), **own, written=table)

    def config(self, threat_model: str) -> InversionConfig:
        """The decoder's settings under ``threat_model``."""
        return dataclasses.replace(self.settings, threat_model=threat_model)

    def training_kwargs(self) -> dict[str, Any]:
        """The convergence settings, as ``train_inversion``'s keyword arguments."""
        return {name: getattr(self, name) for name in CONVERGENCE}

    def stage_key(self, threat_model: str) -> dict[str, Any]:
        """What the inversion stage's key holds: the decoder's settings, and the convergence
        settings that are not their defaults (a study run before they existed keeps its key)."""
        return {**self.config(threat_model).to_dict(), **self._changed()}

    def _changed(self) -> dict[str, Any]:
        return {k: v for k, v in self.training_kwargs().items() if v != _CONVERGENCE_DEFAULTS[k]}

    def _derived(self) -> dict[str, Any]:
        out = self.settings.to_dict()
        out.pop("threat_model")
        return {**out, **self._changed()}


_CONVERGENCE_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(InversionTable) if f.name in CONVERGENCE
}


@dataclass(frozen=True)
class ReidTable(_Written):
    """``[reid]``: the attacker's Siamese re-identifier (the ``reid`` metric)."""

    settings: ReidConfig = field(default_factory=ReidConfig)
    written: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, data: Any) -> ReidTable:
        """The table from its TOML value; :class:`ConfigError` names the bad key."""
        table = _table(data, "reid")
        return cls(nested(ReidConfig, copy.deepcopy(table), "reid"), table)

    def _derived(self) -> dict[str, Any]:
        return self.settings.to_dict()
