"""How often a candidate image recurs across the cases of a reader study, and the designs
that keep that count from telling the answer.

A reader package copies each case's candidate images, so a candidate shown in several cases
is the same file in each: a reader (or a script) can count appearances and work by
elimination when the truth of a case recurs less (or more) than its distractors, the
design-level leak that balanced incomplete designs avoid (Bose 1939; Fisher & Yates 1938,
Latin squares). Three policies:

``balanced`` (default)
    Every reconstructed subject is the truth of exactly one case per run and a distractor in
    exactly K-1 others, so each candidate image appears in K cases. With ``random``
    distractors the design is cyclic: a seeded permutation ``s`` of the subjects and a seeded
    offset set ``D`` (0 and K-1 distinct offsets drawn uniformly), case ``i`` showing
    ``s[i + d mod n]`` for ``d`` in ``D`` with truth ``s[i]``. For every ``d`` in ``D``,
    ``(s shifted by d, D - d)`` is an equally likely draw that gives the same cases with
    the truth at ``d``, so given which images share which cases every candidate of a case
    is its truth with probability exactly 1/K. With ``hardest`` distractors the K-1 per case
    maximise the total SSIM under the same counts (a bipartite b-matching, solved exactly as
    an integer program); counts are then uninformative, but which subjects share a case
    follows SSIM, as with ``hardest`` alone.
``unique``
    Each candidate image appears in at most one case (every reader reads every case): the
    subjects are split into disjoint groups of K, so there are at most n // K match cases.
``free``
    Each case draws its K-1 distractors on its own, as earlier versions did; appearance
    counts vary and may single out the truth.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .cases import RunScores

__all__ = [
    "RECURRENCE",
    "balanced_hardest",
    "balanced_random",
    "draw_cases",
    "recurrence_summary",
    "unique_groups",
]

RECURRENCE = ("balanced", "unique", "free")

#: one match case as drawn: its run, its reconstruction (truth) id, its K subjects shuffled
Draft = tuple[RunScores, str, tuple[str, ...]]


def balanced_random(
    ids: Sequence[str], k: int, rng: np.random.Generator
) -> dict[str, tuple[str, ...]]:
    """Each id's K-1 distractors in a cyclic design on a random permutation with random
    offsets: every id is a distractor of exactly K-1 others."""
    n = len(ids)
    perm = [ids[i] for i in rng.permutation(n)]
    offsets = sorted(int(d) for d in rng.choice(np.arange(1, n), size=k - 1, replace=False))
    return {perm[i]: tuple(perm[(i + d) % n] for d in offsets) for i in range(n)}


def balanced_hardest(
    ids: Sequence[str], k: int, ssim: dict[str, dict[str, float]]
) -> dict[str, tuple[str, ...]]:
    """Each id's K-1 distractors maximising the summed SSIM with its reconstruction, every id
    a distractor of exactly K-1 others (``ssim[truth][candidate]``; pairs without one are
    never chosen). Raises :class:`ConfigError` when no such design exists."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    n = len(ids)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j and ids[j] in ssim[ids[i]]]
    cost = -np.array([ssim[ids[i]][ids[j]] for i, j in pairs], dtype=float)
    rows = [i for i, _ in pairs] + [n + j for _, j in pairs]
    cols = list(range(len(pairs))) * 2
    a = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(2 * n, len(pairs)))
    res = milp(
        cost,
        constraints=LinearConstraint(a.tocsr(), k - 1, k - 1),
        integrality=np.ones(len(pairs)),
        bounds=Bounds(0, 1),
    )
    if res.x is None:
        raise ConfigError(f"no balanced design of {n} subjects with {k} candidates per case")
    chosen = np.round(res.x).astype(int)
    out: dict[str, list[str]] = {s: [] for s in ids}
    for (i, j), x in zip(pairs, chosen, strict=True):
        if x:
            out[ids[i]].append(ids[j])
    counts = Counter(c for others in out.values() for c in others)
    if any(len(o) != k - 1 for o in out.values()) or any(counts[s] != k - 1 for s in ids):
        raise ConfigError(f"no balanced design of {n} subjects with {k} candidates per case")
    return {s: tuple(sorted(o)) for s, o in out.items()}


def unique_groups(
    truths: Sequence[tuple[RunScores, str]],
    k: int,
    pick: Callable[[RunScores, str, list[str]], list[str]],
    pool: Callable[[RunScores, str], list[str]],
) -> list[tuple[RunScores, str, tuple[str, ...]]]:
    """Greedy disjoint cases: in the order of ``truths``, each subject not yet shown gets
    ``pick`` of its ``pool`` not yet shown, when K-1 of them are left."""
    used: set[str] = set()
    out = []
    for rs, rid in truths:
        if rid in used:
            continue
        avail = [c for c in pool(rs, rid) if c not in used]
        if len(avail) < k - 1:
            continue
        others = pick(rs, rid, avail)
        used.update([rid, *others])
        out.append((rs, rid, tuple(others)))
    return out


