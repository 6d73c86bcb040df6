"""Membership inference with reference models: offline RMIA and offline LiRA, the study's
other fold targets serving as the reference models that did not train on a record.

Each fold's target ``θ`` trained on its fold's private set; every other protocol subject
and every holdout subject is a record ``θ`` never saw. For a record ``x`` the *OUT reference
models* are the other fold targets that did not train on ``x``: all k - 1 others for ``θ``'s
members and for the holdout, the k - 2 that are neither ``θ`` nor ``x``'s own fold target for
another fold's subject. A record is attacked when it has at least one OUT reference.

The per-record likelihood ``Pr(x | θ)`` is ``exp(log_likelihood)``, the geometric mean
probability ``θ`` gives the true labels of ``x`` (:mod:`.record_losses`).

**RMIA, offline** (Zarifzadeh et al., "Low-Cost High-Power Membership Inference Attacks",
ICML 2024, Sec. 3 and the offline approximation of ``Pr(x)``)::

    Pr(x)     = ½ ((1 + a) · mean_OUT Pr(x | θ') + (1 - a))
    LR_θ(x)   = Pr(x | θ) / Pr(x)
    Score(x)  = | { z ∈ Z, z ≠ x : LR_θ(x) / LR_θ(z) > γ } | / | Z \\ {x} |

with ``a = 0.3`` and ``γ = 1`` (the defaults of the authors' ML Privacy Meter). The
population ``Z`` are ``θ``'s non-member records (the holdout and the other folds' subjects
with an OUT reference), each ``z``'s ``Pr(z)`` taken the same way; a non-member is never
compared with itself (leave-one-out), since the study has no separate population data.

**LiRA, offline** (Carlini et al., "Membership Inference Attacks From First Principles",
IEEE S&P 2022, Sec. IV, offline variant with a global variance): the logit-scaled
confidence ``φ(x) = log p - log(1 - p)``, ``p = Pr(x | θ)``; a Gaussian ``N(μ_x, σ²)`` fitted
to the OUT references' ``φ``, ``μ_x`` per record and ``σ²`` pooled over the target's records
(within-record variance; k - 1 references are too few for a per-record variance); the
one-sided test ``Λ(x) = Pr[Z ≤ φ_θ(x)] = Φ(s)``, ``s = (φ_θ(x) - μ_x) / σ``, scored by ``s``
(the same order, without saturation). Records with at least two OUT references only.

**Loss threshold** (Yeom et al., CSF 2018) on the same records as RMIA: ``θ``'s
log-likelihood, and its Dice, as the score. Pure numpy/scipy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..matching.retrieval import roc_auc, tpr_at_fpr
from .membership import _clean
from .membership_inference import bootstrap_roc

__all__ = [
    "GAMMA",
    "OFFLINE_A",
    "AttackResult",
    "ReferenceScores",
    "lira_offline",
    "logit_confidence",
    "reference_attacks",
    "reference_scores",
    "rmia_offline",
]

#: the offline approximation's ``a`` (``Pr_IN(x) ≈ a · Pr_OUT(x) + 1 - a``)
OFFLINE_A = 0.3
#: RMIA's threshold on the pairwise likelihood ratio
GAMMA = 1.0
#: the attacks in report order: label, score field
ATTACKS = (
    ("RMIA (offline)", "rmia"),
    ("LiRA (offline)", "lira"),
    ("loss threshold (cross-entropy)", "log_likelihood"),
    ("loss threshold (1 - Dice)", "dice"),
)


def rmia_offline(
    target: np.ndarray,
    reference: np.ndarray,
    population: np.ndarray,
    offline_a: float = OFFLINE_A,
    gamma: float = GAMMA,
) -> np.ndarray:
    """Offline RMIA scores of every record (see the module docstring).

    ``target``: ``Pr(x | θ)`` per record ``(N,)``; ``reference``: ``Pr(x | θ')`` per record and
    reference model ``(N, R)``, NaN where the reference trained on the record (IN) or has no
    value; ``population``: a boolean ``(N,)`` marking the records ``Z``. A record without an
    OUT reference scores NaN and is no population sample.
    """
    target = np.asarray(target, np.float64)
    reference = np.asarray(reference, np.float64)
    n_out = np.isfinite(reference).sum(axis=1)
    mean_out = np.where(n_out > 0, np.nansum(reference, axis=1) / np.maximum(n_out, 1), np.nan)
    prior = 0.5 * ((1 + offline_a) * mean_out + (1 - offline_a))
    ratio = target / prior
    z = np.asarray(population, bool) & np.isfinite(ratio)
    z_index = np.flatnonzero(z)
    out = np.full(target.shape, np.nan)
    for i in np.flatnonzero(np.isfinite(ratio)):
        others = ratio[z_index[z_index != i]]  # a population record is not compared with itself
        if others.size:
            out[i] = float(np.mean(ratio[i] / others > gamma))
    return out


def logit_confidence(log_likelihood: np.ndarray) -> np.ndarray:
    """``φ = log p - log(1 - p)`` of ``p = exp(log_likelihood)``, computed stably."""
    ll = np.minimum(np.asarray(log_likelihood, np.float64), -1e-12)
    return ll - np.log(-np.expm1(ll))


def lira_offline(target: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Offline LiRA's standardised score ``s = (φ_θ(x) - μ_x) / σ`` (module docstring).

    ``target`` ``(N,)`` and ``reference`` ``(N, R)`` are logit-scaled confidences, NaN in
    ``reference`` where a model trained on the record. ``σ`` is pooled over the records with
    two or more OUT references; the others score NaN (as do all, with no such record).
    """
    target = np.asarray(target, np.float64)
    reference = np.asarray(reference, np.float64)
    n_out = np.isfinite(reference).sum(axis=1)
    fit = n_out >= 2
    out = np.full(target.shape, np.nan)
    if not fit.any():
        return out
    mu = np.nanmean(reference[fit], axis=1)
    ss = np.nansum((reference[fit] - mu[:, None]) ** 2)
    dof = int((n_out[fit] - 1).sum())
    sigma = float(np.sqrt(ss / dof)) if ss > 0 else 1e-12
    out[fit] = (target[fit] - mu) / sigma
    return out


@dataclass(frozen=True)
class ReferenceScores:
    """Every attacked record of one architecture and variant, pooled over the fold targets:
    the target's fold, the subject, its membership, its OUT reference count and each attack's
    score (higher = member; NaN where the attack cannot score the record)."""

    fold: np.ndarray
    subject: np.ndarray
    member: np.ndarray
    holdout: np.ndarray
    n_references: np.ndarray
    rmia: np.ndarray
    lira: np.ndarray
    log_likelihood: np.ndarray
    dice: np.ndarray


def _matrix(records: Sequence[dict], field: str, subjects: list[str]) -> np.ndarray:
    def value(r: dict, sid: str) -> float:
        v = r["signals"].get(sid, {}).get(field)
        return float(v) if v is not None else np.nan

    return np.array([[value(r, sid) for sid in subjects] for r in records], dtype=np.float64)


def reference_scores(
    records: Sequence[dict], offline_a: float = OFFLINE_A, gamma: float = GAMMA
) -> ReferenceScores:
    """The attacks on every fold target of ``records`` (the record-loss records of one
    architecture and variant, one per fold), pooled: each target's members and non-members,
    its other targets as reference models."""
    records = sorted(records, key=lambda r: r["fold"])
    subjects = sorted({sid for r in records for sid in r["signals"]})
    ll = _matrix(records, "log_likelihood", subjects)
    dice = _matrix(records, "dice", subjects)
    members = [set(r["members"]) for r in records]
    trained = np.array([[sid in m for sid in subjects] for m in members], dtype=bool)
    held = {h for r in records for h in r["holdout"]}
    holdout = np.array([sid in held for sid in subjects], dtype=bool)
    prob, conf = np.exp(ll), logit_confidence(ll)
    parts: list[dict[str, np.ndarray]] = []
    for t, rec in enumerate(records):
        others = [s for s in range(len(records)) if s != t]
        out_of = ~trained[others].T  # (N, R): the reference did not train the record
        ref_p = np.where(out_of, prob[others].T, np.nan)
        n_ref = np.isfinite(ref_p).sum(axis=1)
        keep = np.isfinite(ll[t]) & (n_ref >= 1)
        population = keep & ~trained[t]
        rmia = rmia_offline(prob[t], ref_p, population, offline_a, gamma)
        lira = lira_offline(conf[t], np.where(keep[:, None] & out_of, conf[others].T, np.nan))
        parts.append(
            {
                "fold": np.full(int(keep.sum()), rec["fold"]),
                "subject": np.array(subjects, dtype=object)[keep],
                "member": trained[t][keep],
                "holdout": holdout[keep],
                "n_references": n_ref[keep],
                "rmia": rmia[keep],
                "lira": lira[keep],
                "log_likelihood": ll[t][keep],
                "dice": dice[t][keep],
            }
        )
    fields = [f.name for f in dataclasses.fields(ReferenceScores)]
    if not parts:
        return ReferenceScores(*(np.array([]) for _ in fields))
    return ReferenceScores(*(np.concatenate([p[f] for p in parts]) for f in fields))


@dataclass(frozen=True)
class AttackResult:
    """One attack's AUC and TPR at 1% and 0.1% FPR, with stratified bootstrap intervals."""

    attack: str
    n_members: int
    n_nonmembers: int
    auc: float
    auc_interval: tuple[float, float]
    tpr_at_1pct_fpr: float
    tpr_at_1pct_interval: tuple[float, float]
    tpr_at_0_1pct_fpr: float
    tpr_at_0_1pct_interval: tuple[float, float]

    def to_dict(self) -> dict:
        """JSON-safe form (NaN becomes None)."""
        return _clean(dataclasses.asdict(self))  # type: ignore[return-value]


def _attack(name: str, pos: np.ndarray, neg: np.ndarray, n_boot: int, seed: int) -> AttackResult:
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    if pos.size == 0 or neg.size == 0:
        nan2 = (float("nan"), float("nan"))
        nan = float("nan")
        return AttackResult(name, int(pos.size), int(neg.size), nan, nan2, nan, nan2, nan, nan2)
    auc_ci, (t1_ci, t01_ci) = bootstrap_roc(pos, neg, (0.01, 0.001), n_boot, seed)
    return AttackResult(
        name,
        int(pos.size),
        int(neg.size),
        roc_auc(pos, neg),
        auc_ci,
        tpr_at_fpr(pos, neg, 0.01),
        t1_ci,
        tpr_at_fpr(pos, neg, 0.001),
        t01_ci,
    )


def resolution_sentence(n_nonmembers: int, n_subjects: int, n_population: int) -> str:
    """How many non-member records bound the FPR resolution, and RMIA's population size.

    ``n_population``: the fewest population records ``Z`` of one target; RMIA's score moves
    in steps of ``1 / |Z|``, so its low-FPR figures cannot resolve a smaller rate.
    """
    held = f"{n_nonmembers} non-member records ({n_subjects} distinct subjects)"
    rmia = (
        f" RMIA's score moves in steps of 1/|Z| (|Z| = {n_population} population records per "
        "target): in each target the non-member that beats all others scores 1, like every "
        "member that does, so RMIA resolves no false-positive rate below about "
        f"{100 / (n_population + 1):.2g}%."
    )
    if n_nonmembers >= 1000:
        return f"{held} resolve a 0.1% false-positive rate.{rmia}"
    part = (
        "TPR at 1% FPR needs at least 100 and TPR at 0.1% FPR at least 1000 non-members"
        if n_nonmembers < 100
        else "TPR at 0.1% FPR needs at least 1000 non-members"
    )
    return (
        f"{part}; this study has {held}, so below a {100 / max(n_nonmembers, 1):.2g}% "
        f"false-positive rate the TPR is the TPR at zero false positives.{rmia}"
    )


def reference_attacks(
    records: Sequence[dict],
    n_boot: int = 2000,
    seed: int = 0,
    offline_a: float = OFFLINE_A,
    gamma: float = GAMMA,
) -> dict[str, dict]:
    """Per architecture and variant (``<arch>_<variant>``) with two or more fold targets:
    RMIA, LiRA and the loss thresholds, members vs non-members, pooled over the folds."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(f"{r['arch']}_{r['variant']}", []).append(r)
    out: dict[str, dict] = {}
    for name, recs in sorted(groups.items()):
        if len({r["fold"] for r in recs}) < 2:
            continue
        s = reference_scores(recs, offline_a, gamma)
        m = s.member.astype(bool)
        attacks = [
            _attack(label, getattr(s, key)[m], getattr(s, key)[~m], n_boot, seed).to_dict()
            for label, key in ATTACKS
        ]
        n_non = int((~m).sum())
        per_target = [int((~m & (s.fold == f)).sum()) for f in sorted(set(s.fold.tolist()))]
        n_population = max(min(per_target) - 1, 0)  # a non-member is not its own population
        out[name] = {
            "arch": recs[0]["arch"],
            "variant": recs[0]["variant"],
            "folds": sorted(r["fold"] for r in recs),
            "signal": "log_likelihood",
            "offline_a": offline_a,
            "gamma": gamma,
            "n_members": int(m.sum()),
            "n_nonmembers": n_non,
            "n_holdout_records": int((~m & s.holdout.astype(bool)).sum()),
            "n_references": [int(s.n_references.min()), int(s.n_references.max())],
            "attacks": attacks,
            "n_population": n_population,
            "resolution": resolution_sentence(n_non, len(set(s.subject[~m])), n_population),
        }
    return out
