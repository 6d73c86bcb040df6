"""Cohort reading and validation: one test per bad-input kind, each naming the file."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from inversion_audit.cli.main import main
from inversion_audit.data import kfold_split, load_cohort, validate_cohort
from inversion_audit.errors import CohortError


def _problems(root):
    return validate_cohort(load_cohort(root))


def test_valid_cohort(tiny_cohort, capsys):
    cohort = load_cohort(tiny_cohort)
    assert cohort.ids == [f"sub{i:02d}" for i in range(6)]
    assert all(s.labels is not None for s in cohort)
    assert validate_cohort(cohort) == []
    assert main(["cohort", "check", str(tiny_cohort)]) == 0
    assert "6 valid subjects" in capsys.readouterr().out


def test_missing_labels_file_in_manifest(tiny_cohort, tmp_path):
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(
        "id,image,labels\n"
        f"a,{tiny_cohort / 'sub00_T1.nii.gz'},{tiny_cohort / 'sub00_seg.nii.gz'}\n"
        f"b,{tiny_cohort / 'sub01_T1.nii.gz'},{tiny_cohort / 'nope_seg.nii.gz'}\n"
    )
    issues = validate_cohort(load_cohort(manifest))
    assert len(issues) == 1
    assert issues[0].subject == "b" and "nope_seg.nii.gz" in str(issues[0])
    assert "not found" in issues[0].problem


def test_truncated_gzip(tiny_cohort, capsys):
    path = tiny_cohort / "sub02_T1.nii.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    issues = _problems(tiny_cohort)
    assert [i.subject for i in issues] == ["sub02"]
    assert "sub02_T1.nii.gz" in issues[0].file
    assert main(["cohort", "check", str(tiny_cohort)]) == 1
    out = capsys.readouterr().out
    assert "sub02_T1.nii.gz" in out and "5 valid subjects, 1 with errors" in out


def test_nan_voxels(tiny_cohort):
    path = tiny_cohort / "sub03_T1.nii.gz"
    img = nib.load(path)
    data = img.get_fdata().astype(np.float32)
    data[5, 5, 5] = np.inf
    nib.save(nib.Nifti1Image(data, img.affine), path)
    issues = _problems(tiny_cohort)
    assert len(issues) == 1 and issues[0].subject == "sub03"
    assert "NaN or Inf" in issues[0].problem and "sub03_T1.nii.gz" in issues[0].file


def test_empty_volume(tiny_cohort):
    path = tiny_cohort / "sub04_T1.nii.gz"
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.full(img.shape, 3.0, np.float32), img.affine), path)
    issues = _problems(tiny_cohort)
    assert len(issues) == 1 and "empty volume" in issues[0].problem and "sub04_T1" in issues[0].file


def test_shape_mismatch(tiny_cohort):
    path = tiny_cohort / "sub05_seg.nii.gz"
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:-2], img.affine), path)
    issues = _problems(tiny_cohort)
    assert (
        len(issues) == 1 and "shape" in issues[0].problem and "sub05_seg.nii.gz" in issues[0].file
    )


def test_affine_mismatch(tiny_cohort):
    path = tiny_cohort / "sub01_seg.nii.gz"
    img = nib.load(path)
    affine = img.affine.copy()
    affine[0, 3] += 10
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), path)
    issues = _problems(tiny_cohort)
    assert (
        len(issues) == 1 and "affine" in issues[0].problem and "sub01_seg.nii.gz" in issues[0].file
    )


def test_duplicate_ids(tiny_cohort, tmp_path):
    manifest = tmp_path / "dup.csv"
    manifest.write_text(
        f"id,image\nx,{tiny_cohort / 'sub00_T1.nii.gz'}\nx,{tiny_cohort / 'sub01_T1.nii.gz'}\n"
    )
    with pytest.raises(CohortError, match=r"duplicate subject ids: x") as err:
        load_cohort(manifest)
    assert "dup.csv" in str(err.value) and "sub01_T1.nii.gz" in str(err.value)


def test_duplicate_ids_across_folders(tiny_cohort):
    (tiny_cohort / "t1").mkdir()
    twin = tiny_cohort / "t1" / "sub03_T1.nii.gz"
    twin.write_bytes((tiny_cohort / "sub03_T1.nii.gz").read_bytes())
    with pytest.raises(CohortError, match=r"duplicate subject ids: sub03") as err:
        load_cohort(tiny_cohort)
    assert str(twin) in str(err.value)


def test_missing_subject_is_named(tiny_cohort):
    cohort = load_cohort(tiny_cohort)
    with pytest.raises(CohortError, match="'sub99'"):
        cohort.subset(["sub00", "sub99"])


def test_custom_pattern(tiny_cohort, tmp_path):
    other = tmp_path / "renamed"
    other.mkdir()
    for p in tiny_cohort.iterdir():
        shutil.copy(p, other / p.name.replace("_T1", "-t1w").replace("_seg", "-dseg"))
    cohort = load_cohort(other, image_pattern="{id}-t1w.nii.gz", labels_pattern="{id}-dseg.nii.gz")
    assert len(cohort) == 6 and all(s.labels for s in cohort)


def test_kfold_split_paper_protocol():
    ids = [f"s{i:02d}" for i in range(40)]
    folds = kfold_split(ids, n_folds=4, seed=3)
    assert [len(f.private_set) for f in folds] == [10] * 4
    assert [len(f.attack_set) for f in folds] == [30] * 4
    private = [s for f in folds for s in f.private_set]
    assert sorted(private) == ids  # every subject private exactly once
    for f in folds:
        assert not set(f.private_set) & set(f.attack_set)
        assert set(f.private_set) | set(f.attack_set) == set(ids)
    assert kfold_split(list(reversed(ids)), 4, seed=3) == folds  # order-independent, seeded
    assert kfold_split(ids, 4, seed=4) != folds
    with pytest.raises(ValueError):
        kfold_split(ids[:3], 4)


def test_manifest_with_a_header_only_lists_no_subjects(tmp_path, capsys):
    manifest = tmp_path / "empty.csv"
    manifest.write_text("id,image,labels\n\n")
    with pytest.raises(CohortError, match=r"empty\.csv: manifest lists no subjects"):
        load_cohort(manifest)
    assert main(["cohort", "check", str(manifest)]) == 1
    assert f"{manifest}: manifest lists no subjects" in capsys.readouterr().err


def test_manifest_that_is_not_utf8_names_the_byte(tiny_cohort, tmp_path, capsys):
    manifest = tmp_path / "latin1.csv"
    rows = f"id,image\nsub00,{tiny_cohort / 'sub00_T1.nii.gz'}\n"
    manifest.write_bytes(rows.encode() + "sub01,Müller.nii.gz\n".encode("latin-1"))
    offset = len(rows.encode()) + len("sub01,M")
    message = f"{manifest}: not UTF-8 text (byte 0xfc at offset {offset})"
    with pytest.raises(CohortError) as err:
        load_cohort(manifest)
    assert str(err.value) == message
    assert main(["cohort", "check", str(manifest)]) == 1
    assert message in capsys.readouterr().err


def test_manifest_with_a_byte_order_mark(tiny_cohort, tmp_path):
    manifest = tmp_path / "excel.csv"
    manifest.write_bytes(b"\xef\xbb\xbfid,image\nx," + bytes(tiny_cohort / "sub00_T1.nii.gz"))
    assert load_cohort(manifest).ids == ["x"]
