"""Reader-study statistics: accuracy vs chance and vs SSIM, agreement, time, Likert.

Accuracy is top-1: the reader's current match answer is the true original ("none" counts as
wrong). Intervals are Wilson 95%; the test against chance (1/K) is a one-sided exact
binomial test. Pooled figures treat every (reader, case) answer as one trial, ignoring that
readers see the same cases. Agreement uses the match answers: Fleiss' kappa over the cases
every reader answered, Cohen's kappa over the cases each pair answered.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io import atomic_write_json, atomic_write_text
from ..stats import wilson_interval
from .design import Case, Design
from .store import Answer, ReaderStudyStore

__all__ = [
    "wilson_interval",
    "binomial_p_greater",
    "fleiss_kappa",
    "cohen_kappa",
    "analyze",
    "write_analysis",
    "answers_long_table",
    "markdown_section",
]

LEVELS = (1, 2, 3, 4, 5)


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def binomial_p_greater(correct: int, n: int, chance: float) -> float | None:
    """One-sided exact binomial p-value of ``correct`` or more hits in ``n`` at rate ``chance``."""
    if n == 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(correct, n, chance, alternative="greater").pvalue)


def fleiss_kappa(ratings: Sequence[Sequence[str]]) -> float | None:
    """Fleiss' kappa of ``ratings[case][rater]`` (every case rated by the same number of raters).

    ``None`` when undefined (fewer than 2 raters or cases, or a single category overall).
    """
    if len(ratings) < 1 or min(len(r) for r in ratings) < 2:
        return None
    if len({len(r) for r in ratings}) != 1:
        raise ValueError("every case needs the same number of ratings for Fleiss' kappa")
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as _fleiss

    cats = sorted({x for r in ratings for x in r})
    if len(cats) < 2:
        return None
    codes = np.array([[cats.index(x) for x in r] for r in ratings])
    table, _ = aggregate_raters(codes, n_cat=len(cats))
    with np.errstate(invalid="ignore", divide="ignore"):
        return _finite(_fleiss(table, method="fleiss"))


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' paired labels (``None`` when undefined)."""
    if len(a) != len(b):
        raise ValueError("Cohen's kappa needs paired ratings")
    if not a:
        return None
    from statsmodels.stats.inter_rater import cohens_kappa as _cohen

    cats = sorted(set(a) | set(b))
    if len(cats) < 2:
        return None
    table = np.zeros((len(cats), len(cats)))
    for x, y in zip(a, b, strict=True):
        table[cats.index(x), cats.index(y)] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return _finite(_cohen(table).kappa)


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
        },
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


def analyze(db_path: str | os.PathLike[str]) -> dict:
    """Statistics of a reader-study database as a JSON-serialisable dict.

    Keys: ``design``, ``readers`` (per reader), ``pooled``, ``ssim_matcher`` (all match
    cases), ``by_confidence``, ``agreement`` (``fleiss_kappa``, ``cohen_kappa`` per pair),
    ``likert``. Each accuracy block holds ``n``, ``correct``, ``accuracy``, ``ci95``,
    ``chance``, ``p_vs_chance``, ``vs_ssim`` (the SSIM matcher on the same cases),
    ``time`` (seconds per case) and ``likert`` (anatomy counts 1-5).
    """
    with ReaderStudyStore(db_path) as store:
        return _analyze(store.design, store.history())


def answers_long_table(db_path: str | os.PathLike[str]) -> str:
    """The full answer trail as long-format CSV text.

    Columns: reader, case, question, answer, time_shown, time_answered, seconds, revision,
    current. One row per answered question of every answer revision.
    """
    with ReaderStudyStore(db_path) as store:
        history = store.history()
    latest = {(a.reader, a.case_id): a.answer_id for a in history}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "reader",
            "case",
            "question",
            "answer",
            "time_shown",
            "time_answered",
            "seconds",
            "revision",
            "current",
        ]
    )
    for a in history:
        for q in ("match", "confidence", "anatomy", "comment"):
            value = getattr(a, q)
            if value is None:
                continue
            w.writerow(
                [
                    a.reader,
                    a.case_id,
                    q,
                    value,
                    a.time_shown,
                    a.time_answered,
                    f"{a.seconds:.3f}",
                    a.revision,
                    int(latest[(a.reader, a.case_id)] == a.answer_id),
                ]
            )
    return buf.getvalue()


