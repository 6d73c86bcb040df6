"""Reader-study design: candidates, shuffling, seeded reader orders, anonymised ids, freezing.

The study is made by the real runner (``reader_source_study``, shared by the other reader-study
test files); expected values come from its ``scores.csv`` read with the csv module.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import re
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import runner_study_config, write_blob_cohort
from inversion_audit.errors import CohortError, ConfigError, StudyError
from inversion_audit.reader_study import (
    ReaderStudyError,
    ReaderStudyStore,
    create_design,
    write_design,
)

RUN = "unet_skull-stripped_bottleneck"
SEG_RUN = "segnet_skull-stripped_bottleneck"


def subject_ids(n: int = 6) -> list[str]:
    """Distinctive IXI-like subject ids, so a leak of one in any string is detectable."""
    return [f"IXI{101 + i:03d}-HH-{2001 + i}" for i in range(n)]


def build_reader_source_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study made by the real runner: six IXI-like subjects (32^3 blobs, 2 mm), two folds,
    U-Net and SegNet, the bottleneck attack, SSIM/correlation/PSNR. Other reader-study test
    files make it their session fixture ``reader_source_study``; copy it before changing it."""
    from inversion_audit.study.config import study_config_from_dict
    from inversion_audit.study.runner import run_study

    root = tmp_path_factory.mktemp("reader_source")
    write_blob_cohort(root / "cohort", {sid: k for k, sid in enumerate(subject_ids())})
    config = runner_study_config(root / "cohort")
    config["study"]["name"] = "readers"
    config["matching"] = {"metrics": ["ssim", "correlation", "psnr"], "top_k": 1}
    with pytest.MonkeyPatch.context() as mp:  # session scope: isolate the cache by hand
        mp.setenv("INVERSION_AUDIT_CACHE", str(root / "cache"))
        run_study(study_config_from_dict(config), root / "study")
    return root / "study"


@pytest.fixture(scope="session")
def reader_source_study(tmp_path_factory) -> Path:
    return build_reader_source_study(tmp_path_factory)


@pytest.fixture
def study_copy(reader_source_study, tmp_path) -> Path:
    """A private copy of the runner's study, free to change."""
    return Path(shutil.copytree(reader_source_study, tmp_path / "study"))


def study_ssim(study: Path) -> dict[str, dict[str, dict[str, float]]]:
    """run -> reconstruction -> candidate -> SSIM, read from scores.csv with the csv module."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    with open(study / "scores" / "scores.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["metric"] == "ssim":
                run = f"{r['arch']}_{r['variant']}_{r['threat_model']}"
                out[run][r["reconstruction_id"]][r["candidate_id"]] = float(r["value"])
    return out


def test_design_is_deterministic_per_seed(reader_source_study):
    a = create_design(reader_source_study, ["alice", "bob"], n_candidates=4, seed=3, run=RUN)
    b = create_design(reader_source_study, ["alice", "bob"], n_candidates=4, seed=3, run=RUN)
    c = create_design(reader_source_study, ["alice", "bob"], n_candidates=4, seed=4, run=RUN)
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != c.to_dict()
    assert [x.case_id for x in a.cases] != [x.case_id for x in c.cases]


def test_match_cases_hold_true_original_and_shuffled_candidates(reader_source_study):
    ids = subject_ids()
    ssim = study_ssim(reader_source_study)[RUN]
    d = create_design(reader_source_study, ["alice"], n_candidates=4, seed=0, run=RUN)
    assert len(d.cases) == 6 and d.run == RUN
    true_labels = []
    for case in d.cases:
        assert case.kind == "match" and case.labels == ("A", "B", "C", "D")
        chosen = [c.candidate_id for c in case.candidates]
        assert len(set(chosen)) == 4 and set(chosen) <= set(ids)
        assert [c.candidate_id for c in case.candidates if c.is_true] == [case.reconstruction_id]
        true_labels.append(case.true_label)
        assert (reader_source_study / case.reconstruction_path).is_file()
        assert all((reader_source_study / c.path).is_file() for c in case.candidates)
        by_ssim = {c.label: ssim[case.reconstruction_id][c.candidate_id] for c in case.candidates}
        assert case.ssim_pick == max(by_ssim, key=by_ssim.get)
        assert all(c.ssim == pytest.approx(by_ssim[c.label]) for c in case.candidates)
    assert len(set(true_labels)) > 1, "the true original must not always sit at one label"


def test_hardest_strategy_takes_top_ssim_distractors(reader_source_study):
    """Unbalanced (``recurrence="free"``): each case's K-1 highest-SSIM others."""
    d = create_design(
        reader_source_study,
        ["alice"],
        n_candidates=3,
        strategy="hardest",
        run=RUN,
        recurrence="free",
    )
    ssim = study_ssim(reader_source_study)[RUN]
    for case in d.cases:
        rid = case.reconstruction_id
        others = sorted((c for c in ssim[rid] if c != rid), key=lambda c: (-ssim[rid][c], c))
        chosen = {c.candidate_id for c in case.candidates if not c.is_true}
        assert chosen == set(others[:2])


