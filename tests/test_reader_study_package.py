"""The reader package and its key: what readers get holds no subject id, path, score or truth;
the images are neutral copies on one grid; a session reaches nothing of the key."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import sqlite3
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from inversion_audit.io import FREE_TEXT_FIELDS
from inversion_audit.metrics.deformation import centred_affine
from inversion_audit.reader_study import (
    BlindedStudy,
    Candidate,
    Case,
    Design,
    PackageStore,
    ReaderSession,
    ReaderStudyError,
    ReaderStudyStore,
    create_design,
    read_key,
    write_design,
    write_package,
)
from test_reader_study_design import build_reader_source_study, subject_ids


@pytest.fixture(scope="session")
def reader_source_study(tmp_path_factory) -> Path:
    return build_reader_source_study(tmp_path_factory)


KEY_COLUMNS = {
    "is_true",
    "true_label",
    "ssim",
    "ssim_pick",
    "candidate_id",
    "reconstruction_id",
    "reconstruction_path",
    "path",
    "run",
    "fold",
    "study_dir",
    "seed",
    "strategy",
}


@pytest.fixture(scope="module")
def package(reader_source_study, tmp_path_factory) -> tuple[Path, Path, Design]:
    root = tmp_path_factory.mktemp("package")
    design = create_design(
        reader_source_study, ["alice", "bob"], n_candidates=4, quality_only_cases=1, seed=2
    )
    write_package(root / "pkg", root / "key.sqlite", design)
    return root / "pkg", root / "key.sqlite", design


def forbidden_text(study: Path, key: Path, design: Design) -> list[str]:
    """Every string that would tie a package to its key: subject ids, source paths, the
    study and key paths, run names, and each score as written in scores.csv or printed."""
    out = [*subject_ids(), str(study), str(study.resolve()), str(key), str(key.resolve())]
    out += ["preprocessed", "reconstructions", "_recon", "unet", "segnet", "bottleneck"]
    out += ["skull-stripped", design.run]
    for case in design.cases:
        out += [case.reconstruction_path, *(c.path for c in case.candidates)]
    with open(study / "scores" / "scores.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            v = float(row["value"])
            out += [row["value"], repr(v), f"{v:.4f}", f"{v:.6f}"]
    return sorted(set(out))


def package_files(pkg: Path) -> list[Path]:
    return sorted(p for p in pkg.rglob("*") if p.is_file())


def test_package_holds_neutral_case_images_and_its_database(package, reader_source_study):
    pkg, key, design = package
    expected = {"reader-study.sqlite"}
    for case in design.cases:
        expected |= {f"{case.case_id}/reconstruction.nii.gz"}
        expected |= {f"{case.case_id}/{c.label}.nii.gz" for c in case.candidates}
    assert {p.relative_to(pkg).as_posix() for p in package_files(pkg)} == expected
    assert not key.resolve().is_relative_to(pkg.resolve())
    for case in design.cases:
        sources = [case.reconstruction_path, *(c.path for c in case.candidates)]
        names = ["reconstruction", *(c.label for c in case.candidates)]
        headers = []
        for name, rel in zip(names, sources, strict=True):
            img = nib.load(pkg / case.case_id / f"{name}.nii.gz")
            source = nib.as_closest_canonical(nib.load(reader_source_study / rel))
            zooms = source.header.get_zooms()[:3]
            # on the centred grid, not at the subject's scanner position
            np.testing.assert_allclose(img.affine, centred_affine(source.shape, zooms))
            assert not np.allclose(source.affine[:3, 3], img.affine[:3, 3])
            # the voxels are the source's, not clipped (the session windows the case)
            data = np.asarray(img.dataobj)
            assert data.dtype == np.float32
            np.testing.assert_allclose(data, np.nan_to_num(source.get_fdata()), atol=1e-6)
            assert all(not img.header[f].tobytes().strip(b"\0") for f in FREE_TEXT_FIELDS)
            headers.append(img.header.binaryblock)
        # every image of a case has the same header, byte for byte: nothing tells them apart
        assert len(set(headers)) == 1


def test_no_file_handed_to_readers_holds_an_id_path_score_or_truth(package, reader_source_study):
    pkg, key, design = package
    forbidden = forbidden_text(reader_source_study, key, design)
    for f in package_files(pkg):
        blobs = [f.read_bytes()]
        if f.name.endswith(".gz"):
            blobs.append(gzip.decompress(blobs[0]))  # the NIfTI header and voxels
        for blob in blobs:
            found = [s for s in forbidden if s.encode() in blob]
            assert not found, (f, found)
    # every table of the package database, cell by cell
    conn = sqlite3.connect(pkg / "reader-study.sqlite")
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert set(tables) >= {"package", "cases", "readers", "reader_cases", "answers"}
    for table in tables:
        cur = conn.execute(f"SELECT * FROM {table}")
        columns = {d[0] for d in cur.description}
        assert not columns & KEY_COLUMNS, (table, columns & KEY_COLUMNS)
        for row in cur:
            for value in row:
                assert not [s for s in forbidden if s in str(value)], (table, row)
    # cases are stored by id, not in the design's (subject) order, and carry no position
    rows = conn.execute("SELECT case_id, kind, labels FROM cases ORDER BY rowid").fetchall()
    assert [r[0] for r in rows] == sorted(c.case_id for c in design.cases)
    truth = {c.case_id: c.labels for c in design.cases}
    assert all(labels == "".join(truth[cid]) for cid, _, labels in rows)
    conn.close()
    # files were written in case-id order too: their times follow no subject order
    by_time = sorted(package_files(pkg)[:-1], key=lambda p: (p.stat().st_mtime_ns, str(p)))
    ids = [p.parent.name for p in by_time if p.name != "reader-study.sqlite"]
    assert ids == sorted(ids)


def test_the_key_maps_cases_and_letters_to_subjects_truth_scores_and_sources(
    package, reader_source_study
):
    pkg, key, design = package
    key_design, meta = read_key(key)
    assert key_design == design
    assert meta["package_id"] == PackageStore(pkg).package_id and meta["role"] == "key"
    assert Path(meta["package_dir"]) == pkg.resolve()
    case = next(c for c in key_design.cases if c.kind == "match")
    true = next(c for c in case.candidates if c.is_true)
    assert true.candidate_id == case.reconstruction_id and true.label == case.true_label
    assert (reader_source_study / true.path).is_file() and true.ssim is not None


def reachable(root: object) -> tuple[list[object], set[str]]:
    """Every object reachable from ``root`` through attributes (public and private),
    dataclass fields and containers, and every attribute name met on the way."""
    seen: set[int] = set()
    objects: list[object] = []
    names: set[str] = set()
    stack = [root]
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        objects.append(o)
        if isinstance(o, str | bytes | int | float | bool | Path | type(None) | np.ndarray):
            continue
        if isinstance(o, dict):
            stack += [*o.keys(), *o.values()]
        elif isinstance(o, list | tuple | set | frozenset):
            stack += list(o)
        elif dataclasses.is_dataclass(o):
            names |= {f.name for f in dataclasses.fields(o)}
            stack += [getattr(o, f.name) for f in dataclasses.fields(o)]
        elif hasattr(o, "__dict__") and not callable(o):
            names |= set(vars(o))
            stack += list(vars(o).values())
    return objects, names


def test_no_session_attribute_reaches_an_id_path_score_or_truth(package, reader_source_study):
    pkg, key, design = package
    forbidden = forbidden_text(reader_source_study, key, design)
    scores = {
        round(c.ssim, 6) for case in design.cases for c in case.candidates if c.ssim is not None
    }
    study = BlindedStudy(pkg)
    session = study.log_in("alice")
    session.open_case()
    checked = 0
    while True:
        objects, names = reachable([study, session])
        # (``path`` is the package folder's; the text check below covers every value)
        assert not names & (KEY_COLUMNS - {"path"}), names & KEY_COLUMNS
        assert not [o for o in objects if isinstance(o, Design | Case | Candidate)]
        assert not [o for o in objects if isinstance(o, ReaderStudyStore)]
        text = [str(o) for o in objects if isinstance(o, str | bytes | Path)]
        assert not [t for t in text if any(s in t for s in forbidden)]
        floats = {round(o, 6) for o in objects if isinstance(o, float)}
        assert not floats & scores
        checked += 1
        if session.done:
            break
        session.images()
        kw = {"anatomy": 3}
        if "match" in session.questions():
            kw.update(match="B", confidence=2)
        session.submit(**kw)
    assert checked == len(design.cases) + 1
    study.close()


def test_readers_cannot_open_a_key_or_a_single_file_database(package, tmp_path):
    pkg, key, design = package
    with pytest.raises(ReaderStudyError, match="answer key"):
        BlindedStudy(key)
    legacy = write_design(tmp_path / "old.sqlite", design)
    with pytest.raises(ReaderStudyError, match="earlier version.*split"):
        BlindedStudy(legacy)
    with pytest.raises(ReaderStudyError, match="reader package only"):
        ReaderSession(ReaderStudyStore(legacy), "alice")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReaderStudyError, match="empty: not a reader package"):
        BlindedStudy(tmp_path / "empty")
    with pytest.raises(ReaderStudyError, match="nowhere: reader package not found"):
        BlindedStudy(tmp_path / "nowhere")
    # the package opens by its folder or by its database file alike
    assert BlindedStudy(pkg / "reader-study.sqlite").path == BlindedStudy(pkg).path == pkg


def test_session_images_are_the_package_files_in_the_reader_letter_order(package):
    pkg, key, design = package
    with PackageStore(pkg) as store:
        s = ReaderSession(store, "bob")
        s.open_case()
        while s.case.kind != "match":
            s.go_to(s.position + 1)
        cid = store.case_order("bob")[s.position]
        shown = design.shown_labels("bob", cid)
        images = s.images()
        expected = ["reconstruction", *shown]
        assert [im.name for im in images] == ["Reconstruction", *"ABCD"]
        for im, name in zip(images, expected, strict=True):
            np.testing.assert_array_equal(
                im.data, np.asarray(nib.load(pkg / cid / f"{name}.nii.gz").dataobj)
            )
            assert im.scale == pytest.approx((2.0, 2.0, 2.0))
            assert im.translate == pytest.approx((-31.0, -31.0, -31.0))
        # the letter a reader picks is stored as the case's own label
        a = s.submit(match="C", confidence=2, anatomy=3)
        assert a.match == "C" and store.history("bob", cid)[-1].match == shown[2]
        # a missing image is named by case number and letter, never by file or subject
        s.go_to(s.position - 1)
        (pkg / cid / f"{shown[1]}.nii.gz").rename(pkg / "moved.nii.gz")
        try:
            with pytest.raises(ReaderStudyError) as err:
                s.images()
        finally:
            (pkg / "moved.nii.gz").rename(pkg / cid / f"{shown[1]}.nii.gz")
        msg = str(err.value)
        assert f"case {s.position + 1}" in msg and "image B" in msg and ".nii" not in msg
