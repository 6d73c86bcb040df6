"""Reader-study statistics: accuracy vs chance and vs SSIM, agreement, time, Likert.

Accuracy is top-1: the reader's current match answer is the true original ("none" counts as
wrong). Intervals are Wilson 95%; the test against chance (1/K) is a one-sided exact
binomial test. Pooled figures treat every (reader, case) answer as one trial, ignoring that
readers see the same cases. Agreement uses the match answers: Fleiss' kappa over the cases
every reader answered, Cohen's kappa over the cases each pair answered (``agreement.py``).
How often each candidate image recurs across the cases (``recurrence``) says whether a reader
could have worked by elimination.
The files written from these numbers are in ``export.py``.
"""

from __future__ import annotations

import itertools
import os
import statistics
from collections import Counter
from collections.abc import Sequence

from ..stats import wilson_interval
from .agreement import binomial_p_greater, cohen_kappa, fleiss_kappa
from .design import Case, Design
from .key import read_results
from .store import Answer

__all__ = [
    "wilson_interval",
    "binomial_p_greater",
    "fleiss_kappa",
    "cohen_kappa",
    "analyze",
]

LEVELS = (1, 2, 3, 4, 5)


def _accuracy(correct: int, n: int, chance: float) -> dict:
    ci = wilson_interval(correct, n)
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "ci95": list(ci) if ci else None,
        "chance": chance,
        "p_vs_chance": binomial_p_greater(correct, n, chance),
    }


def _vs_ssim(pairs: list[tuple[bool, bool]]) -> dict:
    """Reader vs SSIM matcher on the same cases, with an exact McNemar test."""
    both = sum(r and s for r, s in pairs)
    reader_only = sum(r and not s for r, s in pairs)
    ssim_only = sum(s and not r for r, s in pairs)
    n = len(pairs)
    discordant = reader_only + ssim_only
    if discordant:
        from scipy.stats import binomtest

        p = float(binomtest(reader_only, discordant, 0.5).pvalue)
    else:
        p = None
    ssim_correct = both + ssim_only
    return {
        "n": n,
        "ssim_correct": ssim_correct,
        "ssim_accuracy": ssim_correct / n if n else None,
        "ssim_ci95": list(wilson_interval(ssim_correct, n) or []) or None,
        "both_correct": both,
        "reader_only": reader_only,
        "ssim_only": ssim_only,
        "neither": n - both - reader_only - ssim_only,
        "mcnemar_p": p,
    }


def _time_stats(seconds: list[float]) -> dict:
    if not seconds:
        return {"n": 0, "mean": None, "median": None, "min": None, "max": None, "total": 0.0}
    return {
        "n": len(seconds),
        "mean": statistics.fmean(seconds),
        "median": statistics.median(seconds),
        "min": min(seconds),
        "max": max(seconds),
        "total": sum(seconds),
    }


def _levels(values: list[int]) -> dict[str, int]:
    counts = Counter(values)
    return {str(k): counts.get(k, 0) for k in LEVELS}


