"""Blinded reader-study design: cases of one reconstruction beside K shuffled candidates.

Each match case shows one reconstruction and ``n_candidates`` candidate originals: the true
original plus K-1 others, drawn at random or as the hardest by SSIM, in shuffled order and
labelled A, B, C... How often a candidate recurs across cases follows a recurrence policy
(``recurrence.py``: balanced by default, so appearance counts do not give the truth away).
Optional quality-only cases show a reconstruction alone (Popescu et al. 2022).
Cases carry random anonymised ids; each reader gets their own seeded case order and, for
each case, their own seeded order of its candidates (:attr:`Design.candidate_orders`), so
no position on screen is tied to the answer across readers.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CohortError, ConfigError
from ..study.layout import StudyPaths
from .blind import BlindCase, BlindDesign, questions_for
from .cases import RunScores, candidate_file, read_study_scores, reconstruction_file
from .recurrence import RECURRENCE, recurrence_summary
from .recurrence import draw_cases as _draw_cases

__all__ = [
    "QUESTIONS",
    "MATCH_NONE",
    "LABELS",
    "STRATEGIES",
    "RECURRENCE",
    "Candidate",
    "Case",
    "Design",
    "create_design",
]

log = logging.getLogger(__name__)

#: questions a case may ask: which candidate matches, confidence in that choice (1-5),
#: whether the reconstruction shows recognisable anatomy (Likert 1-5), free text
QUESTIONS = ("match", "confidence", "anatomy", "comment")
#: the match answer for "none of the candidates"
MATCH_NONE = "none"
#: candidate labels, in display order
LABELS = "ABCDEFGH"
STRATEGIES = ("random", "hardest")


@dataclass(frozen=True)
class Candidate:
    """One candidate original shown in a case under ``label``."""

    label: str
    candidate_id: str
    path: str  #: relative to the study folder
    is_true: bool
    ssim: float | None = None  #: SSIM with the case's reconstruction, from scores.csv


@dataclass(frozen=True)
class Case:
    """One screen of the study. ``kind`` is ``"match"`` or ``"quality"`` (no candidates)."""

    case_id: str
    kind: str
    run: str
    fold: int | None
    reconstruction_id: str
    reconstruction_path: str  #: relative to the study folder
    candidates: tuple[Candidate, ...] = ()
    ssim_pick: str | None = None  #: label the SSIM matcher would choose among the candidates

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(c.label for c in self.candidates)

    @property
    def true_label(self) -> str | None:
        return next((c.label for c in self.candidates if c.is_true), None)


@dataclass(frozen=True)
class Design:
    """A frozen reader-study design: the cases and each reader's case order."""

    study_dir: str
    run: str
    n_candidates: int
    strategy: str
    seed: int
    allow_revisit: bool
    questions: tuple[str, ...]
    readers: tuple[str, ...]
    cases: tuple[Case, ...]
    orders: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: reader -> case id -> the case's candidate labels in the order that reader sees them;
    #: the reader's n-th panel (shown as the n-th letter) holds candidate ``labels[n]``
    candidate_orders: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)

    def case(self, case_id: str) -> Case:
        """The case with anonymised id ``case_id``."""
        for c in self.cases:
            if c.case_id == case_id:
                return c
        raise KeyError(case_id)

    def shown_labels(self, reader: str, case_id: str) -> tuple[str, ...]:
        """The labels of ``case_id``'s candidates in the order ``reader`` sees them."""
        case = self.case(case_id)
        order = self.candidate_orders.get(reader, {}).get(case_id)
        return tuple(order) if order else case.labels

    @property
    def recurrence(self) -> dict:
        """How often each candidate image recurs across the match cases (policy, counts)."""
        return recurrence_summary(self.cases)

    def questions_for(self, case: Case) -> tuple[str, ...]:
        """The questions asked for ``case``: quality cases ask no match or confidence."""
        return questions_for(self.questions, case.kind)

    def blind(self) -> BlindDesign:
        """What a reader may know of this design (cases listed by id, not in design order)."""
        return BlindDesign(
            questions=tuple(self.questions),
            allow_revisit=self.allow_revisit,
            readers=tuple(self.readers),
            cases=tuple(
                BlindCase(c.case_id, c.kind, c.labels)
                for c in sorted(self.cases, key=lambda c: c.case_id)
            ),
            orders={r: tuple(o) for r, o in self.orders.items()},
            candidate_orders={
                r: {cid: tuple(ls) for cid, ls in by_case.items()}
                for r, by_case in self.candidate_orders.items()
            },
        )

    def to_dict(self) -> dict:
        """A JSON-serialisable copy."""
        return asdict(self)


