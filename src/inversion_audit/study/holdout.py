"""The non-member control: holdout subjects that train neither the target nor the decoder.

``[cohort] holdout`` (ids of the cohort outside the protocol), ``holdout_n`` (the first n
sorted ids outside the protocol) or ``holdout_path`` (every subject of another cohort
folder). Each holdout subject is reconstructed in one fold, by that fold's target and
decoder (round-robin over the folds that run), so that each run has one reconstruction per
holdout subject and all are ranked in one gallery with the members. The guard
:func:`check_holdout_unused` fails loudly when a holdout id entered a training set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..data import Cohort, Fold
from ..errors import CohortError, ConfigError
from .config import StudyConfig

__all__ = [
    "resolve_holdout",
    "holdout_key",
    "assign_holdout",
    "check_holdout_unused",
    "gallery",
]


def resolve_holdout(config: StudyConfig, full: Cohort, protocol: Cohort) -> Cohort | None:
    """The holdout cohort the config names (``None`` without one).

    ``full`` is the cohort folder as loaded, ``protocol`` the subjects the folds use.
    """
    from .inputs import resolve_cohort

    c = config.cohort
    where = f"{config.source}: " if config.source else ""
    inside = set(protocol.ids)
    if c.holdout is not None:
        clash = [i for i in c.holdout if i in inside]
        if clash:
            raise ConfigError(
                f"{where}cohort.holdout: {clash[0]!r} is a protocol subject (private or attack "
                "set); a holdout subject must train neither the target nor the decoder"
            )
        missing = [i for i in c.holdout if i not in full.ids]
        if missing:
            raise ConfigError(f"{where}cohort.holdout: no subject {missing[0]!r} in {full.root}")
        return full.subset(list(c.holdout))
    if c.holdout_n is not None:
        outside = sorted(i for i in full.ids if i not in inside)
        if c.holdout_n > len(outside):
            raise ConfigError(
                f"{where}cohort.holdout_n = {c.holdout_n} but only {len(outside)} subjects of "
                f"{full.root} are outside the protocol (raise cohort.sample_n or lower n_subjects)"
            )
        return full.subset(outside[: c.holdout_n])
    if c.holdout_path is not None:
        holdout = resolve_cohort(c.holdout_path, config)
        clash = [i for i in holdout.ids if i in inside]
        if clash:
            raise ConfigError(
                f"{where}cohort.holdout_path: subject {clash[0]!r} has the id of a protocol "
                "subject; holdout ids must differ from the cohort's"
            )
        return holdout
    return None


def holdout_key(config: StudyConfig) -> str:
    """The key that names the config's holdout (``""`` without one), for messages."""
    c = config.cohort
    keys = [k for k in ("holdout", "holdout_n", "holdout_path") if getattr(c, k) is not None]
    return f"cohort.{keys[0]}" if keys else ""


def gallery(protocol: Cohort, holdout: Cohort | None) -> Cohort:
    """One cohort holding the protocol subjects, then the holdout (ids must be unique)."""
    if holdout is None:
        return protocol
    return Cohort([*protocol.subjects, *holdout.subjects], protocol.root, protocol.name)


def assign_holdout(holdout_ids: Iterable[str], folds: list[Fold]) -> dict[int, list[str]]:
    """Holdout ids per fold index: sorted ids dealt round-robin over ``folds`` (the folds that run)."""
    out: dict[int, list[str]] = {f.index: [] for f in folds}
    if not folds:
        return out
    for k, sid in enumerate(sorted(holdout_ids)):
        out[folds[k % len(folds)].index].append(sid)
    return out


def check_holdout_unused(
    holdout_ids: Iterable[str], training_sets: Mapping[str, Iterable[str]]
) -> None:
    """Raise :class:`CohortError` naming the id and the set if a holdout subject trained anything.

    ``training_sets`` maps a name (``"fold 0 private set"``, ``"fold 0 attack set"``) to ids.
    """
    holdout = set(holdout_ids)
    for name, ids in training_sets.items():
        leaked = sorted(holdout.intersection(ids))
        if leaked:
            raise CohortError(
                f"holdout subject {leaked[0]!r} is in the {name}: a non-member must train "
                f"neither the target nor the decoder ({len(leaked)} holdout id(s) leaked)"
            )
