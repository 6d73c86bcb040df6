"""How often a candidate image recurs across reader-study cases: the balanced and unique
policies leave nothing to count, and the analysis says which policy the cases show.

Designs come from the real runner's study (``reader_source_study``: six subjects, two runs);
expected counts are recomputed here with ``collections.Counter`` from the cases, from
``scores.csv`` read with the csv module, or from the exported ``case_key.csv``.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from inversion_audit.errors import ConfigError
from inversion_audit.reader_study import create_design, write_analysis, write_package
from test_reader_study_design import RUN, build_reader_source_study, study_ssim, subject_ids

READERS = ["alice", "bob"]


@pytest.fixture(scope="session")
def reader_source_study(tmp_path_factory) -> Path:
    return build_reader_source_study(tmp_path_factory)


def appearances(design) -> Counter:
    """Cases each candidate image (file) appears in, over the match cases."""
    return Counter(x.path for c in design.cases for x in c.candidates)


@pytest.mark.parametrize(("strategy", "k"), [("random", 3), ("random", 4), ("hardest", 3)])
def test_balanced_each_subject_truth_once_and_shown_equally_often(reader_source_study, strategy, k):
    d = create_design(
        reader_source_study, READERS, n_candidates=k, strategy=strategy, seed=7, run=RUN
    )
    ids = subject_ids()
    assert Counter(c.reconstruction_id for c in d.cases) == Counter(ids)  # truth of one case
    for case in d.cases:
        chosen = [x.candidate_id for x in case.candidates]
        assert len(chosen) == len(set(chosen)) == k  # no candidate twice within a case
        assert [x.candidate_id for x in case.candidates if x.is_true] == [case.reconstruction_id]
    by_subject = Counter(x.candidate_id for c in d.cases for x in c.candidates)
    assert by_subject == Counter({sid: k for sid in ids})
    assert set(appearances(d).values()) == {k}
    rec = d.recurrence
    assert rec["policy"] == "balanced" and not rec["elimination_possible"]
    assert rec["appearances"] == {"min": k, "max": k} and rec["n_images"] == len(ids)


def test_balanced_appearances_do_not_depend_on_being_the_truth(reader_source_study):
    """In every case the truth appears in as many cases as each of its distractors, so the
    count carries nothing; under ``free`` it may differ (what elimination exploits)."""
    for seed, strategy in itertools.product(range(3), ("random", "hardest")):
        d = create_design(
            reader_source_study, READERS, n_candidates=3, strategy=strategy, seed=seed
        )
        counts = appearances(d)
        for case in d.cases:
            truth = next(x for x in case.candidates if x.is_true)
            assert all(counts[x.path] == counts[truth.path] for x in case.candidates)
    free = create_design(
        reader_source_study, READERS, n_candidates=3, strategy="hardest", recurrence="free"
    )
    counts = appearances(free)
    assert len(set(counts.values())) > 1
    assert free.recurrence["policy"] == "free" and free.recurrence["elimination_possible"]


def test_balanced_hardest_is_the_most_similar_balanced_design(reader_source_study):
    """With K = 2 a balanced design is a derangement: the one chosen has the largest summed
    SSIM of all 265 (brute force over scores.csv)."""
    ssim = study_ssim(reader_source_study)[RUN]
    ids = sorted(ssim)
    best = max(
        (
            p
            for p in itertools.permutations(ids)
            if all(a != b for a, b in zip(ids, p, strict=True))
        ),
        key=lambda p: sum(ssim[a][b] for a, b in zip(ids, p, strict=True)),
    )
    d = create_design(reader_source_study, READERS, n_candidates=2, strategy="hardest", run=RUN)
    got = {
        c.reconstruction_id: next(x.candidate_id for x in c.candidates if not x.is_true)
        for c in d.cases
    }
    assert got == dict(zip(ids, best, strict=True))


@pytest.mark.parametrize(("strategy", "k"), [("random", 2), ("random", 3), ("hardest", 3)])
def test_unique_never_shows_an_image_twice_to_a_reader(reader_source_study, strategy, k):
    d = create_design(
        reader_source_study,
        READERS,
        n_candidates=k,
        strategy=strategy,
        recurrence="unique",
        quality_only_cases=1,
        seed=3,
        run=RUN,
    )
    match = [c for c in d.cases if c.kind == "match"]
    assert len(match) == len(subject_ids()) // k
    for reader in d.readers:
        seen = Counter(x.path for cid in d.orders[reader] for x in d.case(cid).candidates)
        assert seen and max(seen.values()) == 1
    truths = [c.reconstruction_id for c in match]
    assert len(set(truths)) == len(truths)
    assert d.recurrence["policy"] == "unique"


@pytest.mark.parametrize("recurrence", ["balanced", "unique", "free"])
def test_designs_are_deterministic_by_seed(reader_source_study, recurrence):
    def make(seed: int):
        return create_design(
            reader_source_study, READERS, n_candidates=3, seed=seed, recurrence=recurrence
        )

    assert make(5).to_dict() == make(5).to_dict()
    assert make(5).to_dict() != make(6).to_dict()


def test_unknown_recurrence_is_refused(reader_source_study):
    with pytest.raises(ConfigError, match="unknown recurrence 'rare'.*balanced, unique, free"):
        create_design(reader_source_study, READERS, recurrence="rare")


def test_analyze_states_the_recurrence_the_cases_show(reader_source_study, tmp_path):
    for recurrence, strategy in (("balanced", "random"), ("unique", "random"), ("free", "hardest")):
        pkg, key = tmp_path / f"pkg-{recurrence}", tmp_path / f"key-{recurrence}.sqlite"
        design = create_design(
            reader_source_study,
            READERS,
            n_candidates=3,
            strategy=strategy,
            recurrence=recurrence,
            seed=1,
        )
        write_package(pkg, key, design)
        out = tmp_path / f"out-{recurrence}"
        write_analysis(key, out)
        with open(out / "case_key.csv", newline="") as fh:
            slots = [
                pair.split("=")[1]
                for row in csv.DictReader(fh)
                for pair in row["candidates"].split(";")
            ]
        counts = Counter(slots)
        res = json.loads((out / "reader_study.json").read_text())
        rec = res["recurrence"]
        assert res["design"]["recurrence"] == rec["policy"] == recurrence
        assert rec["appearances"] == {"min": min(counts.values()), "max": max(counts.values())}
        assert rec["n_images"] == len(counts)
        assert rec["elimination_possible"] is (recurrence == "free")
        md = (out / "reader_study.md").read_text()
        assert f"Candidate recurrence: {recurrence};" in md


def test_the_cli_option_reaches_the_design():
    """``reader-study create --recurrence`` parses to the design's policies (and only those)."""
    import argparse

    from inversion_audit.cli import reader_study_cmd
    from inversion_audit.reader_study.design import RECURRENCE

    parser = argparse.ArgumentParser()
    reader_study_cmd.register(parser.add_subparsers())
    base = ["reader-study", "create", "--study", "S", "--readers", "a", "--out", "P", "--key", "K"]
    assert parser.parse_args(base).recurrence == "balanced"
    for policy in RECURRENCE:
        assert parser.parse_args([*base, "--recurrence", policy]).recurrence == policy
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--recurrence", "greedy"])
