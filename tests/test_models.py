"""Target networks, latents, threat models and configs (tiny: 32^3, 8 base filters)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from inversion_audit.attack import InversionConfig
from inversion_audit.errors import ConfigError
from inversion_audit.training import TargetConfig, label_map_from_groups

torch = pytest.importorskip("torch")

ARGS = {"n_classes": 4, "depth": 2, "base_filters": 8}


@pytest.mark.parametrize("arch", ["unet", "segnet"])
def test_output_and_latent_shapes(arch):
    from inversion_audit.models import build_target_network

    model = build_target_network(arch, **ARGS).eval()
    x = torch.rand(2, 1, 32, 32, 32)
    with torch.no_grad():
        latent = model.encode(x)
        logits = model(x)
    assert logits.shape == (2, 4, 32, 32, 32)
    if arch == "unet":
        # z * 2**n channels at 1 / 2**n of the grid; one skip per level, finest first
        assert latent.bottleneck.shape == (2, 32, 8, 8, 8)
        assert [tuple(s.shape) for s in latent.skips] == [(2, 8, 32, 32, 32), (2, 16, 16, 16, 16)]
        assert latent.indices == ()
    else:
        assert latent.bottleneck.shape == (2, 16, 8, 8, 8)
        assert latent.skips == ()
        assert [tuple(i.shape) for i in latent.indices] == [(2, 8, 16, 16, 16), (2, 16, 8, 8, 8)]


@pytest.mark.parametrize("arch", ["unet", "segnet"])
@pytest.mark.parametrize("threat_model", ["bottleneck", "bottleneck+skips"])
def test_inversion_decoder_shapes_per_threat_model(arch, threat_model):
    from inversion_audit.attack import build_inversion_decoder
    from inversion_audit.models import build_target_network

    model = build_target_network(arch, **ARGS).eval()
    decoder = build_inversion_decoder(model, threat_model).eval()
    with torch.no_grad():
        latent = model.encode(torch.rand(2, 1, 32, 32, 32)).for_threat_model(threat_model)
        out = decoder(latent)
    assert out.shape == (2, 1, 32, 32, 32)
    if threat_model == "bottleneck":
        assert latent.skips == () and latent.indices == ()
    else:
        assert len(latent.skips) + len(latent.indices) == 2


def test_decoder_refuses_a_latent_missing_what_its_threat_model_needs():
    from inversion_audit.attack import build_inversion_decoder
    from inversion_audit.models import build_target_network

    model = build_target_network("unet", **ARGS).eval()
    decoder = build_inversion_decoder(model, "bottleneck+skips")
    with torch.no_grad(), pytest.raises(ValueError, match="skip features"):
        decoder(model.encode(torch.rand(1, 1, 32, 32, 32)).for_threat_model("bottleneck"))


def test_bad_layout_and_input_raise_value_errors():
    from inversion_audit.models import build_target_network

    with pytest.raises(ValueError, match="odd"):
        build_target_network("unet", kernel_size=4)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_target_network("vnet")
    model = build_target_network("segnet", **ARGS)
    with pytest.raises(ValueError, match="divisible by 4"):
        model.encode(torch.rand(1, 1, 30, 32, 32))


def test_configs_round_trip_and_name_unknown_keys():
    groups = [["4", "11", "49-52"], [100, "101-103"]]
    config = TargetConfig(arch="segnet", label_map=groups, epochs=3)
    expected = {k: 1 for k in (4, 11, 49, 50, 51, 52)} | {k: 2 for k in range(100, 104)}
    assert config.label_map == expected
    assert TargetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="depht"):
        TargetConfig.from_dict({"arch": "unet", "depht": 3})
    with pytest.raises(ConfigError, match="arch"):
        TargetConfig(arch="vnet")
    inv = InversionConfig(threat_model="bottleneck+skips", ssim_weight=0.5)
    assert InversionConfig.from_dict(inv.to_dict()) == inv
    with pytest.raises(ConfigError, match="ssim_wieght"):
        InversionConfig.from_dict({"ssim_wieght": 1})
    with pytest.raises(ConfigError, match="threat_model"):
        InversionConfig(threat_model="skips")
    with pytest.raises(ConfigError, match="in label groups 1 and 2"):
        label_map_from_groups([["1-3"], [3]])


def test_label_map_names_the_subject_with_unmapped_labels():
    from inversion_audit.training import apply_label_map

    labels = np.array([[[0, 4, 7]]])
    assert apply_label_map(labels, {4: 1, 7: 2}).tolist() == [[[0, 1, 2]]]
    with pytest.raises(ValueError, match=r"sub07: labels \[7\]"):
        apply_label_map(labels, {4: 1}, "sub07")


def test_configs_and_packages_import_without_torch():
    code = (
        "import sys; import inversion_audit.training, inversion_audit.attack, inversion_audit.models;"
        "from inversion_audit.training import TargetConfig; from inversion_audit.attack import InversionConfig;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_train_target_is_seeded_and_learns(tiny_volumes):
    from inversion_audit.checkpoints import state_hash
    from inversion_audit.training import segment, train_target

    images, labels = tiny_volumes
    config = TargetConfig(
        arch="segnet", depth=2, base_filters=8, epochs=3, batch_size=2, lr=3e-3, val_fraction=0.25
    )
    model, history = train_target(images[:4], labels[:4], config, device="cpu")
    again, _ = train_target(images[:4], labels[:4], config, device="cpu")
    assert state_hash(model) == state_hash(again)
    assert history.n_train == 3 and history.n_val == 1 and len(history.val_loss) == 3
    assert history.best_epoch == int(np.argmin(history.val_loss))
    assert history.epoch_loss[-1] < history.epoch_loss[0]
    assert history.config["n_classes"] == int(labels[0].max()) + 1
    seg = segment(model, images[0], device="cpu")
    assert seg.shape == images[0].shape and seg.dtype == np.int32
    assert 0 <= seg.min() and seg.max() < history.config["n_classes"]
    assert not model.training


def test_early_stopping_keeps_the_best_validation_epoch(tiny_volumes):
    from inversion_audit.training import train_target

    images, labels = tiny_volumes
    with pytest.raises(ConfigError, match="val_fraction"):
        TargetConfig(patience=2)  # early stopping without a validation split
    # a learning rate far too high makes the validation loss stop improving quickly
    config = TargetConfig(
        arch="unet", depth=2, base_filters=4, epochs=12, batch_size=2, lr=0.05,
        val_fraction=0.25, patience=2,
    )  # fmt: skip
    _, history = train_target(images[:4], labels[:4], config, device="cpu")
    assert history.stopped_early and len(history.epoch_loss) < config.epochs
    # it stopped exactly `patience` epochs after the best validation loss
    assert len(history.val_loss) == history.best_epoch + 1 + config.patience
    assert history.val_loss[history.best_epoch] == min(history.val_loss)


def test_train_target_rejects_mismatched_shapes(tiny_volumes):
    from inversion_audit.training import train_target

    images, labels = tiny_volumes
    with pytest.raises(ValueError, match="b: shape"):
        train_target(
            [images[0], images[1][:16]], labels[:2], TargetConfig(depth=2), "cpu", ids=["a", "b"]
        )


def test_patch_training_draws_crops_and_checks_sizes(tiny_volumes):
    from inversion_audit.training import train_target

    images, labels = tiny_volumes
    config = TargetConfig(
        depth=2,
        base_filters=8,
        epochs=1,
        batch_size=2,
        patch_size=(16, 16, 16),
        patches_per_subject=3,
    )
    assert TargetConfig.from_dict(config.to_dict()) == config
    model, history = train_target(images[:2], labels[:2], config, device="cpu")
    assert history.steps == 3  # 2 subjects x 3 crops in batches of 2
    assert segment_shape(model, images[0]) == images[0].shape  # inference on whole volumes
    with pytest.raises(ConfigError, match="divisible by 4"):
        TargetConfig(depth=2, patch_size=(16, 18, 16))
    with pytest.raises(ValueError, match="larger than the image grid"):
        train_target(images[:1], labels[:1], TargetConfig(depth=2, patch_size=(64, 16, 16)), "cpu")


def test_batchnorm_statistics_are_recomputed_on_the_training_crops(tiny_volumes):
    """Eval-mode BatchNorm must normalise like training did: with crop statistics, not
    those of whole, mostly-background volumes (that halved an ixi-dev target's Dice)."""
    from inversion_audit.training import train_target

    images, labels = tiny_volumes
    seen = []

    def record(module, args):
        if hasattr(module, "encode"):  # the target network itself, not its layers
            seen.append((module.training, tuple(args[0].shape[2:])))

    handle = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        config = TargetConfig(depth=2, epochs=1, batch_size=2, patch_size=(16, 16, 16))
        train_target(images[:2], labels[:2], config, device="cpu")
    finally:
        handle.remove()
    # one optimisation step, then one recalibration pass, all in train mode on 16^3 crops
    assert len(seen) == 2
    assert seen == [(True, (16, 16, 16))] * 2


def segment_shape(model, image):
    from inversion_audit.training import segment

    return segment(model, image, device="cpu").shape