def _case_key_table(design: Design) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "case",
            "kind",
            "run",
            "fold",
            "reconstruction_id",
            "true_label",
            "ssim_pick",
            "candidates",
        ]
    )
    for c in design.cases:
        cands = ";".join(f"{x.label}={x.candidate_id}" for x in c.candidates)
        w.writerow(
            [
                c.case_id,
                c.kind,
                c.run,
                "" if c.fold is None else c.fold,
                c.reconstruction_id,
                c.true_label or "",
                c.ssim_pick or "",
                cands,
            ]
        )
    return buf.getvalue()


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _p(x: float | None) -> str:
    return "n/a" if x is None else ("< 0.001" if x < 0.001 else f"{x:.3f}")


def _acc_row(name: str, b: dict) -> str:
    ci = b["ci95"]
    ci_txt = f"{_pct(ci[0])}-{_pct(ci[1])}" if ci else "n/a"
    v = b["vs_ssim"]
    return (
        f"| {name} | {b['n']} | {b['correct']} | {_pct(b['accuracy'])} | {ci_txt} | "
        f"{_p(b['p_vs_chance'])} | {_pct(v['ssim_accuracy'])} | {_p(v['mcnemar_p'])} | "
        f"{_num(b['time']['median'], '.1f')} |"
    )


def markdown_section(result: dict) -> str:
    """A markdown section (``## Expert reader study``) for the study report."""
    d = result["design"]
    lines = [
        "## Expert reader study",
        "",
        f"{len(d['readers'])} reader(s) matched each of {d['n_match_cases']} reconstructions "
        f"(run `{d['run']}`) to one of {d['n_candidates']} candidate originals "
        f"({d['strategy']} distractors, chance {_pct(d['chance'])}), blinded to subject ids, "
        f"scores and folds"
        + (f"; {d['n_quality_cases']} quality-only cases." if d["n_quality_cases"] else "."),
        "",
        "| reader | cases | correct | top-1 accuracy | 95% CI (Wilson) | p vs chance | "
        "SSIM on same cases | p reader vs SSIM (McNemar) | median s/case |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [_acc_row(r, b) for r, b in result["readers"].items()]
    lines.append(_acc_row("**pooled**", result["pooled"]))
    s = result["ssim_matcher"]
    lines += [
        "",
        f"The SSIM matcher picks the true original among the same candidates in "
        f"{s['correct']} of {s['n']} cases ({_pct(s['accuracy'])}).",
        "",
        "Accuracy by confidence (pooled):",
        "",
        "| confidence | answers | accuracy |",
        "| ---: | ---: | ---: |",
    ]
    lines += [
        f"| {lvl} | {b['n']} | {_pct(b['accuracy'])} |"
        for lvl, b in result["by_confidence"].items()
    ]
    ag = result["agreement"]
    lines += [
        "",
        f"Inter-reader agreement on the match answers: Fleiss' kappa "
        f"{_num(ag['fleiss_kappa'])} over {ag['fleiss_n_cases']} cases answered by every reader.",
    ]
    if ag["cohen_kappa"]:
        lines += [
            "",
            "| readers | cases | raw agreement | Cohen's kappa |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {p['readers'][0]} / {p['readers'][1]} | {p['n']} | {_pct(p['agreement'])} | "
            f"{_num(p['kappa'])} |"
            for p in ag["cohen_kappa"]
        ]
    lk = result["likert"]
    lines += [
        "",
        "Recognisable anatomy in the reconstruction (Likert 1 = not at all, 5 = fully):",
        "",
        "| cases | " + " | ".join(str(k) for k in LEVELS) + " |",
        "| --- |" + " ---: |" * len(LEVELS),
    ]
    for key, name in (("all", "all"), ("match_cases", "match"), ("quality_cases", "quality only")):
        if sum(lk[key].values()):
            lines.append(f"| {name} | " + " | ".join(str(lk[key][str(k)]) for k in LEVELS) + " |")
    return "\n".join(lines) + "\n"


def write_analysis(db_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> dict:
    """Write ``reader_study.json``, ``reader_study.md``, ``answers.csv`` and ``case_key.csv``.

    ``case_key.csv`` unblinds the cases (subject ids, true labels); keep it from readers.
    Returns the analysis dict.
    """
    out = Path(out_dir)
    with ReaderStudyStore(db_path) as store:
        design, history = store.design, store.history()
    result = _analyze(design, history)
    atomic_write_json(out / "reader_study.json", result)
    atomic_write_text(out / "reader_study.md", markdown_section(result))
    atomic_write_text(out / "answers.csv", answers_long_table(db_path))
    atomic_write_text(out / "case_key.csv", _case_key_table(design))
    return result