def test_random_strategy_varies_distractors_with_seed(reader_source_study):
    picks = {
        seed: tuple(
            frozenset(c.candidate_id for c in case.candidates)
            for case in create_design(
                reader_source_study, ["a"], n_candidates=3, seed=seed, run=RUN
            ).cases
        )
        for seed in range(4)
    }
    assert len(set(picks.values())) > 1


def test_reader_orders_are_seeded_permutations(reader_source_study):
    kw = {"n_candidates": 3, "quality_only_cases": 2, "seed": 1, "run": RUN}
    d = create_design(reader_source_study, ["alice", "bob", "carol"], **kw)
    ids = [c.case_id for c in d.cases]
    assert len(ids) == 8
    for reader in d.readers:
        assert sorted(d.orders[reader]) == sorted(ids)
    assert len({d.orders[r] for r in d.readers}) == 3
    # adding a reader keeps the others' orders
    d2 = create_design(reader_source_study, ["alice", "bob", "carol", "dave"], **kw)
    assert all(d2.orders[r] == d.orders[r] for r in d.readers)


def test_case_ids_are_anonymous(reader_source_study):
    d = create_design(reader_source_study, ["alice"], n_candidates=3, quality_only_cases=3)
    ids = [c.case_id for c in d.cases]
    assert len(set(ids)) == len(ids)
    for cid in ids:
        assert re.fullmatch(r"case-[0-9a-f]{4}", cid)
    quality = [c for c in d.cases if c.kind == "quality"]
    assert len(quality) == 3 and all(c.candidates == () and c.true_label is None for c in quality)
    assert d.questions_for(quality[0]) == ("anatomy", "comment")


def test_default_run_is_the_most_identifiable(reader_source_study):
    ssim = study_ssim(reader_source_study)

    def top1(run: str) -> float:
        recs = ssim[run]
        return sum(max(c, key=lambda x: (c[x], x)) == rid for rid, c in recs.items()) / len(recs)

    assert set(ssim) == {RUN, SEG_RUN}
    expected = max(sorted(ssim), key=top1)
    assert create_design(reader_source_study, ["a"], n_candidates=3).run == expected
    for run in (RUN, SEG_RUN):
        assert create_design(reader_source_study, ["a"], n_candidates=3, run=run).run == run
    with pytest.raises(ConfigError, match="nope.*runs are"):
        create_design(reader_source_study, ["a"], run="nope")


def test_design_errors_are_clear(study_copy, tmp_path):
    with pytest.raises(ConfigError, match="IXI101-HH-2001.*has 5 other candidates"):
        create_design(study_copy, ["a"], n_candidates=7, run=RUN)
    with pytest.raises(ConfigError, match="strategy"):
        create_design(study_copy, ["a"], strategy="easiest")
    with pytest.raises(ConfigError, match="duplicate reader"):
        create_design(study_copy, ["alice", "Alice"])
    with pytest.raises(ConfigError, match="quality-only"):
        create_design(study_copy, ["a"], quality_only_cases=7, n_candidates=3)
    with pytest.raises(ConfigError, match="anatomy"):
        create_design(study_copy, ["a"], quality_only_cases=1, questions=("match",))
    with pytest.raises(StudyError, match="scores.csv"):
        create_design(tmp_path / "empty", ["a"])
    missing = study_copy / "preprocessed" / "skull-stripped" / "IXI103-HH-2003.nii.gz"
    missing.unlink()
    with pytest.raises(CohortError, match="IXI103-HH-2003.nii.gz: file not found"):
        create_design(study_copy, ["a"], n_candidates=6)


def test_blind_design_keeps_nothing_of_the_key(reader_source_study):
    """What a reader package stores (``Design.blind``) is the same whatever the truth, the
    subjects, files, scores, runs and folds: none of them can be recovered from it."""
    d = create_design(reader_source_study, ["alice", "bob"], n_candidates=4, quality_only_cases=1)
    other_truth = dataclasses.replace(
        d,
        study_dir="/elsewhere",
        run="x",
        seed=99,
        strategy="hardest",
        cases=tuple(
            dataclasses.replace(
                c,
                run="y",
                fold=7,
                reconstruction_id="r",
                reconstruction_path="p",
                ssim_pick="A" if c.candidates else None,
                candidates=tuple(
                    dataclasses.replace(
                        x, candidate_id=f"s{i}", path=f"q{i}", is_true=i == 0, ssim=0.1 * i
                    )
                    for i, x in enumerate(c.candidates)
                ),
            )
            for c in d.cases
        ),
    )
    assert [c.true_label for c in other_truth.cases] != [c.true_label for c in d.cases]
    assert other_truth.blind() == d.blind()
    blind = d.blind()
    assert [c.case_id for c in blind.cases] == sorted(c.case_id for c in d.cases)
    assert blind.orders == d.orders and blind.candidate_orders == d.candidate_orders


def test_write_design_freezes_and_refuses_overwrite(reader_source_study, tmp_path):
    """The single-file format of earlier versions is still written and read back."""
    design = create_design(
        reader_source_study, ["alice", "bob"], n_candidates=4, quality_only_cases=1
    )
    db = write_design(tmp_path / "rs.sqlite", design)
    with ReaderStudyStore(db) as store:
        assert store.design == design
        assert store.study_dir == reader_source_study.resolve()
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    other = create_design(reader_source_study, ["carol"], n_candidates=3, seed=9)
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
