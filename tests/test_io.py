"""Volume I/O: canonical orientation, scaled storage, atomic writes, header scrubbing."""

from __future__ import annotations

import errno
import gzip
import io
import os

import nibabel as nib
import numpy as np
import pytest

from inversion_audit.errors import ConfigError, OutputError, VolumeError
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


def _header_only(path, shape, affine=np.diag([-2.0, 2.0, 2.0, 1.0])):
    """A NIfTI whose header claims ``shape`` but holds 64 voxels (LAS: reorienting it to RAS
    would read, and first allocate, every claimed voxel)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.float32)
    hdr.set_data_shape(shape)
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr["vox_offset"] = 352
    raw = hdr.binaryblock + b"\0" * 4 + np.zeros(64, np.float32).tobytes()
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("axis.nii.gz", (4096, 4096, 4096)),  # today: MemoryError in as_closest_canonical
        ("axis.nii", (4096, 2, 2)),  # one axis over 2048
        ("total.nii.gz", (2048, 2048, 1024)),  # each axis allowed, 2^32 voxels in all
    ],
)
def test_huge_header_grid_is_refused_unread(tmp_path, name, shape):
    path = _header_only(tmp_path / name, shape)
    for reader in (read_volume, read_labels):
        with pytest.raises(VolumeError, match=rf"{name}: header claims a .* grid") as err:
            reader(path)
        assert "x".join(map(str, shape)) in str(err.value)


def test_grid_bounds_are_inclusive_and_empty_grids_refused(tmp_path):
    from inversion_audit.io.nifti import MAX_GRID_AXIS

    data = np.ones((MAX_GRID_AXIS, 2, 2), np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "edge.nii")
    assert read_volume(tmp_path / "edge.nii").shape == (MAX_GRID_AXIS, 2, 2)
    nib.save(nib.Nifti1Image(np.zeros((0, 4, 4), np.float32), np.eye(4)), tmp_path / "e.nii")
    with pytest.raises(VolumeError, match=r"e\.nii: header claims an empty grid"):
        read_volume(tmp_path / "e.nii")


def _enospc(code=errno.ENOSPC):
    return OSError(code, os.strerror(code))


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_full_disk_while_writing_bytes_keeps_the_old_file(tmp_path, monkeypatch):
    """The fault: the temporary file takes half the data, then the disk is full."""
    from inversion_audit.io import atomic

    target = tmp_path / "result.json"
    atomic.atomic_write_json(target, {"old": 1})
    before = target.read_bytes()

    class FullDisk(io.FileIO):
        def write(self, data):
            super().write(bytes(data)[: len(data) // 2])
            raise _enospc()

    monkeypatch.setattr(atomic, "open", lambda p, mode: FullDisk(p, mode), raising=False)
    with pytest.raises(OutputError, match=f"no space left on device writing {target}"):
        atomic.atomic_write_json(target, {"new": list(range(1000))})
    assert target.read_bytes() == before
    assert _files(tmp_path) == ["result.json"]
    # a new file: nothing is left behind at all
    with pytest.raises(OutputError, match=r"writing .*fresh\.txt"):
        atomic.atomic_write_text(tmp_path / "fresh.txt", "x" * 100)
    assert _files(tmp_path) == ["result.json"]


def test_full_disk_while_writing_a_volume_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "recon.nii.gz"
    write_volume(target, np.ones((3, 3, 3), np.float32), np.eye(4))
    before = target.read_bytes()

    def full_disk_save(img, filename):
        with open(filename, "wb") as fh:  # the writer had begun
            fh.write(before[:10])
        raise _enospc(errno.EDQUOT)

    monkeypatch.setattr(nib, "save", full_disk_save)
    with pytest.raises(
        OutputError, match=r"no space left on device writing .*recon\.nii\.gz \(disk quota"
    ):
        write_volume(target, np.zeros((3, 3, 3), np.float32), np.eye(4))
    assert target.read_bytes() == before
    assert _files(tmp_path) == ["recon.nii.gz"]


def test_full_disk_at_the_rename_and_other_errors(tmp_path, monkeypatch):
    from inversion_audit.io import atomic

    target = tmp_path / "t.txt"
    atomic.atomic_write_text(target, "old")
    real_replace = os.replace

    def failing_replace(src, dst, code=errno.ENOSPC):
        raise _enospc(code)

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OutputError, match="no space left on device writing"):
        atomic.atomic_write_text(target, "new")
    assert target.read_text() == "old" and _files(tmp_path) == ["t.txt"]
    # any other OS error is not a full disk: it stays what it is (and the old file stays)
    monkeypatch.setattr(atomic.os, "replace", lambda s, d: failing_replace(s, d, errno.EACCES))
    with pytest.raises(PermissionError):
        atomic.atomic_write_text(target, "new")
    assert target.read_text() == "old" and _files(tmp_path) == ["t.txt"]
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    assert atomic.atomic_write_text(target, "new").read_text() == "new"


@pytest.mark.parametrize("reader", ["read_text", "read_json", "read_toml"])
def test_untrusted_text_that_is_not_utf8_names_the_byte(tmp_path, reader):
    from inversion_audit.io import untrusted

    path = tmp_path / "conf.txt"
    path.write_bytes(b'{"a": "caf\xc3\xa9 \xff"}')
    with pytest.raises(ConfigError) as err:
        getattr(untrusted, reader)(path, ConfigError)
    assert str(err.value) == f"{path}: not UTF-8 text (byte 0xff at offset 13)"


def test_not_utf8_scans_the_whole_file_for_the_first_bad_byte(tmp_path):
    from inversion_audit.io.untrusted import not_utf8

    path = tmp_path / "big.csv"
    block = 2**20
    # a two-byte character across the scanner's block boundary, then a bad byte
    data = b"a" * (block - 1) + "é".encode() + b"b" * 10 + b"\xfe" + b"c" * 10
    path.write_bytes(data)
    assert str(not_utf8(path, ConfigError)) == (
        f"{path}: not UTF-8 text (byte 0xfe at offset {block + 11})"
    )
    path.write_bytes(b"abc\xc3")  # a character cut off at the end of the file
    assert str(not_utf8(path, ConfigError)).endswith("(byte 0xc3 at offset 3)")
