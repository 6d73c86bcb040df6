"""Training the inversion decoder to convergence: the attacker's validation split and settings.

A decoder trained for a fixed number of steps may stop with its loss still falling, and a
weak attacker proves nothing about a model's privacy. With a validation split the step
count becomes a budget: part of the attack set (whole subjects, on the attacker's side;
never the private set) is held out, training stops early when the validation loss has not
improved by more than ``min_delta`` for ``patience`` epochs (Prechelt, "Early stopping -
but when?", 1998), and the learning rate may follow a schedule: halved when the validation
loss plateaus, or cosine annealing over the budget (Loshchilov & Hutter, "SGDR", ICLR 2017).

Torch-free: the settings are checked, and the split drawn, before anything is trained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "LR_SCHEDULES",
    "CONVERGENCE_DEFAULTS",
    "DECODER_STOPS",
    "PLATEAU_FACTOR",
    "check_convergence_args",
    "plateau_patience",
    "split_attack_set",
]

#: ``"none"``: a constant rate; ``"plateau"``: multiplied by :data:`PLATEAU_FACTOR` when the
#: validation loss stalls; ``"cosine"``: cosine annealing to 0 over the epoch budget
LR_SCHEDULES = ("none", "plateau", "cosine")

#: why a saved decoder's training ended: its epoch budget was spent, or its validation loss
#: stopped improving
DECODER_STOPS = ("budget", "plateau")

#: the convergence settings and their defaults (no split: a fixed budget, as the paper trained)
CONVERGENCE_DEFAULTS: dict[str, Any] = {
    "validation_fraction": 0.0,
    "patience": 0,
    "min_delta": 0.0,
    "lr_schedule": "none",
}

#: the learning rate's factor on a validation plateau, and its floor (a share of the initial)
PLATEAU_FACTOR = 0.5
PLATEAU_MIN_LR_SHARE = 1e-3

#: mixes the split's generator apart from the seed's other uses (batch order, weights)
_SPLIT_STREAM = 0x5A1D


def check_convergence_args(
    validation_fraction: Any, patience: Any, min_delta: Any, lr_schedule: Any
) -> None:
    """Raise ``ValueError`` naming the setting unless all four are usable together.

    ``validation_fraction`` in [0, 1); ``patience`` an int >= 0 (0: no early stopping);
    ``min_delta`` a finite number >= 0; ``lr_schedule`` one of :data:`LR_SCHEDULES`.
    Early stopping and the ``"plateau"`` schedule watch the validation loss, so they need
    ``validation_fraction > 0``.
    """
    number = (int, float)
    if (
        not isinstance(validation_fraction, number)
        or isinstance(validation_fraction, bool)
        or not 0.0 <= float(validation_fraction) < 1.0
    ):
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 0:
        raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
    if (
        not isinstance(min_delta, number)
        or isinstance(min_delta, bool)
        or not math.isfinite(float(min_delta))
        or min_delta < 0
    ):
        raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(
            f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}"
        )
    if not validation_fraction and (patience or lr_schedule == "plateau"):
        what = "patience (early stopping)" if patience else "lr_schedule 'plateau'"
        raise ValueError(
            f"{what} watches the validation loss: set validation_fraction > 0 "
            "to hold out part of the attack set"
        )


def plateau_patience(patience: int) -> int:
    """Epochs without improvement before ``"plateau"`` lowers the rate: half the early
    stopping patience (so the lower rate gets its chance before training stops), at least 1;
    2 without early stopping."""
    return max(1, patience // 2) if patience else 2


def split_attack_set(
    n: int, fraction: float, seed: int, ids: Sequence[str] | None = None
) -> tuple[list[int], list[int]]:
    """``(train_rows, validation_rows)`` of ``n`` attack images, split by subject.

    Images with the same id (``ids``; without them every image is its own subject) fall on
    the same side, so no part of a validation subject is trained on. ``round(subjects *
    fraction)`` subjects (at least 1, at most all but 1) are held out, drawn by ``seed``
    alone: the same seed and ids give the same split. ``fraction == 0`` holds out nothing.
    Raises ``ValueError`` when a split is asked of fewer than 2 subjects.
    """
    if ids is not None and len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} attack images")
    if fraction <= 0:
        return list(range(n)), []
    keys = list(ids) if ids is not None else list(range(n))
    subjects = list(dict.fromkeys(keys))  # in order of first appearance
    if len(subjects) < 2:
        raise ValueError(
            f"a validation split needs at least 2 attack subjects, got {len(subjects)}"
        )
    n_val = min(max(1, round(len(subjects) * fraction)), len(subjects) - 1)
    order = np.random.default_rng([int(seed), _SPLIT_STREAM]).permutation(len(subjects))
    held = {subjects[int(k)] for k in order[:n_val]}
    val = [i for i, key in enumerate(keys) if key in held]
    train = [i for i, key in enumerate(keys) if key not in held]
    return train, val
