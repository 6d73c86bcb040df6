"""Open study's "load files one by one" with external models: a MONAI bundle folder, an
nnU-Net v2 folder or MONAI weights as the target, beside the decoder trained against it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gui_fakes import Notifications, blob_image
from inversion_audit.gui.review_panel import open_tab
from test_external_models import TINY, blob_images, save_monai, write_bundle, write_nnunet

PLUGIN = "napari-inversion-audit"


def decoder_beside(tmp_path, model, preprocess):
    """A decoder trained (one epoch) against ``model``, saved with the project's checkpoint API."""
    from inversion_audit.attack import InversionConfig, train_inversion
    from inversion_audit.checkpoints import save_checkpoint

    target = model.target()
    images = blob_images(model.grid, 2)
    decoder, _ = train_inversion(target, images, InversionConfig(epochs=1), device="cpu")
    save_checkpoint(tmp_path / "inv" / "inversion", decoder, {"preprocess": preprocess})
    return tmp_path / "inv" / "inversion.safetensors", decoder


def open_widgets(make_napari_viewer):
    viewer = make_napari_viewer()
    opener = open_tab(viewer, "Open study")
    recon = open_tab(viewer, "Reconstruct")
    return viewer, opener, recon


def load_pair(qtbot, opener, target, inversion):
    with Notifications() as notes:
        job = opener.load_checkpoints(target, inversion)
        assert job is not None, notes.messages()
        qtbot.waitUntil(lambda: not job.is_running, timeout=120000)
        qtbot.wait(20)
    return job, notes


def reconstruct_in_widget(qtbot, viewer, recon, image, spacing):
    viewer.add_image(image, name="T1", scale=spacing, translate=(4.0, -6.0, 2.0))
    recon.device_combo.setCurrentText("cpu")
    recon.image_combo.choose("T1")
    job = recon.run()
    assert job is not None
    qtbot.waitUntil(lambda: not job.is_running, timeout=120000)
    assert job.error is None, job.error
    return viewer.layers["T1 reconstruction"]


def reference(model, decoder, image, spacing, preprocess):
    """The core's reconstruction with the model loaded directly (not rebuilt from the sidecar)."""
    from inversion_audit.attack import reconstruct_volume
    from inversion_audit.io import Volume

    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (4.0, -6.0, 2.0)
    volume = Volume(image.astype(np.float32), affine)
    return reconstruct_volume(model.target(), decoder, volume, None, preprocess, "cpu")


@pytest.mark.slow
def test_bundle_folder_loads_one_by_one_and_reconstructs_on_the_input_grid(
    make_napari_viewer, qtbot, tmp_path
):
    from inversion_audit.data import PreprocessConfig
    from inversion_audit.models.external import load_bundle

    args = {**TINY["SegResNet"], "norm": ["GROUP", {"num_groups": 2}]}
    root = write_bundle(tmp_path, {"_target_": "SegResNet", **args})
    model = load_bundle(root)
    pre = PreprocessConfig(spacing=(2.0, 2.0, 2.0), shape=(32, 32, 32), bias_correction=False)
    inversion, decoder = decoder_beside(tmp_path, model, pre)

    viewer, opener, recon = open_widgets(make_napari_viewer)
    job, notes = load_pair(qtbot, opener, root, inversion)
    assert job.error is None and not notes.errors(), notes.messages()
    assert (opener.state.target_checkpoint, opener.state.inversion_checkpoint) == (root, inversion)
    assert any("SegResNet" in m and "down_layers.3" in m for m in notes.messages())
    # the checked pair is what the Reconstruct widget runs
    assert (recon.target_edit.text(), recon.inversion_edit.text()) == (str(root), str(inversion))
    image = blob_image((20, 22, 18), seed=3) * 900.0
    layer = reconstruct_in_widget(qtbot, viewer, recon, image, (2.0, 2.0, 2.0))
    t1 = viewer.layers["T1"]
    assert layer.data.shape == image.shape
    np.testing.assert_allclose(layer.scale, t1.scale)
    np.testing.assert_allclose(layer.translate, t1.translate)
    np.testing.assert_allclose(
        layer.data, reference(model, decoder, image, (2.0, 2.0, 2.0), pre), atol=1e-5
    )


@pytest.mark.slow
def test_nnunet_folder_loads_one_by_one_and_reconstructs_on_the_input_grid(
    make_napari_viewer, qtbot, tmp_path
):
    from inversion_audit.models.external import load_nnunet

    root, _ = write_nnunet(tmp_path)
    model = load_nnunet(root, fold=0)
    pre = dataclasses.replace(model.preprocess, bias_correction=False)
    inversion, decoder = decoder_beside(tmp_path, model, pre)

    viewer, opener, recon = open_widgets(make_napari_viewer)
    job, notes = load_pair(qtbot, opener, root, inversion)
    assert job.error is None and not notes.errors(), notes.messages()
    assert opener.state.target_checkpoint == root
    assert any("PlainConvUNet" in m and "encoder.stages.2" in m for m in notes.messages())
    image = blob_image((24, 20, 14), seed=4) * 500.0
    layer = reconstruct_in_widget(qtbot, viewer, recon, image, (2.0, 2.0, 3.0))
    assert layer.data.shape == image.shape
    np.testing.assert_allclose(
        layer.data, reference(model, decoder, image, (2.0, 2.0, 3.0), pre), atol=1e-5
    )


