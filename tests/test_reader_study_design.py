"""Reader-study design: candidates, shuffling, seeded reader orders, anonymised ids, freezing."""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from inversion_audit.errors import CohortError, ConfigError, StudyError
from inversion_audit.io import write_volume
from inversion_audit.reader_study import (
    ReaderStudyError,
    ReaderStudyStore,
    create_design,
    write_design,
)
from inversion_audit.study.collect import write_scores
from inversion_audit.study.layout import StudyPaths, parse_run_name

RUN = "unet_skull-stripped_bottleneck"
WEAK_RUN = "segnet_skull-stripped_bottleneck"


def subject_ids(n: int) -> list[str]:
    """Distinctive IXI-like subject ids, so a leak of one in any string is detectable."""
    return [f"IXI{101 + i:03d}-HH-{2001 + i}" for i in range(n)]


def _blob(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    img = gaussian_filter(rng.random(shape).astype(np.float32), 2.0)
    img -= img.min()
    return (img / img.max()).astype(np.float32)


def build_fake_study(
    root: Path,
    n_subjects: int = 6,
    shape: tuple[int, int, int] = (16, 16, 16),
    runs: tuple[str, ...] = (RUN,),
    seed: int = 0,
    spacing: float = 2.0,
) -> Path:
    """Write a tiny study folder through the runner's ``StudyPaths`` and score writer.

    ``preprocessed/skull-stripped/<id>.nii.gz`` candidates, one
    ``reconstructions/<run>/<id>_recon_pre.nii.gz`` per subject and run, and a long
    ``scores/scores.csv`` with ssim, correlation and psnr (SSIM set by hand, so that the
    tests control which subjects it identifies). In the first run SSIM ranks the
    true original first except for the last subject; in later runs it never does.
    """
    rng = np.random.default_rng(seed)
    study = Path(root)
    paths = StudyPaths(study)
    ids = subject_ids(n_subjects)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = [-10.0, -12.0, -14.0]
    originals = {}
    for sid in ids:
        originals[sid] = _blob(rng, shape)
        write_volume(paths.preprocessed("skull-stripped", sid), originals[sid], affine)
    rows = []
    for r, run in enumerate(runs):
        arch, variant, threat = parse_run_name(run)
        for i, sid in enumerate(ids):
            recon = originals[sid] + rng.normal(0, 0.1, shape).astype(np.float32)
            write_volume(paths.reconstruction(run, sid, "preprocessed"), recon, affine)
            for j, cid in enumerate(ids):
                ssim = 0.8 - 0.05 * ((j - i) % n_subjects) if cid != sid else 0.8
                if r == 0 and i == n_subjects - 1 and j == 0:
                    ssim = 0.9  # one SSIM top-1 miss in the first run
                if r > 0:  # later runs: SSIM never identifies the subject
                    ssim = 0.5 if cid == sid else float(rng.uniform(0.55, 0.9))
                for metric, value in (
                    ("ssim", ssim),
                    ("correlation", ssim - 0.1),
                    ("psnr", 20 * ssim),
                ):
                    rows.append((i % 2, arch, variant, threat, sid, cid, metric, float(value)))
    write_scores(paths.scores, rows)
    return study


@pytest.fixture
def fake_study(tmp_path):
    return build_fake_study(tmp_path / "study")


def test_design_is_deterministic_per_seed(fake_study):
    a = create_design(fake_study, ["alice", "bob"], n_candidates=4, seed=3)
    b = create_design(fake_study, ["alice", "bob"], n_candidates=4, seed=3)
    c = create_design(fake_study, ["alice", "bob"], n_candidates=4, seed=4)
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != c.to_dict()
    assert [x.case_id for x in a.cases] != [x.case_id for x in c.cases]


def test_match_cases_hold_true_original_and_shuffled_candidates(fake_study):
    ids = subject_ids(6)
    d = create_design(fake_study, ["alice"], n_candidates=4, seed=0)
    assert len(d.cases) == 6 and d.run == RUN
    true_labels = []
    for case in d.cases:
        assert case.kind == "match" and case.labels == ("A", "B", "C", "D")
        chosen = [c.candidate_id for c in case.candidates]
        assert len(set(chosen)) == 4 and set(chosen) <= set(ids)
        assert [c.candidate_id for c in case.candidates if c.is_true] == [case.reconstruction_id]
        true_labels.append(case.true_label)
        assert (fake_study / case.reconstruction_path).is_file()
        assert all((fake_study / c.path).is_file() for c in case.candidates)
        best = max(case.candidates, key=lambda c: c.ssim)
        assert case.ssim_pick == best.label
    assert len(set(true_labels)) > 1, "the true original must not always sit at one label"


def test_hardest_strategy_takes_top_ssim_distractors(fake_study):
    d = create_design(fake_study, ["alice"], n_candidates=3, strategy="hardest")
    with open(fake_study / "scores" / "scores.csv") as fh:
        ssim = {
            (r["reconstruction_id"], r["candidate_id"]): float(r["value"])
            for r in csv.DictReader(fh)
            if r["metric"] == "ssim"
        }
    for case in d.cases:
        rid = case.reconstruction_id
        others = sorted(
            (c for (r, c) in ssim if r == rid and c != rid), key=lambda c: -ssim[(rid, c)]
        )
        chosen = {c.candidate_id for c in case.candidates if not c.is_true}
        assert chosen == set(others[:2])


def test_random_strategy_varies_distractors_with_seed(fake_study):
    picks = {
        seed: tuple(
            frozenset(c.candidate_id for c in case.candidates)
            for case in create_design(fake_study, ["a"], n_candidates=3, seed=seed).cases
        )
        for seed in range(4)
    }
    assert len(set(picks.values())) > 1


def test_reader_orders_are_seeded_permutations(fake_study):
    d = create_design(
        fake_study, ["alice", "bob", "carol"], n_candidates=3, quality_only_cases=2, seed=1
    )
    ids = [c.case_id for c in d.cases]
    assert len(ids) == 8
    for reader in d.readers:
        assert sorted(d.orders[reader]) == sorted(ids)
    assert len({d.orders[r] for r in d.readers}) == 3
    # adding a reader keeps the others' orders
    d2 = create_design(
        fake_study, ["alice", "bob", "carol", "dave"], n_candidates=3, quality_only_cases=2, seed=1
    )
    assert all(d2.orders[r] == d.orders[r] for r in d.readers)


def test_case_ids_are_anonymous(fake_study):
    d = create_design(fake_study, ["alice"], n_candidates=3, quality_only_cases=3)
    ids = [c.case_id for c in d.cases]
    assert len(set(ids)) == len(ids)
    for cid in ids:
        assert re.fullmatch(r"case-[0-9a-f]{4}", cid)
    quality = [c for c in d.cases if c.kind == "quality"]
    assert len(quality) == 3 and all(c.candidates == () and c.true_label is None for c in quality)
    assert d.questions_for(quality[0]) == ("anatomy", "comment")


def test_default_run_is_the_most_identifiable(tmp_path):
    study = build_fake_study(tmp_path / "s", runs=(RUN, WEAK_RUN))
    assert create_design(study, ["a"], n_candidates=3).run == RUN
    assert create_design(study, ["a"], n_candidates=3, run=WEAK_RUN).run == WEAK_RUN
    with pytest.raises(ConfigError, match="nope.*runs are"):
        create_design(study, ["a"], run="nope")


def test_design_errors_are_clear(fake_study, tmp_path):
    with pytest.raises(ConfigError, match="IXI101-HH-2001.*has 5 other candidates"):
        create_design(fake_study, ["a"], n_candidates=7)
    with pytest.raises(ConfigError, match="strategy"):
        create_design(fake_study, ["a"], strategy="easiest")
    with pytest.raises(ConfigError, match="duplicate reader"):
        create_design(fake_study, ["alice", "Alice"])
    with pytest.raises(ConfigError, match="quality-only"):
        create_design(fake_study, ["a"], quality_only_cases=7, n_candidates=3)
    with pytest.raises(ConfigError, match="anatomy"):
        create_design(fake_study, ["a"], quality_only_cases=1, questions=("match",))
    with pytest.raises(StudyError, match="scores.csv"):
        create_design(tmp_path / "empty", ["a"])
    missing = fake_study / "preprocessed" / "skull-stripped" / "IXI103-HH-2003.nii.gz"
    missing.unlink()
    with pytest.raises(CohortError, match="IXI103-HH-2003.nii.gz: file not found"):
        create_design(fake_study, ["a"], n_candidates=6)


def test_write_design_freezes_and_refuses_overwrite(fake_study, tmp_path):
    design = create_design(fake_study, ["alice", "bob"], n_candidates=4, quality_only_cases=1)
    db = write_design(tmp_path / "rs.sqlite", design)
    with ReaderStudyStore(db) as store:
        assert store.design == design
        assert store.study_dir == fake_study.resolve()
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    other = create_design(fake_study, ["carol"], n_candidates=3, seed=9)
    with pytest.raises(
        ReaderStudyError, match=r"rs\.sqlite: already holds a frozen reader-study design"
    ):
        write_design(db, other)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    not_db = tmp_path / "notes.txt"
    not_db.write_text("keep me")
    with pytest.raises(ReaderStudyError, match="notes.txt: file exists"):
        write_design(not_db, design)
    assert not_db.read_text() == "keep me"