def _analyze(design: Design, history: list[Answer]) -> dict:
    cases = {c.case_id: c for c in design.cases}
    current: dict[tuple[str, str], Answer] = {(a.reader, a.case_id): a for a in history}
    chance = 1.0 / design.n_candidates
    match_cases = [c for c in design.cases if c.kind == "match"]

    def is_correct(a: Answer) -> bool:
        return a.match == cases[a.case_id].true_label

    def ssim_correct(c: Case) -> bool:
        return c.ssim_pick is not None and c.ssim_pick == c.true_label

    time_per: dict[tuple[str, str], float] = Counter()
    for a in history:  # time on a case adds up over revisits
        time_per[(a.reader, a.case_id)] += a.seconds

    def block(answers: list[Answer]) -> dict:
        matched = [a for a in answers if a.match is not None]
        k = sum(is_correct(a) for a in matched)
        out = _accuracy(k, len(matched), chance)
        out["n_none"] = sum(a.match == "none" for a in matched)
        scored = [a for a in matched if cases[a.case_id].ssim_pick is not None]
        out["vs_ssim"] = _vs_ssim([(is_correct(a), ssim_correct(cases[a.case_id])) for a in scored])
        out["time"] = _time_stats([time_per[(a.reader, a.case_id)] for a in answers])
        out["likert"] = _levels([a.anatomy for a in answers if a.anatomy is not None])
        out["n_answered"] = len(answers)
        return out

    per_reader = {
        r: block([a for (rr, _), a in current.items() if rr == r]) for r in design.readers
    }
    pooled = block(list(current.values()))

    by_conf = {}
    for level in LEVELS:
        sel = [a for a in current.values() if a.match is not None and a.confidence == level]
        k = sum(is_correct(a) for a in sel)
        ci = wilson_interval(k, len(sel))
        by_conf[str(level)] = {
            "n": len(sel),
            "correct": k,
            "accuracy": k / len(sel) if sel else None,
            "ci95": list(ci) if ci else None,
        }

    # agreement on the match answers
    match_ids = [c.case_id for c in match_cases]
    answered = {
        r: {cid: current[(r, cid)].match for cid in match_ids if (r, cid) in current}
        for r in design.readers
    }
    complete = [cid for cid in match_ids if all(cid in answered[r] for r in design.readers)]
    fk = (
        fleiss_kappa([[answered[r][cid] for r in design.readers] for cid in complete])
        if len(design.readers) >= 2 and complete
        else None
    )
    pairs = []
    for r1, r2 in itertools.combinations(design.readers, 2):
        common = [cid for cid in match_ids if cid in answered[r1] and cid in answered[r2]]
        a = [answered[r1][cid] for cid in common]
        b = [answered[r2][cid] for cid in common]
        agree = sum(x == y for x, y in zip(a, b, strict=True))
        pairs.append(
            {
                "readers": [r1, r2],
                "n": len(common),
                "agreement": agree / len(common) if common else None,
                "kappa": cohen_kappa(a, b) if common else None,
            }
        )

    likert = {
        "all": _levels([a.anatomy for a in current.values() if a.anatomy is not None]),
        "match_cases": _levels(
            [a.anatomy for a in current.values() if a.anatomy and cases[a.case_id].kind == "match"]
        ),
        "quality_cases": _levels(
            [
                a.anatomy
                for a in current.values()
                if a.anatomy and cases[a.case_id].kind == "quality"
            ]
        ),
    }
    ssim_all = [ssim_correct(c) for c in match_cases if c.ssim_pick is not None]
    recurrence = design.recurrence
    return {
        "design": {
            "run": design.run,
            "n_candidates": design.n_candidates,
            "chance": chance,
            "strategy": design.strategy,
            "seed": design.seed,
            "readers": list(design.readers),
            "n_cases": len(design.cases),
            "n_match_cases": len(match_cases),
            "n_quality_cases": len(design.cases) - len(match_cases),
            "questions": list(design.questions),
            "allow_revisit": design.allow_revisit,
            "recurrence": recurrence["policy"],
        },
        "recurrence": recurrence,
        "readers": per_reader,
        "pooled": pooled,
        "ssim_matcher": _accuracy(sum(ssim_all), len(ssim_all), chance),
        "by_confidence": by_conf,
        "agreement": {
            "fleiss_kappa": fk,
            "fleiss_n_cases": len(complete),
            "cohen_kappa": pairs,
        },
        "likert": likert,
        "n_answer_rows": len(history),
        "n_revisions": len(history) - len(current),
    }


def analyze(path: str | os.PathLike[str], packages: Sequence[str | os.PathLike[str]] = ()) -> dict:
    """Statistics of a reader study as a JSON-serialisable dict.

    ``path`` is the study's key, with ``packages`` its reader package(s) (by default the one
    recorded in the key), or a single-file database of earlier versions.

    Keys: ``design``, ``readers`` (per reader), ``pooled``, ``ssim_matcher`` (all match
    cases), ``by_confidence``, ``agreement`` (``fleiss_kappa``, ``cohen_kappa`` per pair),
    ``likert``, ``recurrence`` (the policy the key's cases show, per-image appearance counts
    min/max, those of truths and distractors, ``elimination_possible``;
    :func:`~.recurrence.recurrence_summary`). Each accuracy block holds ``n``, ``correct``, ``accuracy``, ``ci95``,
    ``chance``, ``p_vs_chance``, ``vs_ssim`` (the SSIM matcher on the same cases),
    ``time`` (seconds per case) and ``likert`` (anatomy counts 1-5).
    """
    return _analyze(*read_results(path, packages))
