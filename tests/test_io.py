"""Volume I/O: canonical orientation, scaled storage, atomic writes, header scrubbing."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from inversion_audit.errors import VolumeError
from inversion_audit.io import read_labels, read_volume, write_volume
from inversion_audit.io.atomic import atomic_path, atomic_write_text


def _reoriented(data: np.ndarray, affine: np.ndarray, codes: str) -> nib.Nifti1Image:
    """Store a RAS volume in another orientation (e.g. 'PSR', 'LPI')."""
    img = nib.Nifti1Image(data, affine)
    ornt = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(("R", "A", "S")), nib.orientations.axcodes2ornt(tuple(codes))
    )
    return img.as_reoriented(ornt)


@pytest.mark.parametrize("codes", ["PSR", "LPI"])
def test_reader_returns_ras_with_same_world_coordinates(tmp_path, rng, codes):
    data = rng.random((6, 7, 8)).astype(np.float32)
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    affine[:3, 3] = [-10, 20, 5]
    img = _reoriented(data, affine, codes)
    assert nib.aff2axcodes(img.affine) == tuple(codes)
    path = tmp_path / f"vol_{codes}.nii.gz"
    nib.save(img, path)
    vol = read_volume(path)
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S")
    assert vol.shape == data.shape
    np.testing.assert_allclose(vol.array, data)
    np.testing.assert_allclose(vol.affine, affine)
    assert vol.spacing == (2.0, 3.0, 4.0)
    # the same voxel has the same world coordinate on disk and in memory
    disk_ijk = np.round(
        nib.affines.apply_affine(np.linalg.inv(img.affine), affine[:3, 3] + [2, 3, 4])
    ).astype(int)
    assert img.get_fdata()[tuple(disk_ijk)] == pytest.approx(vol.array[1, 1, 1])
    assert vol.meta["source_grid"]["shape"] == img.shape


def test_scaled_uint8_is_read_as_float(tmp_path):
    data = np.arange(27, dtype=np.uint8).reshape(3, 3, 3)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(12.5, 3.0)
    nib.save(img, tmp_path / "scaled.nii")
    vol = read_volume(tmp_path / "scaled.nii")
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array, data * 12.5 + 3.0)


def _text(header, key: str) -> bytes:
    return header[key].tobytes().strip(b"\x00")


def test_write_preserves_affine_and_scrubs_header(tmp_path, rng):
    data = rng.random((4, 5, 6)).astype(np.float32)
    affine = np.array([[0, 0, 2.0, -3], [1.5, 0, 0, 4], [0, 1.0, 0, 5], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, affine)
    img.header["descrip"] = b"Jane Doe 1970-01-01"
    img.header["aux_file"] = b"MRN 12345"
    src = tmp_path / "src.nii.gz"
    nib.save(img, src)
    vol = read_volume(src)
    # the default scrubs every free-text field
    back = nib.load(write_volume(tmp_path / "out.nii.gz", vol))
    assert _text(back.header, "descrip") == b"" and _text(back.header, "aux_file") == b""
    again = read_volume(tmp_path / "out.nii.gz")
    np.testing.assert_allclose(again.affine, vol.affine)
    np.testing.assert_allclose(again.array, vol.array)
    # scrub=False keeps the source header's text, also through a derived volume
    derived = vol.with_array(vol.array * 2)
    kept = nib.load(write_volume(tmp_path / "kept.nii", derived, scrub=False))
    assert _text(kept.header, "descrip") == b"Jane Doe 1970-01-01"
    assert _text(kept.header, "aux_file") == b"MRN 12345"
    # the text is never part of the volume's repr (nothing logs it by accident)
    assert "Jane" not in repr(vol) and "Jane" not in vol.name


def test_atomic_write_interrupted_keeps_old_file(tmp_path):
    target = tmp_path / "result.nii.gz"
    write_volume(target, np.ones((3, 3, 3), np.float32), np.eye(4))
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("crash in the middle of a write")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["result.nii.gz"]
    atomic_write_text(tmp_path / "new.txt", "hello")
    assert (tmp_path / "new.txt").read_text() == "hello"


def test_truncated_gzip_names_the_file(tmp_path, rng):
    path = tmp_path / "trunc.nii.gz"
    nib.save(nib.Nifti1Image(rng.random((20, 20, 20)).astype(np.float32), np.eye(4)), path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(VolumeError, match="trunc.nii.gz"):
        read_volume(path)


def test_garbage_file_names_the_file(tmp_path):
    path = tmp_path / "garbage.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti header at all" * 3))
    with pytest.raises(VolumeError, match="garbage.nii.gz"):
        read_volume(path)


def test_nan_volume_is_rejected(tmp_path):
    data = np.ones((4, 4, 4), np.float32)
    data[1, 2, 3] = np.nan
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(VolumeError, match=r"nan.nii.gz: 1 NaN or Inf"):
        read_volume(path)


def test_labels_are_integers(tmp_path):
    lab = np.zeros((4, 4, 4), np.float32)
    lab[1:3, 1:3, 1:3] = 7
    nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / "x_seg.nii.gz")
    vol = read_labels(tmp_path / "x_seg.nii.gz")
    assert vol.array.dtype == np.int32 and set(np.unique(vol.array)) == {0, 7}