def _ssim_pick(candidates: Sequence[Candidate]) -> str | None:
    scored = [c for c in candidates if c.ssim is not None]
    if not scored:
        return None
    return max(scored, key=lambda c: (c.ssim, -ord(c.label))).label


def _reader_rng(seed: int, reader: str) -> np.random.Generator:
    # keyed on the name, so adding a reader leaves the others' orders unchanged
    key = int.from_bytes(hashlib.sha256(reader.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([seed, key])


def _candidate_orders(seed: int, reader: str, cases: Sequence[Case]) -> dict[str, tuple[str, ...]]:
    """Each match case's labels in a random order of its own for ``reader`` (seeded by name)."""
    key = int.from_bytes(hashlib.sha256(reader.encode("utf-8")).digest()[:8], "little")
    rng = np.random.default_rng([seed, key, 1])  # a stream apart from the case order's
    return {
        c.case_id: tuple(c.labels[i] for i in rng.permutation(len(c.labels)))
        for c in cases
        if c.candidates
    }


def _case_ids(rng: np.random.Generator, n: int) -> list[str]:
    width = 4 if n <= 2000 else 8
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        cid = "case-" + "".join(
            f"{b:02x}" for b in rng.integers(0, 256, width // 2, dtype=np.uint8)
        )
        if cid not in seen:
            seen.add(cid)
            ids.append(cid)
    return ids


def _check_readers(readers: Sequence[str]) -> tuple[str, ...]:
    names = tuple(r.strip() for r in readers)
    if not names:
        raise ConfigError("a reader study needs at least one reader")
    lowered = [n.lower() for n in names]
    for n in names:
        if not n or "," in n:
            raise ConfigError(f"invalid reader name {n!r}")
    dup = sorted({n for n in names if lowered.count(n.lower()) > 1})
    if dup:
        raise ConfigError(f"duplicate reader name(s): {', '.join(dup)}")
    return names


def _defended(run: str) -> bool:
    """Whether ``run`` is a defended run ``<arch>_<variant>_<threat>_<defence tag>``."""
    from ..study.layout import parse_run

    try:
        return bool(parse_run(run)[3])
    except ValueError:
        return False


def _choose_run(runs: dict[str, RunScores], run: str | None, scores_path: Path) -> RunScores:
    if run is not None:
        if run not in runs:
            raise ConfigError(f"{scores_path}: no run {run!r}; runs are {', '.join(sorted(runs))}")
        return runs[run]
    plain = {r: v for r, v in runs.items() if not _defended(r)} or runs
    if len(plain) == 1:
        return next(iter(plain.values()))
    # several runs: the one whose SSIM matcher identifies most subjects
    best = max(sorted(plain), key=lambda r: plain[r].ssim_top1_accuracy())
    log.info("several runs in %s; using %s (highest SSIM top-1 accuracy)", scores_path, best)
    return plain[best]


def _defended_runs(runs: dict[str, RunScores], base: str) -> list[RunScores]:
    """The defended runs of ``base`` (``<base>_<defence tag>``), sorted by name."""
    return [runs[r] for r in sorted(runs) if r.startswith(f"{base}_") and _defended(r)]


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise CohortError(f"{path}: file not found")


def _labelled(
    study: Path, rs: RunScores, rid: str, shuffled: Sequence[str]
) -> tuple[Candidate, ...]:
    """The case's subjects ``shuffled`` as candidates labelled A, B..., their files checked."""
    _require_file(reconstruction_file(study, rs.run, rid))
    rec = rs.reconstructions[rid]
    cands = []
    for label, cid in zip(LABELS, shuffled, strict=False):
        cpath = candidate_file(study, rs.variant, cid)
        _require_file(cpath)
        cands.append(
            Candidate(
                label, cid, cpath.relative_to(study).as_posix(), cid == rid, rec.ssim.get(cid)
            )
        )
    return tuple(cands)


def create_design(
    study_dir: str | os.PathLike[str],
    readers: Sequence[str],
    n_candidates: int = 5,
    strategy: str = "random",
    run: str | None = None,
    seed: int = 0,
    quality_only_cases: int = 0,
    allow_revisit: bool = True,
    questions: Sequence[str] = QUESTIONS,
    include_defended: bool = False,
    recurrence: str = "balanced",
) -> Design:
    """Build a blinded reader-study design from a finished study folder.

    Parameters
    ----------
    study_dir : the study runner's output folder.
    readers : reader names; each gets their own seeded case order.
    n_candidates : K, candidates per match case (the true original plus K-1 others), 2 to 8.
    strategy : ``"random"`` others, or the ``"hardest"``: highest SSIM with the reconstruction.
    run : run folder name (``<arch>_<variant>_<threat_model>``); by default the only run, or
        the run whose SSIM matcher identifies most subjects.
    seed : seeds candidate choice, candidate order, case ids and reader orders.
    quality_only_cases : extra cases showing a reconstruction alone (anatomy question only).
    allow_revisit : whether a reader may go back and change an answer.
    questions : subset of :data:`QUESTIONS`.
    include_defended : also make match cases of the run's defended runs' reconstructions
        (``<run>_<defence tag>``), mixed with the undefended ones, so readers judge what a
        defence leaves recognisable. A case's run (its defence) is kept in the key only.
    recurrence : how often a candidate image recurs across cases (:mod:`.recurrence`):
        ``"balanced"`` (each reconstructed subject the truth of one case per run and a
        distractor in K-1 others), ``"unique"`` (no image in two cases: at most n // K
        cases) or ``"free"`` (each case drawn on its own, as earlier versions did).
    """
    study = Path(study_dir).resolve()
    names = _check_readers(readers)
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if recurrence not in RECURRENCE:
        raise ConfigError(
            f"unknown recurrence {recurrence!r}; choose one of {', '.join(RECURRENCE)}"
        )
    if not 2 <= n_candidates <= len(LABELS):
        raise ConfigError(f"n_candidates must be between 2 and {len(LABELS)}, got {n_candidates}")
    questions = tuple(questions)
    bad = [q for q in questions if q not in QUESTIONS]
    if bad or not questions or len(set(questions)) != len(questions):
        raise ConfigError(f"questions must be distinct items of {QUESTIONS}, got {questions}")
    if quality_only_cases < 0:
        raise ConfigError("quality_only_cases must be >= 0")
    if quality_only_cases and "anatomy" not in questions:
        raise ConfigError("quality-only cases need the 'anatomy' question")

    scores_path = StudyPaths(study).scores
    runs = read_study_scores(study)
    rs = _choose_run(runs, run, scores_path)
    rng = np.random.default_rng(seed)
    k = n_candidates
    recon_ids = sorted(rs.reconstructions)
    sources = [rs, *(_defended_runs(runs, rs.run) if include_defended else [])]
    drafts: list[tuple[str, RunScores, str, tuple[Candidate, ...]]] = [
        ("match", src, rid, _labelled(study, src, rid, shuffled))
        for src, rid, shuffled in _draw_cases(sources, strategy, recurrence, k, rng, scores_path)
    ]

    if quality_only_cases > len(recon_ids):
        raise ConfigError(
            f"{quality_only_cases} quality-only cases requested but run {rs.run} has "
            f"{len(recon_ids)} reconstructions"
        )
    for rid in sorted(rng.choice(recon_ids, size=quality_only_cases, replace=False).tolist()):
        drafts.append(("quality", rs, rid, ()))

    ids = _case_ids(rng, len(drafts))
    cases = tuple(
        Case(
            case_id=cid,
            kind=kind,
            run=src.run,
            fold=src.reconstructions[rid].fold,
            reconstruction_id=rid,
            reconstruction_path=reconstruction_file(study, src.run, rid)
            .relative_to(study)
            .as_posix(),
            candidates=cands,
            ssim_pick=_ssim_pick(cands),
        )
        for cid, (kind, src, rid, cands) in zip(ids, drafts, strict=True)
    )
    orders = {
        name: tuple(ids[i] for i in _reader_rng(seed, name).permutation(len(ids))) for name in names
    }
    candidate_orders = {name: _candidate_orders(seed, name, cases) for name in names}
    return Design(
        study_dir=str(study),
        run=rs.run,
        n_candidates=k,
        strategy=strategy,
        seed=seed,
        allow_revisit=allow_revisit,
        questions=questions,
        readers=names,
        cases=cases,
        orders=orders,
        candidate_orders=candidate_orders,
    )