@pytest.mark.slow
def test_decoder_of_other_weights_is_refused_naming_the_file(make_napari_viewer, qtbot, tmp_path):
    from inversion_audit.data import PreprocessConfig
    from inversion_audit.models.external import load_bundle, load_monai

    pre = PreprocessConfig(spacing=(2.0, 2.0, 2.0), shape=(32, 32, 32), bias_correction=False)
    name = "BasicUNet"
    _, weights = save_monai(tmp_path, name, TINY[name])
    inversion, _ = decoder_beside(tmp_path, load_monai(weights, name, TINY[name]), pre)
    viewer, opener, _ = open_widgets(make_napari_viewer)
    job, notes = load_pair(qtbot, opener, weights, inversion)  # the decoder's own model: fine
    assert job.error is None and opener.state.target_checkpoint == weights
    (tmp_path / "other").mkdir()
    _, other = save_monai(tmp_path / "other", name, TINY[name], seed=5)
    job, notes = load_pair(qtbot, opener, other, inversion)
    (error,) = notes.errors()
    assert str(other) in error and "weights_sha256" in error, error
    assert "\n" not in error and "weights_only" not in error
    assert opener.state.target_checkpoint == weights  # unchanged

    # a bundle whose weights were replaced after its decoder was trained
    args = {**TINY["SegResNet"], "norm": ["GROUP", {"num_groups": 2}]}
    root = write_bundle(tmp_path / "b", {"_target_": "SegResNet", **args})
    bundle_inversion, _ = decoder_beside(tmp_path / "b", load_bundle(root), pre)
    job, notes = load_pair(qtbot, opener, root, bundle_inversion)  # loaded and cached
    assert job.error is None and opener.state.target_checkpoint == root
    import torch
    from monai.networks.nets import SegResNet

    torch.manual_seed(9)
    torch.save({"model": SegResNet(**TINY["SegResNet"]).state_dict()}, root / "models" / "model.pt")
    job, notes = load_pair(qtbot, opener, root, bundle_inversion)
    (error,) = notes.errors()
    assert str(root) in error and "weights_sha256" in error, error  # not the cached model
    assert opener.state.inversion_checkpoint == bundle_inversion


def test_folder_that_is_no_model_and_paper_decoder_beside_a_bundle_are_refused(
    make_napari_viewer, qtbot, tmp_path
):
    from gui_fakes import make_tiny_checkpoints

    _, paper_inversion = make_tiny_checkpoints(tmp_path / "paper")
    viewer, opener, _ = open_widgets(make_napari_viewer)
    (tmp_path / "holiday photos").mkdir()
    with Notifications() as notes:
        assert opener.load_checkpoints(tmp_path / "holiday photos", paper_inversion) is None
    (error,) = notes.errors()
    assert str(tmp_path / "holiday photos") in error and "bundle" in error
    args = {**TINY["SegResNet"], "norm": ["GROUP", {"num_groups": 2}]}
    root = write_bundle(tmp_path, {"_target_": "SegResNet", **args})
    job, notes = load_pair(qtbot, opener, root, paper_inversion)
    (error,) = notes.errors()
    assert str(paper_inversion) in error and "external model" in error, error
    assert opener.state.target_checkpoint is None


@pytest.mark.gpu
def test_bundle_pair_checks_on_cuda(tmp_path):
    import torch

    from inversion_audit.data import PreprocessConfig
    from inversion_audit.gui._compute import check_checkpoints
    from inversion_audit.models.external import load_bundle

    args = {**TINY["SegResNet"], "norm": ["GROUP", {"num_groups": 2}]}
    root = write_bundle(tmp_path, {"_target_": "SegResNet", **args})
    pre = PreprocessConfig(spacing=(2.0, 2.0, 2.0), shape=(32, 32, 32), bias_correction=False)
    inversion, _ = decoder_beside(tmp_path, load_bundle(root), pre)
    models = check_checkpoints(root, inversion, "cuda")
    assert models.device.startswith("cuda")
    assert next(models.decoder.parameters()).is_cuda and next(models.target.parameters()).is_cuda
    x = torch.rand(1, 1, 32, 32, 32, device=models.device)
    with torch.no_grad():
        latent = models.target.encode(x).for_threat_model("bottleneck")
        assert models.decoder(latent).shape[2:] == (32, 32, 32)
