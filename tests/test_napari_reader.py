"""NIfTI reading in RAS (PSR/LPI inputs) and the napari reader's layer geometry."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

from inversion_audit.errors import VolumeError
from inversion_audit.gui.reader import get_reader, is_label_file, layer_geometry, read_nifti_layers
from inversion_audit.io import read_volume, write_volume

SHAPE = (12, 10, 8)


@pytest.fixture
def ras_volume():
    """A RAS volume with a unique marker voxel, 2 x 2.5 x 3 mm voxels."""
    data = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    affine = np.diag([2.0, 2.5, 3.0, 1.0])
    affine[:3, 3] = [-11.0, 7.0, 23.0]
    return data, affine


def _reorient(data, affine, codes):
    """The same image stored in ``codes`` voxel order (same world coordinates)."""
    t = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(codes))
    new = apply_orientation(data, t)
    return new, affine @ inv_ornt_aff(t, data.shape)


def _world(affine, index):
    return affine[:3, :3] @ np.asarray(index, dtype=float) + affine[:3, 3]


@pytest.mark.parametrize("codes", [("P", "S", "R"), ("L", "P", "I")])
def test_reoriented_inputs_come_out_ras_with_same_world_coordinates(tmp_path, ras_volume, codes):
    data, affine = ras_volume
    stored, stored_affine = _reorient(data, affine, codes)
    assert nib.aff2axcodes(stored_affine) == codes
    path = tmp_path / f"{''.join(codes)}.nii.gz"
    nib.save(nib.Nifti1Image(stored, stored_affine), path)

    vol = read_volume(path)
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S")
    np.testing.assert_array_equal(vol.array, data)
    np.testing.assert_allclose(vol.affine, affine)
    marker = 437.0
    on_disk = np.argwhere(stored == marker)[0]
    in_ras = np.argwhere(vol.array == marker)[0]
    np.testing.assert_allclose(_world(vol.affine, in_ras), _world(stored_affine, on_disk))

    # the napari layer places the marker voxel at the same world position
    ((layer_data, kwargs, kind),) = read_nifti_layers(str(path))
    assert kind == "image"
    assert "affine" not in kwargs
    idx = np.argwhere(layer_data == marker)[0]
    world = np.asarray(kwargs["scale"]) * idx + np.asarray(kwargs["translate"])
    np.testing.assert_allclose(world, _world(stored_affine, on_disk))


def test_get_reader_only_claims_nifti(tmp_path):
    assert get_reader(str(tmp_path / "a.png")) is None
    assert get_reader([str(tmp_path / "a.nii.gz"), str(tmp_path / "b.tif")]) is None
    assert callable(get_reader(str(tmp_path / "a.nii")))
    assert callable(get_reader([str(tmp_path / "a.NII.GZ")]))


def test_seg_file_opens_as_labels_with_scale_and_translate(tmp_path, ras_volume):
    data, affine = ras_volume
    labels = (data % 5).astype(np.float32)  # float storage: the name decides
    path = write_volume(tmp_path / "sub01_seg.nii.gz", labels, affine)
    reader = get_reader(str(path))
    ((layer_data, kwargs, kind),) = reader(str(path))
    assert kind == "labels"
    assert np.issubdtype(layer_data.dtype, np.integer)
    np.testing.assert_array_equal(layer_data, labels.astype(int))
    assert kwargs["scale"] == pytest.approx((2.0, 2.5, 3.0))
    assert kwargs["translate"] == pytest.approx((-11.0, 7.0, 23.0))
    assert kwargs["name"] == "sub01_seg"


def test_label_detection_by_content(tmp_path, ras_volume):
    data, affine = ras_volume
    few = write_volume(tmp_path / "parcellation.nii.gz", (data % 7).astype(np.int16), affine)
    many = write_volume(tmp_path / "scan.nii.gz", data.astype(np.int16), affine)  # 960 values
    t1 = write_volume(tmp_path / "sub01_T1.nii.gz", (data % 7).astype(np.uint8), affine)
    floats = write_volume(tmp_path / "map.nii.gz", data % 7, affine)
    assert is_label_file(few)
    assert not is_label_file(many)
    assert not is_label_file(t1)  # an intensity image by name
    assert not is_label_file(floats)
    kinds = [kind for _, _, kind in read_nifti_layers([str(few), str(many)])]
    assert kinds == ["labels", "image"]


def test_oblique_affine_is_kept(tmp_path, ras_volume):
    data, affine = ras_volume
    angle = np.deg2rad(20)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    oblique = affine.copy()
    oblique[:3, :3] = rot @ affine[:3, :3]
    geo = layer_geometry(oblique)
    assert geo["scale"] == pytest.approx((2.0, 2.5, 3.0))
    rng = np.random.default_rng(0)
    for idx in rng.uniform(0, 8, (5, 3)):
        layer_world = geo["affine"] @ np.append(
            np.asarray(geo["scale"]) * idx + geo["translate"], 1.0
        )
        np.testing.assert_allclose(layer_world[:3], _world(oblique, idx))


def test_layer_name_does_not_leak_header_text(tmp_path, ras_volume):
    data, affine = ras_volume
    img = nib.Nifti1Image(data, affine)
    img.header["descrip"] = b"Jane Doe 1970-01-01"
    img.header["db_name"] = b"ST JUDE"
    path = tmp_path / "anon_T1.nii.gz"
    nib.save(img, path)
    ((_, kwargs, _),) = read_nifti_layers(str(path))
    assert kwargs["name"] == "anon_T1"
    text = repr(kwargs)
    assert "Jane" not in text and "JUDE" not in text


@pytest.mark.parametrize("name", ["broken_T1.nii.gz", "broken.nii.gz", "broken_seg.nii"])
def test_corrupt_file_error_names_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x1f\x8b not really a volume")
    reader = get_reader(str(path))
    with pytest.raises(VolumeError, match=name):
        reader(str(path))


# -- in napari: no reader dialog, radiological axial view ---------------------------------------
PLUGIN = "napari-inversion-audit"


def _head(tmp_path, codes) -> tuple[str, np.ndarray]:
    """A head stored in ``codes`` voxel order; a bright marker at world (+30, +30, 0) mm,
    i.e. on the subject's right (+x in RAS) and anterior (+y)."""
    shape = (40, 44, 36)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1)  # world origin at the grid centre
    ijk = np.indices(shape).reshape(3, -1).T
    world = ijk * 2.0 + affine[:3, 3]
    data = (np.linalg.norm(world / [36, 40, 32], axis=1) < 1).astype(np.float32) * 100
    near = np.linalg.norm(world - [30, 30, 0], axis=1) < 4
    data[near] = 1000
    data = data.reshape(shape)
    stored, stored_affine = _reorient(data, affine, codes)
    assert nib.aff2axcodes(stored_affine) == codes
    path = tmp_path / f"head_{''.join(codes)}.nii.gz"
    nib.save(nib.Nifti1Image(stored, stored_affine), path)
    return str(path), np.array([30.0, 30.0, 0.0])


