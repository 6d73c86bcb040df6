"""Reader-study outputs: the answer trail and case key as CSV, the report's Markdown section,
and :func:`write_analysis`, which writes them all beside ``reader_study.json``. These are
the coordinator's files: ``case_key.csv`` unblinds the cases."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from ..io import atomic_write_json, atomic_write_text
from .analysis import LEVELS, _analyze
from .design import Design
from .key import read_results
from .store import Answer

__all__ = ["answers_long_table", "markdown_section", "write_analysis"]


def answers_long_table(history: Sequence[Answer]) -> str:
    """The answer trail ``history`` (oldest first) as long-format CSV text.

    Columns: reader, case, question, answer, time_shown, time_answered, seconds, revision,
    current. One row per answered question of every answer revision.
    """
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


def _recurrence_line(rec: dict | None) -> str:
    """What the cases' recurrence lets a reader infer, in one sentence."""
    if not rec or rec["n_images"] == 0:
        return ""
    a, t, o = rec["appearances"], rec["truth_appearances"], rec["distractor_appearances"]
    if rec["policy"] == "unique":
        return (
            f"Candidate recurrence: unique; each of the {rec['n_images']} candidate images "
            "appears in one case only, so no reader could work by elimination across cases."
        )
    if rec["policy"] == "balanced":
        return (
            f"Candidate recurrence: balanced; each of the {rec['n_images']} candidate images "
            f"appears in {a['min']} cases, as truth and distractor alike, so counting "
            "appearances across cases tells a reader nothing about the answer."
        )
    return (
        f"Candidate recurrence: free; the {rec['n_images']} candidate images appear in "
        f"{a['min']} to {a['max']} cases (truths {_num(t['mean'], '.1f')} on average, "
        f"distractors {_num(o['mean'], '.1f')}), so a reader comparing files across cases "
        "could work by elimination and accuracy may be overstated."
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
    ]
    recurrence = _recurrence_line(result.get("recurrence"))
    if recurrence:
        lines += [recurrence, ""]
    lines += [
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


def write_analysis(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    packages: Sequence[str | os.PathLike[str]] = (),
) -> dict:
    """Write ``reader_study.json``, ``reader_study.md``, ``answers.csv`` and ``case_key.csv``.

    ``path`` and ``packages`` as for :func:`~.analysis.analyze`. ``case_key.csv`` unblinds
    the cases (subject ids, true labels); keep it from readers. Returns the analysis dict.
    """
    out = Path(out_dir)
    design, history = read_results(path, packages)
    result = _analyze(design, history)
    atomic_write_json(out / "reader_study.json", result)
    atomic_write_text(out / "reader_study.md", markdown_section(result))
    atomic_write_text(out / "answers.csv", answers_long_table(history))
    atomic_write_text(out / "case_key.csv", _case_key_table(design))
    return result
