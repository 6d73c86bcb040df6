"""The inversion decoder attack: frozen encoder, falling loss, reconstruction onto the source grid."""

from __future__ import annotations

import numpy as np
import pytest

from inversion_audit.attack import InversionConfig

torch = pytest.importorskip("torch")


def _target(arch="unet", seed=0):
    from inversion_audit.models import build_target_network

    torch.manual_seed(seed)
    return build_target_network(arch, n_classes=4, depth=2, base_filters=8).eval()


@pytest.mark.slow
def test_encoder_stays_frozen_and_unchanged(tiny_volumes):
    from inversion_audit.attack import train_inversion
    from inversion_audit.checkpoints import state_hash

    images, _ = tiny_volumes
    target = _target("segnet")
    target.train()  # the attack must put it in eval mode
    before = state_hash(target)
    config = InversionConfig(threat_model="bottleneck+skips", epochs=1, batch_size=2)
    decoder, history = train_inversion(target, images[:4], config, device="cpu")
    assert history.steps == 2
    assert not target.training
    assert all(not p.requires_grad and p.grad is None for p in target.parameters())
    assert state_hash(target) == before
    assert decoder.target_weights_sha256 == before
    assert any(p.grad is not None for p in decoder.parameters())


def test_a_gradient_reaching_the_target_is_an_error():
    from inversion_audit.attack.inversion import _assert_no_gradient

    target = _target()
    _assert_no_gradient(_target().requires_grad_(False))
    with pytest.raises(RuntimeError, match="frozen"):
        _assert_no_gradient(target)  # parameters still require grad


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["unet", "segnet"])
def test_inversion_loss_halves_within_30_steps(tiny_volumes, arch):
    from inversion_audit.attack import train_inversion

    images, _ = tiny_volumes
    config = InversionConfig(epochs=10, batch_size=1, lr=2e-3, seed=0)
    decoder, history = train_inversion(_target(arch), images[:3], config, device="cpu")
    assert history.steps == 30
    first, last = history.step_loss[0], float(np.mean(history.step_loss[-3:]))
    assert last <= 0.5 * first, (first, last)


@pytest.mark.slow
def test_training_is_seeded_and_optional_terms_are_reported(tiny_volumes):
    from inversion_audit.attack import train_inversion
    from inversion_audit.checkpoints import state_hash

    images, _ = tiny_volumes
    config = InversionConfig(
        epochs=1, batch_size=2, ssim_weight=0.5, gradient_weight=1.0, flip_augment=True
    )
    a, history = train_inversion(_target(), images[:2], config, device="cpu")
    b, _ = train_inversion(_target(), images[:2], config, device="cpu")
    assert state_hash(a) == state_hash(b)
    assert history.n_train == 4  # with mirrored copies
    assert set(history.loss_terms) == {"mse", "ssim", "gradient"}


def test_reconstruct_and_write_back_to_the_source_grid(tiny_cohort, tmp_path):
    import nibabel as nib

    from inversion_audit.attack import build_inversion_decoder, reconstruct, write_reconstruction
    from inversion_audit.data import PreprocessConfig, load_cohort, preprocess_subject

    subject = load_cohort(tiny_cohort)["sub00"]
    pre = preprocess_subject(
        subject, PreprocessConfig(shape=(32, 32, 32), divisible_by=4, bias_correction=False)
    )
    target = _target()
    decoder = build_inversion_decoder(target, "bottleneck")
    rec = reconstruct(target, decoder, pre.image, device="cpu")
    assert rec.shape == pre.shape and rec.dtype == np.float32
    assert 0.0 <= rec.min() and rec.max() <= 1.0
    src = write_reconstruction(tmp_path / "sub00_recon.nii.gz", rec, pre, grid="source")
    on_pre = write_reconstruction(
        tmp_path / "sub00_recon_pre.nii.gz", rec, pre, grid="preprocessed"
    )
    original = nib.load(subject.image)
    written = nib.load(src)
    assert written.shape == original.shape
    np.testing.assert_allclose(written.affine, original.affine, atol=1e-5)
    np.testing.assert_allclose(nib.load(on_pre).affine, pre.affine, atol=1e-5)


def test_reconstruct_subject_uses_the_checkpoint_preprocessing(tiny_cohort, tmp_path):
    import nibabel as nib

    from inversion_audit.attack import build_inversion_decoder, reconstruct, reconstruct_subject
    from inversion_audit.data import PreprocessConfig, load_cohort, preprocess_subject
    from inversion_audit.errors import CheckpointError

    subject = load_cohort(tiny_cohort)["sub01"]
    config = PreprocessConfig(
        spacing=4.0, shape=(16, 16, 16), divisible_by=4, skull_strip="labels", bias_correction=False
    )
    target = _target()
    decoder = build_inversion_decoder(target, "bottleneck")
    with pytest.raises(CheckpointError, match="preprocess config"):
        reconstruct_subject(target, decoder, subject, device="cpu")  # no sidecar config
    decoder.metadata = {"preprocess": config.to_dict()}  # as load_inversion sets it
    result = reconstruct_subject(target, decoder, subject, device="cpu", out_dir=tmp_path)
    pre = preprocess_subject(subject, config)
    assert result.preprocessed.shape == (16, 16, 16)
    np.testing.assert_array_equal(result.array, reconstruct(target, decoder, pre.image, "cpu"))
    source = nib.load(subject.image)
    written = nib.load(result.files["source"])
    assert written.shape == source.shape and result.on_source_grid().shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    assert nib.load(result.files["preprocessed"]).shape == (16, 16, 16)
    assert result.files["source"].name == "sub01_recon.nii.gz"


def test_reconstruct_refuses_a_decoder_of_another_target():
    from inversion_audit.attack import build_inversion_decoder, reconstruct
    from inversion_audit.models import build_target_network

    decoder = build_inversion_decoder(_target("unet"))
    other = build_target_network("unet", n_classes=4, depth=2, base_filters=4)
    with pytest.raises(ValueError, match="built for unet"):
        reconstruct(other, decoder, np.zeros((32, 32, 32), np.float32), device="cpu")


def test_a_cancelling_progress_callback_stops_training(tiny_volumes):
    from inversion_audit.attack import train_inversion
    from inversion_audit.errors import JobCancelled
    from inversion_audit.training import TargetConfig, train_target

    images, labels = tiny_volumes
    stages = []

    def cancel(done, total, stage):
        stages.append(stage)
        if done >= 1:
            raise JobCancelled(stage)

    with pytest.raises(JobCancelled):
        train_target(
            images[:2], labels[:2], TargetConfig(depth=2, epochs=5), "cpu", progress=cancel
        )
    assert stages == ["train-target", "train-target"]
    with pytest.raises(JobCancelled, match="encode"):
        train_inversion(_target(), images[:3], InversionConfig(epochs=5), "cpu", progress=cancel)