def _activate_plugin():
    """What napari does the first time any of the plugin's contributions is used."""
    import npe2

    pm = npe2.PluginManager.instance()
    if pm.get_context(PLUGIN)._activated:
        pm.deactivate(PLUGIN)
    pm.activate(PLUGIN)


def _canvas_xy(viewer, world) -> np.ndarray:
    """Canvas pixel (x to the right, y down) of a world point on the displayed slice."""
    canvas = viewer.window._qt_viewer.canvas
    view = canvas.view
    displayed = [world[d] for d in viewer.dims.displayed]
    return np.asarray((view.transform * view.scene.transform).map(displayed[::-1]))[:2]


def test_dropped_nifti_opens_with_this_plugin_without_a_dialog(make_napari_viewer, tmp_path):
    from napari.errors import MultipleReaderError
    from napari.settings import get_settings

    viewer = make_napari_viewer()
    path, _ = _head(tmp_path, ("L", "P", "I"))
    settings = get_settings().plugins
    settings.extension2reader = {}
    # drag-and-drop and File > Open call viewer.open(paths, plugin=None) (the Qt viewer's
    # _qt_open), which shows the reader dialog when this is raised: a fresh napari asks
    with pytest.raises(MultipleReaderError):
        viewer.open(path, plugin=None)
    _activate_plugin()
    assert settings.extension2reader["*.nii.gz"] == PLUGIN
    assert settings.extension2reader["*.nii"] == PLUGIN
    layers = viewer.open(path, plugin=None)  # no plugin named: the preference decides
    assert [la.name for la in layers] == ["head_LPI"]
    # a user's choice of another plugin is kept
    settings.extension2reader = {"*.nii": "someone-else"}
    _activate_plugin()
    assert settings.extension2reader["*.nii"] == "someone-else"


@pytest.mark.parametrize("codes", [("L", "P", "I"), ("P", "S", "R")])
def test_every_file_opens_axial_right_on_left_anterior_up(
    make_napari_viewer, qtbot, tmp_path, codes
):
    viewer = make_napari_viewer(show=True)
    path, marker = _head(tmp_path, codes)
    _activate_plugin()
    (layer,) = viewer.open(path, plugin=None)
    qtbot.waitUntil(lambda: tuple(viewer.dims.order) == (2, 1, 0), timeout=5000)
    qtbot.wait(50)
    # the marker voxel sits at its world position in mm
    idx = np.argwhere(np.asarray(layer.data) == 1000).mean(axis=0)
    np.testing.assert_allclose(layer.data_to_world(idx), marker, atol=1.0)
    viewer.dims.set_point(2, marker[2])
    assert viewer.dims.displayed == (1, 0)  # an axial slice: R-L across, A-P up-down
    centre = _canvas_xy(viewer, np.zeros(3))
    right = _canvas_xy(viewer, np.array([40.0, 0.0, 0.0]))
    anterior = _canvas_xy(viewer, np.array([0.0, 40.0, 0.0]))
    assert right[0] < centre[0] - 10 and abs(right[1] - centre[1]) < 1  # subject's right: left
    assert anterior[1] < centre[1] - 10 and abs(anterior[0] - centre[0]) < 1  # anterior: up
    # and the bright marker (right, anterior) is what the viewer shows up and to the left
    pts = viewer.add_points([marker], name="marker")
    xy = _canvas_xy(viewer, pts.data_to_world(pts.data[0]))
    assert xy[0] < centre[0] and xy[1] < centre[1]
    assert layer.get_value(marker, world=True) == pytest.approx(1000)
