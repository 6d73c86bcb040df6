"""DP-SGD for target networks with Opacus: the ``dp-sgd`` defence.

The privacy unit is the *subject*: each step samples every training subject with
probability q (Poisson sampling, as the accountant assumes) and takes at most one crop
of it, so a subject's contribution to a step is clipped to ``max_grad_norm``. ε comes
from Opacus's accountant for the steps taken, reported with δ and the sampling mode.
Model selection on a validation split and BatchNorm recalibration are outside ε (the
latter is a no-op: DP targets have no BatchNorm).

:class:`DPConfig` loads without torch; the rest imports torch and Opacus on use.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .config import TargetConfig, config_from_dict

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "DPConfig",
    "DPTargetConfig",
    "SAMPLING_MODES",
    "PrivateTraining",
    "make_dp_compatible",
    "with_dp",
]

#: ``poisson``: each subject joins each step independently with probability q (what the
#: accountant assumes). ``shuffle``: fixed-size shuffled batches (ε is then an approximation).
SAMPLING_MODES = ("poisson", "shuffle")
ACCOUNTANTS = ("rdp", "prv", "gdp")


@dataclass(frozen=True)
class DPConfig:
    """Settings of DP-SGD training.

    Attributes
    ----------
    noise_multiplier : σ of the Gaussian noise relative to ``max_grad_norm``.
    max_grad_norm : per-subject gradient clipping norm C.
    delta : δ of the (ε, δ) guarantee; keep it below 1 / (number of training subjects).
    sampling : ``"poisson"`` or ``"shuffle"`` (see :data:`SAMPLING_MODES`).
    accountant : Opacus accountant, ``"rdp"``, ``"prv"`` or ``"gdp"``.
    """

    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    delta: float = 1e-5
    sampling: str = "poisson"
    accountant: str = "rdp"

    def __post_init__(self) -> None:
        for name in ("noise_multiplier", "max_grad_norm", "delta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"target.dp.{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.noise_multiplier < 0:
            raise ConfigError(
                f"target.dp.noise_multiplier must be >= 0, got {self.noise_multiplier}"
            )
        if self.max_grad_norm <= 0:
            raise ConfigError(f"target.dp.max_grad_norm must be > 0, got {self.max_grad_norm}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"target.dp.delta must be in (0, 1), got {self.delta}")
        if self.sampling not in SAMPLING_MODES:
            raise ConfigError(
                f"target.dp.sampling must be one of {', '.join(SAMPLING_MODES)}, got {self.sampling!r}"
            )
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(
                f"target.dp.accountant must be one of {', '.join(ACCOUNTANTS)}, got {self.accountant!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> DPConfig:
        """From a TOML/JSON table; unknown keys raise :class:`ConfigError` naming them."""
        if isinstance(data, cls):
            return data
        return config_from_dict(cls, data, "target.dp")


def make_dp_compatible(model: nn.Module) -> nn.Module:
    """A copy of ``model`` that Opacus accepts: BatchNorm -> GroupNorm, no in-place ops.

    ``ModuleValidator.fix`` returns a copy (build the optimizer on the copy). A fixed
    target's ``arch_args["norm"]`` becomes ``"group"`` so that its checkpoint rebuilds
    the same layers. Anything Opacus still refuses raises ``ValueError`` listing it.
    """
    from opacus.validators import ModuleValidator
    from torch import nn

    had_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    fixed = ModuleValidator.fix(model)
    for module in fixed.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    if had_batchnorm and isinstance(getattr(fixed, "arch_args", None), dict):
        fixed.arch_args = {**fixed.arch_args, "norm": "group"}
    errors = ModuleValidator.validate(fixed, strict=False)
    if errors:
        raise ValueError(
            "the network cannot be trained with DP-SGD: " + "; ".join(str(e) for e in errors)
        )
    return fixed


class PrivateTraining:
    """Opacus's ``PrivacyEngine`` on a target, its optimizer and a subject sampler.

    Use: ``model = make_dp_compatible(model)``; build the optimizer on it; ``optimizer =
    private.attach(model, optimizer)``; iterate ``private.epoch(passes)`` for the rows of
    each step (indices into the training subjects); ``private.detach()`` at the end
    returns the privacy record.
    """

    def __init__(self, config: DPConfig, n_subjects: int, batch_size: int, seed: int) -> None:
        if n_subjects < 1:
            raise ValueError("DP-SGD needs at least one training subject")
        self.config = config
        self.n_subjects = n_subjects
        self.batch_size = min(batch_size, n_subjects)
        self.seed = seed
        self.engine = None
        self.hooks = None
        self.loader = None
        self.empty_steps = 0

    @property
    def sample_rate(self) -> float:
        """q: the chance that a subject is in a step (1 / steps per pass)."""
        return 1.0 / math.ceil(self.n_subjects / self.batch_size)

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Register per-sample gradient hooks on ``model`` (in place); return the DP optimizer."""
        import torch
        from opacus import PrivacyEngine

        rows = torch.utils.data.TensorDataset(torch.arange(self.n_subjects))
        loader = torch.utils.data.DataLoader(
            rows,
            batch_size=self.batch_size,
            shuffle=self.config.sampling == "shuffle",
            generator=torch.Generator().manual_seed(self.seed),
        )
        device = next(model.parameters()).device
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            self.engine = PrivacyEngine(accountant=self.config.accountant)
        self.hooks, optimizer, self.loader = self.engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=self.config.noise_multiplier,
            max_grad_norm=self.config.max_grad_norm,
            poisson_sampling=self.config.sampling == "poisson",
            noise_generator=torch.Generator(device=device).manual_seed(self.seed + 1),
            wrap_model=False,
        )
        return optimizer

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()`` (fp32, no scaler) without torch's notice that the first layer's
        input needs no gradient: Opacus's per-sample hooks read the output gradient, not it."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss.backward()

    def epoch(self, passes: int = 1) -> Iterator[list[int]]:
        """Rows (training-subject indices) of each step of one epoch: ``passes`` passes.

        A Poisson step that samples nobody is still counted by the accountant (no update).
        """
        if self.loader is None:
            raise RuntimeError("call attach() before epoch()")
        for _ in range(passes):
            for (rows,) in self.loader:
                if len(rows) == 0:
                    self.empty_steps += 1
                    self.engine.accountant.step(
                        noise_multiplier=self.config.noise_multiplier,
                        sample_rate=self.sample_rate,
                    )
                    continue
                yield [int(r) for r in rows]

    @property
    def steps(self) -> int:
        """Steps the accountant has recorded."""
        history = getattr(self.engine.accountant, "history", None) or []
        return int(sum(h[-1] for h in history))

    def epsilon(self) -> float:
        """ε at the configured δ for the steps so far (0 before the first step)."""
        if self.engine is None or not self.steps:
            return 0.0
        return float(self.engine.get_epsilon(self.config.delta))

    def report(self) -> dict[str, Any]:
        """The privacy record: ε with δ, the sampling mode and the accounting inputs."""
        out = {
            "mechanism": "dp-sgd",
            "unit": "subject",
            "epsilon": self.epsilon(),
            "delta": self.config.delta,
            "sampling": self.config.sampling,
            "accountant": self.config.accountant,
            "noise_multiplier": self.config.noise_multiplier,
            "max_grad_norm": self.config.max_grad_norm,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "empty_steps": self.empty_steps,
            "n_subjects": self.n_subjects,
        }
        if self.config.sampling != "poisson":
            out["note"] = (
                "the accountant assumes Poisson sampling; ε of shuffled batches is approximate"
            )
        return out

    def detach(self) -> dict[str, Any]:
        """Remove Opacus's hooks from the model and return :meth:`report`."""
        if self.hooks is not None:
            self.hooks.cleanup()
            self.hooks = None
        return self.report()


@dataclass(frozen=True)
class DPTargetConfig(TargetConfig):
    """A :class:`~inversion_audit.training.TargetConfig` trained with DP-SGD (``dp``)."""

    dp: DPConfig | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dp is not None:
            object.__setattr__(self, "dp", DPConfig.from_dict(self.dp))


def with_dp(config: TargetConfig, dp: DPConfig | dict[str, Any]) -> DPTargetConfig:
    """``config`` plus DP-SGD settings: ``train_target`` then trains with Opacus and
    records ε in ``history.privacy``."""
    data = {f.name: getattr(config, f.name) for f in dataclasses.fields(TargetConfig)}
    return DPTargetConfig(**data, dp=DPConfig.from_dict(dp))
