"""Defences: DP-SGD targets, latent noise on released codes, seed 002's obfuscation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from conftest import make_blob_volume
from inversion_audit.errors import ConfigError


def _tiny(n: int = 4, size: int = 16) -> tuple[list[np.ndarray], list[np.ndarray]]:
    pairs = [make_blob_volume(shape=(size,) * 3, seed=i) for i in range(n)]
    return [p[0] for p in pairs], [(p[1] > 0).astype(np.int32) for p in pairs]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["unet", "segnet"])
def test_dp_sgd_step_runs_after_groupnorm_fix_and_reports_epsilon(arch, tmp_path):
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
    from opacus.accountants.rdp import RDPAccountant
    from torch import nn

    from inversion_audit.checkpoints import load_target, save_checkpoint
    from inversion_audit.training import TargetConfig, train_target
    from inversion_audit.training.dp import with_dp

    images, labels = _tiny()
    config = with_dp(
        TargetConfig(arch=arch, depth=2, base_filters=4, epochs=1, batch_size=2, seed=3),
        {"noise_multiplier": 1.3, "max_grad_norm": 0.7, "delta": 1e-3},
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, history = train_target(images, labels, config, device="cpu")
    # Opacus's hooks on the first layer need no input gradient: no notice about it per step
    assert not [w for w in caught if "Full backward hook" in str(w.message)]

    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    assert model.arch_args["norm"] == "group"
    assert history.steps >= 1 and all(math.isfinite(v) for v in history.step_loss)

    privacy = history.privacy
    # 4 subjects, batch 2: q = 1/2, two accounted steps per epoch (empty Poisson steps too)
    assert privacy["sample_rate"] == 0.5 and privacy["steps"] == 2
    assert (privacy["delta"], privacy["sampling"]) == (1e-3, "poisson")
    orders = RDPAccountant.DEFAULT_ALPHAS
    rdp = compute_rdp(q=0.5, noise_multiplier=1.3, steps=2, orders=orders)
    epsilon, _ = get_privacy_spent(orders=orders, rdp=rdp, delta=1e-3)
    assert privacy["epsilon"] == pytest.approx(epsilon, rel=1e-9)
    assert 0 < privacy["epsilon"] < math.inf

    # the GroupNorm target round-trips through a checkpoint
    save_checkpoint(tmp_path / "target", model, {})
    loaded = load_target(tmp_path / "target.safetensors")
    assert any(isinstance(m, nn.GroupNorm) for m in loaded.modules())


def test_dp_config_rejects_bad_values():
    from inversion_audit.training.dp import DPConfig

    with pytest.raises(ConfigError, match="sampling"):
        DPConfig(sampling="batches")
    with pytest.raises(ConfigError, match="delta"):
        DPConfig(delta=1.5)
    with pytest.raises(ConfigError, match="unknown target.dp key"):
        DPConfig.from_dict({"noise": 1.0})


def _encoder_input(size: int = 32):
    import torch

    img, _ = make_blob_volume(shape=(size,) * 3, seed=5)
    return torch.from_numpy(img)[None, None]


@pytest.mark.parametrize("sigma", [0.25, 1.0])
def test_latent_noise_changes_the_released_code_by_sigma(sigma):
    import torch

    from inversion_audit.defences.latent_noise import LatentNoise, release_latents
    from inversion_audit.models import UNet3D, build_target_network

    torch.manual_seed(0)
    model = build_target_network("unet", depth=2, base_filters=4, norm="instance").eval()
    x = _encoder_input()
    with torch.no_grad():
        clean = model.encode(x)
        release_latents(model, LatentNoise(sigma=sigma, seed=1))
        released = model.encode(x)
        again = UNet3D.encode(model, x)  # the weights are untouched
    for a, b in zip(clean.tensors(), released.tensors(), strict=True):
        a, b = a.numpy().ravel(), b.numpy().ravel()
        assert np.std(b - a) / np.std(a) == pytest.approx(sigma, rel=0.08)
    for a, b in zip(clean.tensors(), again.tensors(), strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():  # the segmentation decodes the released code
        assert not torch.equal(model(x), model.decode(clean))


def test_latent_quantisation_and_segnet_indices():
    import torch

    from inversion_audit.defences.latent_noise import LatentNoise, release_latents
    from inversion_audit.models import build_target_network

    torch.manual_seed(0)
    model = build_target_network("segnet", depth=2, base_filters=4, norm="instance").eval()
    x = _encoder_input()
    with torch.no_grad():
        clean = model.encode(x)
        release_latents(model, LatentNoise(levels=4))
        released = model.encode(x)
    assert len(np.unique(released.bottleneck.numpy())) <= 4
    assert len(np.unique(clean.bottleneck.numpy())) > 4
    for a, b in zip(clean.indices, released.indices, strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="levels"):
        LatentNoise(levels=1)


def test_obfuscation_mapping_is_seeded_and_not_bijective():
    from inversion_audit.defences.obfuscation import (
        ObfuscationConfig,
        intensity_mapping,
    )

    lut = intensity_mapping(7, bins=64, levels=8)
    assert np.array_equal(lut, intensity_mapping(7, bins=64, levels=8))
    assert not np.array_equal(lut, intensity_mapping(8, bins=64, levels=8))
    assert len(np.unique(lut)) == 8 < 64
    ramp = np.linspace(0, 1, 4096, dtype=np.float32).reshape(16, 16, 16)
    out = lut[np.clip(np.floor(ramp * 64), 0, 63).astype(int)]  # each of 64 bins through lut
    assert out.shape == ramp.shape
    assert len(np.unique(out)) == 8 < len(np.unique(ramp))
    # intensity order is scrambled: the output is not a monotone function of the input
    assert np.any(np.diff(lut) < 0) and np.any(np.diff(lut) > 0)
    with pytest.raises(ConfigError, match="non-bijective"):
        ObfuscationConfig(levels=64, bins=64)


def test_vae_loss_falls_and_obfuscator_uses_the_mapping():
    from inversion_audit.defences.obfuscation import ObfuscationConfig, Obfuscator, train_vae

    images, _ = _tiny(n=3)
    config = ObfuscationConfig(levels=6, bins=32, vae_filters=4, vae_epochs=8, vae_lr=3e-3)
    vae, losses = train_vae(images, config)
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    out = Obfuscator(vae, config)(images[0])
    assert out.shape == images[0].shape
    assert set(np.unique(out)) <= set(Obfuscator(vae, config).lut.tolist())


@pytest.mark.gpu
def test_dp_sgd_latent_noise_and_obfuscation_on_cuda():
    import torch

    from inversion_audit.defences.latent_noise import LatentNoise, release_latents
    from inversion_audit.defences.obfuscation import ObfuscationConfig, Obfuscator, train_vae
    from inversion_audit.training import TargetConfig, train_target
    from inversion_audit.training.dp import with_dp

    images, labels = _tiny()
    config = with_dp(TargetConfig(depth=2, base_filters=4, epochs=1, batch_size=2), {})
    model, history = train_target(images, labels, config, device="cuda")
    assert next(model.parameters()).is_cuda and history.privacy["epsilon"] > 0

    x = torch.from_numpy(images[0])[None, None].cuda()
    with torch.no_grad():
        clean = model.encode(x).bottleneck
        release_latents(model, LatentNoise(sigma=0.5))
        released = model.encode(x).bottleneck
    assert released.is_cuda and not torch.equal(clean, released)

    obf_config = ObfuscationConfig(levels=4, bins=16, vae_filters=4, vae_epochs=1)
    vae, _ = train_vae(images, obf_config, device="cuda")
    out = Obfuscator(vae, obf_config).tensor(x)
    assert out.is_cuda and len(torch.unique(out)) <= 4


def test_vae_weights_round_trip_with_a_hash_checked_sidecar(tmp_path):
    import json

    import torch
    from safetensors.torch import save_file

    from inversion_audit.defences.obfuscation import ObfuscationConfig, train_vae
    from inversion_audit.defences.vae_io import VAE_FORMAT, load_vae, save_vae
    from inversion_audit.errors import CheckpointError

    images, _ = _tiny(n=2)
    config = ObfuscationConfig(vae_filters=2, vae_latent=2, vae_epochs=1, seed=3)
    vae, _ = train_vae(images, config)
    weights, sidecar = save_vae(tmp_path / "vae", vae, config)
    meta = json.loads(sidecar.read_text())
    assert meta["format"] == VAE_FORMAT and meta["weights_file"] == weights.name
    assert meta["arch_args"] == {"vae_filters": 2, "vae_latent": 2}
    assert "levels" not in meta["settings"] and meta["settings"]["seed"] == 3
    # one VAE serves every strength: another levels/bins loads it
    loaded = load_vae(tmp_path / "vae", ObfuscationConfig(vae_filters=2, vae_latent=2, levels=4))
    for name, tensor in vae.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name])

    with pytest.raises(CheckpointError, match="vae_filters"):
        load_vae(tmp_path / "vae", ObfuscationConfig(vae_filters=4, vae_latent=2))
    # weights changed after the sidecar was written: refused by the hash
    state = {k: v + 1 for k, v in vae.state_dict().items()}
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match="hash"):
        load_vae(weights, config)
    # a sidecar from before the hash check (flat settings) is refused, naming the file
    sidecar.write_text(json.dumps({"seed": 3, "vae_filters": 2, "vae_latent": 2}))
    with pytest.raises(CheckpointError, match="without a weights hash"):
        load_vae(tmp_path / "vae", config)
    sidecar.unlink()
    with pytest.raises(CheckpointError, match="sidecar vae.json is missing"):
        load_vae(tmp_path / "vae", config)
