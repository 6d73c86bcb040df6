"""Reader-study analysis against hand-computed numbers, exports, and the CLI end to end.

Every hand-computed check runs on both stores of answers: a key with its reader package,
and the single-file database of earlier versions (which must still be analysed alike).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
from sklearn.metrics import cohen_kappa_score

from inversion_audit.cli.main import main
from inversion_audit.reader_study import (
    Candidate,
    Case,
    Design,
    PackageStore,
    ReaderStudyError,
    ReaderStudyStore,
    analyze,
    cohen_kappa,
    create_design,
    fleiss_kappa,
    read_key,
    wilson_interval,
    write_analysis,
    write_design,
    write_package,
)
from inversion_audit.reader_study.database import write_new_sqlite
from inversion_audit.reader_study.key import fill_key
from inversion_audit.reader_study.package_db import PACKAGE_DB, fill_package
from test_reader_study_design import build_reader_source_study, subject_ids


@pytest.fixture(scope="session")
def reader_source_study(tmp_path_factory) -> Path:
    return build_reader_source_study(tmp_path_factory)


Z = 1.959963984540054


def hand_wilson(k, n):
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n * n)) / (1 + Z**2 / n)
    return centre - half, centre + half


def hand_p_greater(k, n, p):
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def _case(cid, true, pick):
    cands = tuple(
        Candidate(
            lab,
            f"subj-{cid}-{lab}",
            f"preprocessed/v/{cid}{lab}.nii.gz",
            lab == true,
            0.9 if lab == pick else 0.5,
        )
        for lab in "ABCD"
    )
    return Case(
        cid,
        "match",
        "run",
        0,
        f"subj-{cid}-{true}",
        f"reconstructions/run/{cid}.nii.gz",
        cands,
        pick,
    )


# true labels A, B, C, D; SSIM picks A (right), A (wrong), C (right), D (right)
CASES = (_case("c1", "A", "A"), _case("c2", "B", "A"), _case("c3", "C", "C"), _case("c4", "D", "D"))
QUALITY = Case("q1", "quality", "run", 1, "subj-q", "reconstructions/run/q.nii.gz")
# reader -> per case (match, confidence, anatomy, seconds)
ANSWERS = {
    "r1": [("A", 5, 4, 10), ("B", 4, 4, 20), ("C", 5, 3, 30), ("A", 2, 2, 40)],
    "r2": [("A", 4, 3, 5), ("C", 2, 3, 5), ("C", 5, 3, 5), ("none", 1, 1, 5)],
    "r3": [("B", 2, 5, 1), ("B", 4, 4, 2), ("C", 5, 4, 3), ("A", 2, 2, 4)],
}
QUALITY_ANATOMY = {"r1": 2, "r2": 3, "r3": 2}


def write_key_and_package(design: Design, key: Path, package: Path) -> None:
    """A key and the database of its reader package (the hand-made design has no images)."""
    write_new_sqlite(key, lambda c: fill_key(c, design, "id-1", str(package)), wal=False)
    write_new_sqlite(package / PACKAGE_DB, lambda c: fill_package(c, design.blind(), "id-1"))


@pytest.fixture(params=["key and package", "single file"])
def answered_db(tmp_path, request) -> tuple[Path, list[Path]]:
    """The hand-made study, answered; (file to analyse, packages)."""
    ids = [c.case_id for c in (*CASES, QUALITY)]
    design = Design(
        study_dir=str(tmp_path / "study"),
        run="run",
        n_candidates=4,
        strategy="random",
        seed=0,
        allow_revisit=True,
        questions=("match", "confidence", "anatomy", "comment"),
        readers=("r1", "r2", "r3"),
        cases=(*CASES, QUALITY),
        orders={"r1": tuple(ids), "r2": tuple(reversed(ids)), "r3": tuple(ids)},
    )
    if request.param == "single file":
        db, packages = write_design(tmp_path / "rs.sqlite", design), []
        store = ReaderStudyStore(db)
    else:
        db, packages = tmp_path / "key.sqlite", [tmp_path / "package"]
        write_key_and_package(design, db, packages[0])
        store = PackageStore(packages[0])
    with store:
        # r1 first answers c1 wrongly, then changes it: only the latest counts, time adds up
        store.record_answer(
            "r1", "c1", match="B", confidence=2, anatomy=4, time_shown="t0", seconds=3
        )
        for reader, answers in ANSWERS.items():
            for case, (m, conf, anat, sec) in zip(CASES, answers, strict=True):
                store.record_answer(
                    reader,
                    case.case_id,
                    match=m,
                    confidence=conf,
                    anatomy=anat,
                    comment=f"{reader} on {case.case_id}",
                    time_shown="t1",
                    seconds=sec,
                )
            store.record_answer(
                reader, "q1", anatomy=QUALITY_ANATOMY[reader], time_shown="t2", seconds=1
            )
    return db, packages


def test_accuracy_ci_and_chance_match_hand_computation(answered_db):
    res = analyze(*answered_db)
    assert res["design"]["chance"] == 0.25 and res["design"]["n_match_cases"] == 4
    expected = {"r1": 3, "r2": 2, "r3": 2}
    for reader, k in expected.items():
        b = res["readers"][reader]
        assert (b["n"], b["correct"], b["accuracy"]) == (4, k, k / 4)
        assert b["ci95"] == pytest.approx(hand_wilson(k, 4), abs=1e-9)
        assert b["p_vs_chance"] == pytest.approx(hand_p_greater(k, 4, 0.25))
    assert res["readers"]["r1"]["p_vs_chance"] == pytest.approx(
        0.05078125
    )  # 4 * .25^3 * .75 + .25^4
    assert res["readers"]["r2"]["n_none"] == 1
    pooled = res["pooled"]
    assert (pooled["n"], pooled["correct"]) == (12, 7)
    assert pooled["ci95"] == pytest.approx(hand_wilson(7, 12))
    assert pooled["p_vs_chance"] == pytest.approx(hand_p_greater(7, 12, 0.25))
    assert res["n_revisions"] == 1 and res["n_answer_rows"] == 16


def test_reader_vs_ssim_on_same_cases(answered_db):
    res = analyze(*answered_db)
    s = res["ssim_matcher"]
    assert (s["n"], s["correct"]) == (4, 3)
    v = res["readers"]["r1"]["vs_ssim"]  # r1 right on c1-c3, SSIM right on c1, c3, c4
    assert (v["both_correct"], v["reader_only"], v["ssim_only"], v["neither"]) == (2, 1, 1, 0)
    assert v["ssim_accuracy"] == 0.75 and v["mcnemar_p"] == pytest.approx(1.0)
    v3 = res["readers"]["r3"]["vs_ssim"]  # r3 right on c2, c3
    assert (v3["both_correct"], v3["reader_only"], v3["ssim_only"]) == (1, 1, 2)
    # exact two-sided McNemar: min(1, 2 * P(X <= 1)) with X ~ Bin(3, 1/2)
    assert v3["mcnemar_p"] == pytest.approx(min(1.0, 2 * (1 - hand_p_greater(2, 3, 0.5))))


def test_accuracy_by_confidence(answered_db):
    by = analyze(*answered_db)["by_confidence"]
    assert {k: (v["n"], v["correct"]) for k, v in by.items()} == {
        "1": (1, 0),
        "2": (4, 0),
        "3": (0, 0),
        "4": (3, 3),
        "5": (4, 4),
    }
    assert by["3"]["accuracy"] is None and by["4"]["accuracy"] == 1.0


def test_kappas_match_hand_computation_and_sklearn(answered_db):
    ag = analyze(*answered_db)["agreement"]
    # Fleiss: P_bar = (1/3 + 1/3 + 1 + 1/3) / 4 = 1/2; P_e = (16 + 9 + 16 + 1) / 144 -> 30/102
    assert ag["fleiss_kappa"] == pytest.approx(5 / 17)
    assert ag["fleiss_n_cases"] == 4
    hand = {("r1", "r2"): 1 / 3, ("r1", "r3"): 7 / 11, ("r2", "r3"): 1 / 13}
    got = {tuple(p["readers"]): p for p in ag["cohen_kappa"]}
    for (a, b), kappa in hand.items():
        assert got[(a, b)]["kappa"] == pytest.approx(kappa)
        assert got[(a, b)]["n"] == 4
        ra = [m for m, *_ in ANSWERS[a]]
        rb = [m for m, *_ in ANSWERS[b]]
        assert got[(a, b)]["kappa"] == pytest.approx(cohen_kappa_score(ra, rb))
    assert got[("r1", "r3")]["agreement"] == 0.75


def test_kappa_edge_cases():
    assert fleiss_kappa([["A", "A"], ["A", "A"]]) is None  # one category: undefined
    assert fleiss_kappa([["A", "B"], ["B", "A"]]) == pytest.approx(-1.0)
    assert fleiss_kappa([["A", "A", "A"], ["B", "B", "B"]]) == pytest.approx(1.0)
    assert cohen_kappa(["A", "B", "A"], ["A", "B", "A"]) == pytest.approx(1.0)
    assert cohen_kappa([], []) is None
    assert wilson_interval(0, 0) is None
    lo, hi = wilson_interval(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(hand_wilson(0, 10)[1])


def test_time_and_likert(answered_db):
    res = analyze(*answered_db)
    t = res["readers"]["r1"]["time"]
    # c1 took 3 s then 10 s; c2-c4 20, 30, 40; q1 1
    assert t["n"] == 5 and t["total"] == pytest.approx(104) and t["median"] == pytest.approx(20)
    assert res["pooled"]["time"]["n"] == 15
    lk = res["likert"]
    assert lk["quality_cases"] == {"1": 0, "2": 2, "3": 1, "4": 0, "5": 0}
    assert lk["match_cases"] == {"1": 1, "2": 2, "3": 4, "4": 4, "5": 1}
    assert lk["all"] == {"1": 1, "2": 4, "3": 5, "4": 4, "5": 1}
    assert res["readers"]["r2"]["likert"] == {"1": 1, "2": 0, "3": 4, "4": 0, "5": 0}


def test_exports(answered_db, tmp_path):
    out = tmp_path / "analysis"
    res = write_analysis(answered_db[0], out, answered_db[1])
    assert (
        json.loads((out / "reader_study.json").read_text())["pooled"]["correct"]
        == res["pooled"]["correct"]
        == 7
    )
    with open(out / "answers.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [
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
    c1 = [r for r in rows if r["reader"] == "r1" and r["case"] == "c1" and r["question"] == "match"]
    assert [(r["answer"], r["revision"], r["current"]) for r in c1] == [
        ("B", "1", "0"),
        ("A", "2", "1"),
    ]
    # 16 answer rows: 13 match rows with 3 questions + comment on 12, 3 quality rows with anatomy
    assert len(rows) == 13 * 3 + 12 + 3
    md = (out / "reader_study.md").read_text()
    assert md.startswith("## Expert reader study")
    assert "| r1 | 4 | 3 | 75% |" in md and "| **pooled** | 12 | 7 | 58% |" in md
    assert "Fleiss' kappa 0.29" in md
    # every hand-made candidate is its own file: no image recurs, nothing to eliminate
    assert res["recurrence"]["policy"] == res["design"]["recurrence"] == "unique"
    assert "Candidate recurrence: unique; each of the 16 candidate images" in md
    with open(out / "case_key.csv") as fh:
        key = {r["case"]: r for r in csv.DictReader(fh)}
    assert key["c2"]["true_label"] == "B" and key["c2"]["ssim_pick"] == "A"


# -- the create / answer / analyze flow on studies made by the runner ------------------------
def answer_all(package: Path, key: Path, reader: str, pick=lambda case: case.true_label) -> None:
    """``reader`` answers every case in the package, choosing ``pick(case)`` (the key's case)."""
    design, _ = read_key(key)
    with PackageStore(package) as store:
        for cid in store.case_order(reader):
            case = design.case(cid)
            kw = {"match": pick(case), "confidence": 4} if case.kind == "match" else {}
            store.record_answer(reader, cid, anatomy=3, time_shown="t", seconds=2, **kw)


def test_cli_create_and_analyze(reader_source_study, tmp_path, capsys):
    pkg, key = tmp_path / "pkg", tmp_path / "key.sqlite"
    argv = ["reader-study", "create", "--study", str(reader_source_study)]
    argv += ["--readers", "alice,bob", "--candidates", "3", "--strategy", "hardest"]
    argv += ["--quality-only", "1", "--out", str(pkg), "--key", str(key)]
    assert main(argv) == 0
    assert "7 cases (6 match, 1 quality-only)" in capsys.readouterr().out
    assert main(argv) == 1
    assert "pkg: folder is not empty" in capsys.readouterr().err
    answer_all(pkg, key, "alice")
    # the key records its package: analyze finds the answers there
    assert main(["reader-study", "analyze", str(key), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "6/6" in out
    res = json.loads((tmp_path / "out" / "reader_study.json").read_text())
    assert res["readers"]["alice"]["accuracy"] == 1.0 and res["readers"]["bob"]["n"] == 0
    argv = ["reader-study", "analyze", str(key), "--package", str(pkg), "--out"]
    assert main([*argv, str(tmp_path / "out2")]) == 0
    again = json.loads((tmp_path / "out2" / "reader_study.json").read_text())
    assert again == res
    # the readers' material never holds subject ids: only the coordinator's key does
    answers = (tmp_path / "out" / "answers.csv").read_text()
    assert not any(sid in answers for sid in subject_ids())
    assert any(sid in (tmp_path / "out" / "case_key.csv").read_text() for sid in subject_ids())
    # the package is not the key
    assert main(["reader-study", "analyze", str(pkg), "--out", str(tmp_path / "o3")]) == 1
    assert "takes the study's key" in capsys.readouterr().err


def _answer_both(stores: list, design: Design) -> None:
    """The same answers, revisions and times into each store."""
    for r, reader in enumerate(design.readers):
        for i, cid in enumerate(design.orders[reader]):
            case = design.case(cid)
            kw: dict = {"anatomy": 1 + (i + r) % 5, "time_shown": f"t{i}", "seconds": 1.5 * i}
            if case.kind == "match":
                labels = [*case.labels, "none"]
                kw.update(match=labels[(3 * i + r) % len(labels)], confidence=1 + i % 5)
            kw.update(comment=f"{reader} {i}", time_answered=f"a{i}")
            for store in stores:
                store.record_answer(reader, cid, **kw)
                if i == 1:  # a revision
                    store.record_answer(reader, cid, **{**kw, "anatomy": 5})


def test_key_and_package_analyse_exactly_as_the_single_file_format(reader_source_study, tmp_path):
    design = create_design(
        reader_source_study, ["alice", "bob", "carol"], n_candidates=4, quality_only_cases=2, seed=3
    )
    legacy = write_design(tmp_path / "old.sqlite", design)
    pkg, key = tmp_path / "pkg", tmp_path / "key.sqlite"
    write_package(pkg, key, design)
    with ReaderStudyStore(legacy) as old, PackageStore(pkg) as new:
        _answer_both([old, new], design)
    expected = analyze(legacy)
    assert expected["pooled"]["n"] == 3 * 6 and expected["n_revisions"] == 3
    assert analyze(key, [pkg]) == expected
    write_analysis(legacy, tmp_path / "a")
    write_analysis(key, tmp_path / "b", [pkg])
    for name in ("reader_study.json", "reader_study.md", "answers.csv", "case_key.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_split_makes_a_package_and_key_of_a_single_file_with_its_answers(
    reader_source_study, tmp_path, capsys
):
    design = create_design(reader_source_study, ["alice", "bob"], n_candidates=3, seed=1)
    legacy = write_design(tmp_path / "old.sqlite", design)
    with ReaderStudyStore(legacy) as old:
        _answer_both([old], design)
        trail = old.history()
    pkg, key = tmp_path / "pkg", tmp_path / "key.sqlite"
    argv = ["reader-study", "split", str(legacy), "--out", str(pkg), "--key", str(key)]
    assert main(argv) == 0, capsys.readouterr().err
    with PackageStore(pkg) as store:
        assert store.history() == trail
    cases = {c.case_id for c in design.cases}
    assert {p.name for p in pkg.iterdir()} == cases | {"reader-study.sqlite"}
    assert analyze(key, [pkg]) == analyze(legacy)
    assert main(argv) == 1  # written once
    assert "folder is not empty" in capsys.readouterr().err


def test_answers_of_readers_copies_are_joined_and_must_not_overlap(reader_source_study, tmp_path):
    design = create_design(reader_source_study, ["alice", "bob"], n_candidates=3, seed=4)
    pkg, key = tmp_path / "pkg", tmp_path / "key.sqlite"
    write_package(pkg, key, design)
    bobs = Path(shutil.copytree(pkg, tmp_path / "bob's copy"))
    answer_all(pkg, key, "alice")
    answer_all(
        bobs, key, "bob", pick=lambda case: next(x for x in case.labels if x != case.true_label)
    )
    res = analyze(key, [pkg, bobs])
    assert res["readers"]["alice"]["correct"] == res["readers"]["alice"]["n"] == 6
    assert res["readers"]["bob"]["correct"] == 0 and res["readers"]["bob"]["n"] == 6
    assert analyze(key)["readers"]["bob"]["n"] == 0  # the recorded package alone
    answer_all(bobs, key, "alice")
    with pytest.raises(ReaderStudyError, match="answers of alice are also in"):
        analyze(key, [pkg, bobs])
    other_key = tmp_path / "other.sqlite"
    write_package(tmp_path / "other", other_key, design)
    with pytest.raises(ReaderStudyError, match="not the reader package of key"):
        analyze(other_key, [pkg])


def test_create_and_analyze_on_the_bundled_demo_study(tmp_path, capsys):
    """The acceptance run: a package and key of the demo study that ships with the package,
    one reader who answers with the SSIM matcher's pick, then the analysis."""
    from inversion_audit.gui.demo_study import demo_study_dir

    pkg, key = tmp_path / "demo", tmp_path / "demo-key.sqlite"
    study = demo_study_dir()
    # one case per reconstruction of the first run (segnet sorts first)
    n = len(
        list((study / "reconstructions" / "segnet_skull-stripped_bottleneck").glob("*_pre.nii.gz"))
    )
    assert n >= 8
    argv = ["reader-study", "create", "--study", str(study), "--readers", "alice"]
    argv += ["--candidates", "5", "--strategy", "hardest", "--out", str(pkg), "--key", str(key)]
    assert main(argv) == 0
    assert f"{n} cases ({n} match, 0 quality-only)" in capsys.readouterr().out
    answer_all(pkg, key, "alice", pick=lambda case: case.ssim_pick)
    assert main(["reader-study", "analyze", str(key), "--out", str(tmp_path / "out")]) == 0
    res = json.loads((tmp_path / "out" / "reader_study.json").read_text())
    alice = res["readers"]["alice"]
    assert alice["n"] == n
    # a reader who always follows SSIM is exactly as accurate as the SSIM matcher
    assert alice["accuracy"] == pytest.approx(res["ssim_matcher"]["accuracy"])