def _pool(rs: RunScores, rid: str, strategy: str, k: int, scores_path: Path) -> list[str]:
    rec = rs.reconstructions[rid]
    pool = sorted(rec.candidates - {rid})
    if strategy == "hardest":
        pool = [c for c in pool if c in rec.ssim]
    if len(pool) < k - 1:
        what = "SSIM-scored other candidates" if strategy == "hardest" else "other candidates"
        raise ConfigError(
            f"{scores_path}: reconstruction {rid} in run {rs.run} has {len(pool)} {what}; "
            f"{k} candidates per case need {k - 1}"
        )
    return pool


def _pick(
    strategy: str, k: int, rng: np.random.Generator
) -> Callable[[RunScores, str, list[str]], list[str]]:
    def pick(rs: RunScores, rid: str, pool: list[str]) -> list[str]:
        if strategy == "hardest":
            ssim = rs.reconstructions[rid].ssim
            return sorted(pool, key=lambda c: (-ssim[c], c))[: k - 1]
        return [str(c) for c in rng.choice(pool, size=k - 1, replace=False)]

    return pick


def _balanced(
    rs: RunScores, strategy: str, k: int, rng: np.random.Generator, scores_path: Path
) -> dict[str, tuple[str, ...]]:
    ids = sorted(rs.reconstructions)
    for rid in ids:
        missing = sorted(set(ids) - {rid} - set(_pool(rs, rid, strategy, k, scores_path)))
        if missing:
            scored = "SSIM-scored" if strategy == "hardest" else "scored"
            raise ConfigError(
                f"{scores_path}: recurrence 'balanced' needs every reconstruction of run "
                f"{rs.run} {scored} against every other's subject; {rid} lacks "
                f"{', '.join(missing)}; choose recurrence 'unique' or 'free'"
            )
    if strategy == "hardest":
        return balanced_hardest(ids, k, {r: rs.reconstructions[r].ssim for r in ids})
    return balanced_random(ids, k, rng)


def draw_cases(
    sources: Sequence[RunScores],
    strategy: str,
    recurrence: str,
    k: int,
    rng: np.random.Generator,
    scores_path: Path,
) -> list[Draft]:
    """The match cases of ``sources`` (the run, then its defended runs): each case's run,
    truth and K subjects in shuffled order, drawn under ``recurrence``."""
    if recurrence not in RECURRENCE:
        raise ConfigError(
            f"unknown recurrence {recurrence!r}; choose one of {', '.join(RECURRENCE)}"
        )
    pick = _pick(strategy, k, rng)
    if recurrence == "free":  # each case on its own, drawn and shuffled in turn as before
        drafts = []
        for rs in sources:
            for rid in sorted(rs.reconstructions):
                chosen = [rid, *pick(rs, rid, _pool(rs, rid, strategy, k, scores_path))]
                drafts.append((rs, rid, tuple(chosen[i] for i in rng.permutation(k))))
        return drafts
    if recurrence == "unique":
        truths = [(rs, rid) for rs in sources for rid in sorted(rs.reconstructions)]
        for rs, rid in truths:
            _pool(rs, rid, strategy, k, scores_path)
        order = [truths[i] for i in rng.permutation(len(truths))]
        groups = unique_groups(
            order, k, pick, lambda rs, rid: _pool(rs, rid, strategy, k, scores_path)
        )
        if not groups:
            raise ConfigError(
                f"{scores_path}: recurrence 'unique' leaves no case of {k} candidates"
            )
        rank = {(rs.run, rid): i for i, (rs, rid) in enumerate(truths)}
        groups.sort(key=lambda g: rank[(g[0].run, g[1])])
    else:
        groups = []
        for rs in sources:
            others = _balanced(rs, strategy, k, rng, scores_path)
            groups += [(rs, rid, others[rid]) for rid in sorted(rs.reconstructions)]
    shuffled = []
    for rs, rid, others in groups:
        chosen = [rid, *others]
        shuffled.append((rs, rid, tuple(chosen[i] for i in rng.permutation(k))))
    return shuffled


def _stats(values: Sequence[int]) -> dict:
    if not values:
        return {"min": None, "max": None, "mean": None}
    return {"min": min(values), "max": max(values), "mean": sum(values) / len(values)}


def recurrence_summary(cases: Sequence[Any]) -> dict:
    """How often each candidate image (file) appears among the match ``cases``
    (:class:`~.design.Case`: read by attribute, so that this module need not import design).

    ``policy`` is what the cases show: ``unique`` (no image in two cases), ``balanced``
    (every image in equally many cases) or ``free`` (counts differ: a reader comparing files
    across cases could work by elimination, ``elimination_possible``). ``appearances`` are
    per image, ``truth_appearances`` / ``distractor_appearances`` per case slot.
    """
    match = [c for c in cases if c.candidates]
    counts = Counter(x.path for c in match for x in c.candidates)
    truth = [counts[x.path] for c in match for x in c.candidates if x.is_true]
    other = [counts[x.path] for c in match for x in c.candidates if not x.is_true]
    values = list(counts.values())
    if not values or max(values) <= 1:
        policy = "unique"
    elif min(values) == max(values):
        policy = "balanced"
    else:
        policy = "free"
    appear = _stats(values)
    return {
        "policy": policy,
        "n_images": len(counts),
        "appearances": {"min": appear["min"], "max": appear["max"]},
        "truth_appearances": _stats(truth),
        "distractor_appearances": _stats(other),
        "elimination_possible": policy == "free",
    }
