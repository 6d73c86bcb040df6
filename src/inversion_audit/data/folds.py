"""The paper's k-fold split into private (target-training) and attack sets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Fold", "kfold_split"]


@dataclass(frozen=True)
class Fold:
    """One fold: the private set trains the target network, the attack set the inversion decoder."""

    index: int
    private_set: tuple[str, ...]
    attack_set: tuple[str, ...]


def kfold_split(ids: list[str] | tuple[str, ...], n_folds: int = 4, seed: int = 0) -> list[Fold]:
    """Split ``ids`` into ``n_folds`` folds; each subject is private in exactly one fold.

    With 40 subjects and 4 folds: 10 private and 30 attack subjects per fold.
    The split is a seeded permutation, independent of the input order.
    """
    ids = sorted(ids)
    if len(set(ids)) != len(ids):
        raise ValueError("subject ids must be unique")
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    if len(ids) < n_folds:
        raise ValueError(f"need at least {n_folds} subjects for {n_folds} folds, got {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    chunks = np.array_split(order, n_folds)
    folds = []
    for k, chunk in enumerate(chunks):
        private = tuple(sorted(ids[i] for i in chunk))
        attack = tuple(i for i in ids if i not in set(private))
        folds.append(Fold(k, private, attack))
    return folds
