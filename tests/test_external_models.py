"""External models: MONAI networks, MONAI bundles and nnU-Net v2 folders, audited without running their code."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from conftest import make_blob_volume
from inversion_audit.attack import InversionConfig, reconstruct, train_inversion
from inversion_audit.errors import CheckpointError, ConfigError
from inversion_audit.models.external import load_bundle, load_external, load_monai, load_nnunet

TINY = {
    "UNet": dict(
        spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8, 16), strides=(2, 2)
    ),
    "BasicUNet": dict(spatial_dims=3, in_channels=1, out_channels=2, features=(4, 4, 8, 8, 16, 4)),
    "SegResNet": dict(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        init_filters=4,
        blocks_down=(1, 1, 1, 1),
        blocks_up=(1, 1, 1),
        norm=("GROUP", {"num_groups": 2}),
    ),
    "DynUNet": dict(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        kernel_size=[3, 3, 3],
        strides=[1, 2, 2],
        upsample_kernel_size=[2, 2],
        filters=[4, 8, 16],
    ),
    "AttentionUnet": dict(
        spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8, 16), strides=(2, 2)
    ),
    "SwinUNETR": dict(
        in_channels=1,
        out_channels=2,
        feature_size=12,
        depths=(1, 1, 1, 1),
        num_heads=(1, 1, 1, 1),
        window_size=4,
    ),
}
#: SwinUNETR downsamples by 32 and instance-normalises there: 64^3 is its smallest grid
GRIDS = {"SwinUNETR": (64, 64, 64)}


def _innermost(module: nn.Module, cls: type) -> nn.Module:
    """The ``submodule`` of the innermost ``cls`` (MONAI UNet SkipConnection / AttentionLayer)."""
    found = [m for m in module.modules() if isinstance(m, cls)]
    inner = [m for m in found if not any(isinstance(s, cls) for s in m.submodule.modules())]
    assert len(inner) == 1
    return inner[0].submodule


def expected_module(net: nn.Module) -> nn.Module:
    """The bottleneck module per MODELS.md's table, read from the network's structure."""
    from monai.networks.layers.simplelayers import SkipConnection
    from monai.networks.nets.attentionunet import AttentionLayer

    name = type(net).__name__
    if name == "UNet":
        return _innermost(net.model, SkipConnection)
    if name == "AttentionUnet":
        return _innermost(net.model, AttentionLayer)
    return {
        "BasicUNet": lambda: net.down_4,
        "SegResNet": lambda: net.down_layers[-1],
        "DynUNet": lambda: net.bottleneck,
        "SwinUNETR": lambda: net.encoder10,
        "PlainConvUNet": lambda: net.encoder.stages[-1],
    }[name]()


def save_monai(tmp_path, name: str, args: dict, suffix: str = ".safetensors", seed: int = 0):
    """A MONAI network built directly with MONAI, its weights written the way users save them."""
    from monai.networks import nets
    from safetensors.torch import save_model

    torch.manual_seed(seed)
    net = getattr(nets, name)(**args).eval()
    path = tmp_path / f"{name}{suffix}"
    if suffix == ".safetensors":
        save_model(net, str(path))  # safetensors' way; tied tensors (DynUNet) are kept once
    else:
        torch.save({"model": net.state_dict(), "epoch": 3}, path)
    return net, path


def blob_images(grid, n=4):
    if grid == (32, 32, 32):
        return [make_blob_volume(grid, seed=k)[0] for k in range(n)]
    return [make_blob_volume(grid, seed=k, n_blobs=3)[0] for k in range(n)]


def check_attack(model, grid, epochs=4):
    """The decoder's loss falls within a few steps; the reconstruction lies on the input grid."""
    target = model.target()
    images = blob_images(grid)
    config = InversionConfig(epochs=epochs, batch_size=2, lr=3e-3, seed=0)
    decoder, history = train_inversion(target, images, config, device="cpu")
    assert history.epoch_loss[-1] < history.epoch_loss[0]
    out = reconstruct(target, decoder, images[0], device="cpu")
    assert out.shape == images[0].shape and out.dtype == np.float32
    return target, decoder


@pytest.mark.slow
@pytest.mark.parametrize("name", ["UNet", "BasicUNet", "SegResNet", "DynUNet", "AttentionUnet"])
def test_monai_family_latent_and_attack(tmp_path, name):
    net, path = save_monai(tmp_path, name, TINY[name], ".pt" if name == "UNet" else ".safetensors")
    model = load_monai(
        path, f"monai.networks.nets.{name}" if name == "DynUNet" else name, TINY[name]
    )
    names = {id(m): n for n, m in net.named_modules()}
    assert model.taps.bottleneck == names[id(expected_module(net))]
    # the tapped tensor is the expected module's own output (reference: a hook on MONAI's module)
    x = torch.from_numpy(blob_images((32, 32, 32), 1)[0])[None, None]
    seen = []
    handle = expected_module(net).register_forward_hook(lambda m, a, o: seen.append(o.clone()))
    with torch.no_grad():
        net(x)
    handle.remove()
    with torch.no_grad():
        latent = model.target().encode(x)
    torch.testing.assert_close(latent.bottleneck, seen[0])
    assert tuple(latent.bottleneck.shape[1:]) == model.taps.bottleneck_shape
    check_attack(model, (32, 32, 32))


def test_segresnet_latent_is_its_encode(tmp_path):
    net, path = save_monai(tmp_path, "SegResNet", TINY["SegResNet"])
    model = load_monai(path, "SegResNet", TINY["SegResNet"])
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        bottleneck, downs = net.encode(x)
        latent = model.target().encode(x)
    torch.testing.assert_close(latent.bottleneck, bottleneck)
    # skips: the encoder features the decoder receives (all but the deepest), finest first
    assert len(latent.skips) == len(downs) - 1
    for tapped, ref in zip(latent.skips, downs[:-1], strict=True):
        torch.testing.assert_close(tapped, ref)


@pytest.mark.slow
def test_swinunetr_latent_and_attack(tmp_path):
    net, path = save_monai(tmp_path, "SwinUNETR", TINY["SwinUNETR"])
    model = load_external(
        "monai", path, network="SwinUNETR", network_args=TINY["SwinUNETR"], grid=GRIDS["SwinUNETR"]
    )
    assert model.taps.bottleneck == "encoder10" and expected_module(net) is net.encoder10
    assert model.taps.bottleneck_shape[1:] == (2, 2, 2)  # 1/32 of 64
    check_attack(model, GRIDS["SwinUNETR"], epochs=3)


@pytest.mark.slow
def test_configured_module_path_and_bad_path(tmp_path):
    net, path = save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    model = load_monai(path, "BasicUNet", TINY["BasicUNet"], latent="down_3")
    assert model.taps.bottleneck == "down_3" and model.taps.bottleneck_shape == (8, 4, 4, 4)
    # a module without convolutions of its own (normalisation + activation) may be named too
    adn = load_monai(path, "BasicUNet", TINY["BasicUNet"], latent="down_3.convs.conv_1.adn")
    assert adn.taps.bottleneck == "down_3.convs.conv_1.adn"
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            adn.target().encode(x).bottleneck, model.target().encode(x).bottleneck
        )
    with pytest.raises(ConfigError, match="down_9"):
        load_monai(path, "BasicUNet", TINY["BasicUNet"], latent="down_9")
    with pytest.raises(ConfigError, match="not a module path"):
        load_monai(path, "BasicUNet", TINY["BasicUNet"], latent="__class__.__init__()")


def test_network_outside_allowlist_and_non_literal_args(tmp_path):
    _, path = save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    with pytest.raises(ConfigError, match="ViT"):
        load_monai(path, "ViT", {})
    with pytest.raises(ConfigError, match="Python expression"):
        load_monai(path, "BasicUNet", {**TINY["BasicUNet"], "features": "$[4] * 6"})


def test_grid_that_does_not_fit_is_a_clear_error(tmp_path):
    _, path = save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    with pytest.raises(ConfigError, match="grid"):
        load_monai(path, "BasicUNet", TINY["BasicUNet"], grid=(8, 8, 8))


# ---- MONAI bundles --------------------------------------------------------------------------


def write_bundle(tmp_path, network_def: dict | str, fmt: str = "json"):
    """A bundle folder as MONAI lays it out, with MONAI's usual ``$`` lines around network_def."""
    from monai.networks import nets

    root = tmp_path / "bundle"
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    config = {
        "imports": ["$import torch"],
        "device": "$torch.device('cpu')",
        "network_def": network_def,
        "network": "$@network_def.to(@device)",
    }
    if fmt == "json":
        (root / "configs" / "inference.json").write_text(json.dumps(config))
    else:
        import yaml

        (root / "configs" / "inference.yaml").write_text(yaml.safe_dump(config))
    meta = {"network_data_format": {"inputs": {"image": {"spatial_shape": [32, 32, 32]}}}}
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    torch.manual_seed(1)
    torch.save(
        {"model": nets.SegResNet(**TINY["SegResNet"]).state_dict()}, root / "models" / "model.pt"
    )
    return root


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_bundle_loads_as_plain_data(tmp_path, fmt):
    args = {**TINY["SegResNet"], "norm": ["GROUP", {"num_groups": 2}]}
    root = write_bundle(tmp_path, {"_target_": "SegResNet", **args}, fmt)
    model = load_bundle(root)
    assert model.source == "bundle" and model.name == "SegResNet"
    assert model.taps.bottleneck == "down_layers.3" and model.grid == (32, 32, 32)


def test_bundle_dollar_expression_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = f"$open({str(marker)!r}, 'w').close() or 8"
    root = write_bundle(tmp_path, {"_target_": "SegResNet", "init_filters": evil})
    with pytest.raises(ConfigError) as err:
        load_bundle(root)
    assert "inference.json" in str(err.value) and "network_def.init_filters" in str(err.value)
    assert not marker.exists()
    # the whole network_def as an expression
    (root / "configs" / "inference.json").write_text(
        json.dumps({"network_def": f"$open({str(marker)!r}, 'w')"})
    )
    with pytest.raises(ConfigError, match="network_def"):
        load_bundle(root)
    assert not marker.exists()


def test_bundle_reference_and_target_outside_allowlist(tmp_path):
    root = write_bundle(tmp_path, {"_target_": "SegResNet", "in_channels": "@num_channels"})
    with pytest.raises(ConfigError, match=r"network_def\.in_channels.*reference"):
        load_bundle(root)
    root2 = write_bundle(tmp_path / "b", {"_target_": "torch.nn.Identity"})
    with pytest.raises(ConfigError, match=r"inference\.json.*network_def\._target_"):
        load_bundle(root2)


# ---- nnU-Net v2 --------------------------------------------------------------------------------

NNUNET_ARCH = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "arch_kwargs": {
        "n_stages": 3,
        "features_per_stage": [4, 8, 16],
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3], [3, 3, 3], [3, 3, 3]],
        "strides": [[1, 1, 1], [2, 2, 2], [1, 2, 2]],
        "n_conv_per_stage": [2, 2, 2],
        "n_conv_per_stage_decoder": [2, 2],
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    },
    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
}


def write_nnunet(tmp_path, arch=None, evil_pickle=None):
    """A trained model folder in nnU-Net's own format; the network built with dynamic_network_architectures."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    root = tmp_path / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (root / "fold_0").mkdir(parents=True)
    plans = {
        "dataset_name": "Dataset001_Tiny",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [2.0, 2.0, 2.0],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": [16, 32, 32],
                "median_image_size_in_voxels": [90.0, 110.0, 90.0],
                "spacing": [3.0, 2.0, 2.0],
                "normalization_schemes": ["ZScoreNormalization"],
                "use_mask_for_norm": [True],
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "architecture": arch or NNUNET_ARCH,
                "batch_dice": False,
            }
        },
        "experiment_planner_used": "ExperimentPlanner",
        "foreground_intensity_properties_per_channel": {"0": {"mean": 0.5, "std": 0.2}},
    }
    dataset = {
        "channel_names": {"0": "T1"},
        "labels": {"background": 0, "csf": 1, "gm": 2},
        "numTraining": 10,
        "file_ending": ".nii.gz",
    }
    (root / "plans.json").write_text(json.dumps(plans, indent=2))
    (root / "dataset.json").write_text(json.dumps(dataset, indent=2))
    kw = dict(NNUNET_ARCH["arch_kwargs"])
    kw.update(conv_op=nn.Conv3d, norm_op=nn.InstanceNorm3d, nonlin=nn.LeakyReLU)
    torch.manual_seed(2)
    net = PlainConvUNet(input_channels=1, num_classes=3, deep_supervision=False, **kw)
    checkpoint = {
        "network_weights": evil_pickle if evil_pickle is not None else net.state_dict(),
        "optimizer_state": {"state": {}, "param_groups": [{"lr": np.float64(0.01)}]},
        "grad_scaler_state": None,
        "logging": {
            "train_losses": [np.float64(0.9), np.float64(0.7)],
            "ema_fg_dice": [np.float32(0.1), np.float32(0.3)],
            "epoch_start_timestamps": [np.float64(1.7e9)],
        },
        "_best_ema": np.float64(0.3),
        "current_epoch": 2,
        "init_args": {
            "plans": plans,
            "configuration": "3d_fullres",
            "fold": 0,
            "dataset_json": dataset,
        },
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }
    torch.save(checkpoint, root / "fold_0" / "checkpoint_final.pth")
    return root, net


@pytest.mark.slow
def test_nnunet_folder_latent_preprocessing_and_attack(tmp_path):
    root, net = write_nnunet(tmp_path)
    model = load_nnunet(root, fold=0)
    names = {id(m): n for n, m in net.named_modules()}
    assert model.taps.bottleneck == names[id(expected_module(net))] == "encoder.stages.2"
    # SimpleITK (z, y, x) arrays: the project's (x, y, z) grid is the reversed patch size
    assert model.axes == (2, 1, 0) and model.grid == (32, 32, 16)
    assert model.preprocess.spacing == (2.0, 2.0, 3.0) and model.preprocess.shape == (32, 32, 16)
    assert model.normalization == "zscore-mask" and any(
        "patch" in d for d in model.preprocess_differences
    )
    # reference: nnU-Net's encoder returns every stage output; the taps are its last and the skips
    x = torch.rand(1, 1, 32, 32, 16) * (torch.rand(1, 1, 32, 32, 16) > 0.3)
    target = model.target()
    with torch.no_grad():
        stages = net.eval().encoder(target.model_input(x))
        latent = target.encode(x)
    torch.testing.assert_close(latent.bottleneck, stages[-1])
    for tapped, ref in zip(latent.skips, stages[:-1], strict=True):
        torch.testing.assert_close(tapped, ref)
    # the model input is nnU-Net's z-score inside the nonzero mask, in (z, y, x) order
    xs = x[0, 0].numpy().transpose(2, 1, 0)
    ref = np.zeros_like(xs)
    m = xs != 0
    ref[m] = (xs[m] - xs[m].mean()) / xs[m].std()
    np.testing.assert_allclose(target.model_input(x)[0, 0].numpy(), ref, atol=1e-4)
    grid = model.grid
    images = [make_blob_volume(grid, seed=k, n_blobs=3)[0] for k in range(4)]
    for threat in ("bottleneck", "bottleneck+skips"):
        config = InversionConfig(threat_model=threat, epochs=4, batch_size=2, lr=3e-3)
        decoder, history = train_inversion(target, images, config, device="cpu")
        assert history.epoch_loss[-1] < history.epoch_loss[0]
        assert reconstruct(target, decoder, images[1], device="cpu").shape == grid


def test_nnunet_class_outside_allowlist_is_refused_before_import(tmp_path):
    import sys

    arch = {**NNUNET_ARCH, "network_class_name": "xmlrpc.server.SimpleXMLRPCServer"}
    root, _ = write_nnunet(tmp_path, arch)
    sys.modules.pop("xmlrpc.server", None)
    with pytest.raises(ConfigError, match=r"plans\.json.*network_class_name"):
        load_nnunet(root)
    assert "xmlrpc.server" not in sys.modules
    kwargs = {**NNUNET_ARCH["arch_kwargs"], "nonlin": "os.system"}
    root2, _ = write_nnunet(tmp_path / "b", {**NNUNET_ARCH, "arch_kwargs": kwargs})
    with pytest.raises(ConfigError, match=r"arch_kwargs\.nonlin"):
        load_nnunet(root2)


class _MakesAFile:
    """Unpickling this would create a file: what a malicious checkpoint does."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": _MakesAFile(marker)}}, path, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(CheckpointError) as err:
        load_monai(path, "BasicUNet", TINY["BasicUNet"])
    assert not marker.exists()
    assert "weights_only=False" not in str(err.value) and "refused" in str(err.value)
    root, _ = write_nnunet(tmp_path / "nn", evil_pickle={"w": _MakesAFile(marker)})
    with pytest.raises(CheckpointError) as err:
        load_nnunet(root)
    assert not marker.exists() and "weights_only=False" not in str(err.value)


@pytest.mark.slow
def test_decoder_sidecar_records_source_module_shape_and_hash(tmp_path):
    from inversion_audit.checkpoints import load_inversion, read_metadata, save_checkpoint
    from inversion_audit.io import file_hash

    _, path = save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    model = load_monai(path, "BasicUNet", TINY["BasicUNet"])
    target, decoder = check_attack(model, (32, 32, 32), epochs=2)
    save_checkpoint(tmp_path / "inv" / "inversion", decoder, {"threat_model": "bottleneck"})
    meta = read_metadata(tmp_path / "inv" / "inversion")
    recorded = meta["arch_args"]["target_args"]
    assert recorded["source"] == "monai" and recorded["network"] == "BasicUNet"
    assert recorded["latent"]["module"] == "down_4" and recorded["latent"]["shape"] == [16, 2, 2, 2]
    assert recorded["weights_sha256"] == file_hash(path)
    again = load_inversion(tmp_path / "inv" / "inversion", target=target)
    image = blob_images((32, 32, 32), 1)[0]
    np.testing.assert_allclose(
        reconstruct(target, again, image, device="cpu"),
        reconstruct(target, decoder, image, device="cpu"),
        atol=1e-6,
    )


@pytest.mark.gpu
def test_decoder_trains_on_cuda_with_amp(tmp_path):
    _, path = save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    model = load_monai(path, "BasicUNet", TINY["BasicUNet"])
    target = model.target()
    images = blob_images((32, 32, 32))
    for threat in ("bottleneck", "bottleneck+skips"):
        config = InversionConfig(threat_model=threat, epochs=6, batch_size=2, lr=3e-3)
        decoder, history = train_inversion(target, images, config, device="cuda")
        assert history.device.startswith("cuda")
        assert next(decoder.parameters()).is_cuda
        assert history.epoch_loss[-1] < history.epoch_loss[0]
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
            x = torch.from_numpy(images[0])[None, None].cuda(non_blocking=True)
            lat = target.encode(x).for_threat_model(threat)
        assert lat.bottleneck.dtype == torch.float16  # the encoder ran under AMP
        out = reconstruct(target, decoder, images[0], device="cuda")
        assert out.shape == images[0].shape and np.isfinite(out).all()


# ---- the study: [model] from the CLI -------------------------------------------------------------


def external_study_toml(tmp_path, members: list[str]) -> str:
    args = TINY["BasicUNet"]
    return f"""
variants = ["skull-stripped"]
threat_models = ["bottleneck"]

[study]
name = "external model"
seed = 0
device = "cpu"
threads = 1

[cohort]
path = "sample"
sample_n = 4

[folds]
n_folds = 2

[preprocess]
spacing = [6.0, 6.0, 6.0]
shape = [32, 32, 32]
divisible_by = 16
bias_correction = false

[inversion]
epochs = 2
batch_size = 2
lr = 0.01

[matching]
metrics = ["ssim", "correlation"]

[model]
source = "monai"
path = "BasicUNet.safetensors"
network = "BasicUNet"
network_args = {{ spatial_dims = 3, in_channels = 1, out_channels = 2, features = {list(args["features"])} }}
latent = "auto"
members = {json.dumps(members)}
"""


@pytest.mark.slow
def test_cli_run_audits_a_monai_model_on_the_sample_cohort(tmp_path, capsys):
    import csv

    from inversion_audit.cli.main import main

    save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    config = tmp_path / "audit.toml"
    config.write_text(external_study_toml(tmp_path, ["sub-000", "sub-002"]))
    out = tmp_path / "study"
    assert main(["run", str(config), "--out", str(out), "--plan"]) == 0
    assert "0 of 4 stages done" in capsys.readouterr().out  # preprocess, invert, reconstruct, score
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert main(["run", str(config), "--out", str(out), "--plan"]) == 0
    assert "4 of 4 stages done" in capsys.readouterr().out
    with open(out / "scores" / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ssim = [r for r in rows if r["metric"] == "ssim"]
    # the two members reconstructed, each scored against all four candidates
    assert {r["arch"] for r in rows} == {"external"}
    assert sorted({r["reconstruction_id"] for r in ssim}) == ["sub-000", "sub-002"]
    assert len(ssim) == 2 * 4
    assert (out / "rankings" / "external_skull-stripped_bottleneck.csv").exists()
    report_md = (out / "report.md").read_text()
    assert "BasicUNet" in report_md and "`down_4`" in report_md and "[16, 2, 2, 2]" in report_md
    meta = json.loads(next((out / "checkpoints").rglob("inversion.json")).read_text())
    assert meta["arch_args"]["target_args"]["latent"]["module"] == "down_4"


@pytest.mark.slow
def test_cli_run_names_a_member_missing_from_the_cohort(tmp_path, capsys):
    from inversion_audit.cli.main import main

    save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    config = tmp_path / "audit.toml"
    config.write_text(external_study_toml(tmp_path, ["sub-000", "IXI999-nobody"]))
    assert main(["run", str(config), "--out", str(tmp_path / "study"), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "model.members" in err and "IXI999-nobody" in err and "audit.toml" in err


@pytest.mark.slow
def test_cli_run_names_a_bad_latent_path_and_channels(tmp_path, capsys):
    from inversion_audit.cli.main import main

    config = tmp_path / "audit.toml"
    text = external_study_toml(tmp_path, ["sub-000"])
    save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    config.write_text(text.replace('latent = "auto"', 'latent = "down_4.nowhere"'))
    assert main(["run", str(config), "--out", str(tmp_path / "s1"), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "audit.toml" in err and "model.latent" in err and "nowhere" in err
    two = {**TINY["BasicUNet"], "in_channels": 2}
    from monai.networks.nets import BasicUNet
    from safetensors.torch import save_model

    save_model(BasicUNet(**two), str(tmp_path / "BasicUNet.safetensors"))
    config.write_text(text.replace("in_channels = 1", "in_channels = 2"))
    assert main(["run", str(config), "--out", str(tmp_path / "s2"), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "audit.toml" in err and "in_channels" in err and "BasicUNet.safetensors" in err


def test_model_table_is_validated_naming_the_key(tmp_path):
    from inversion_audit.study.model_source import parse_model_source, resolve_members

    base = {"source": "monai", "path": "w.safetensors", "network": "BasicUNet", "members": ["a"]}
    assert parse_model_source(base).network == "BasicUNet"
    assert parse_model_source({}) is None
    bad = [
        ({**base, "weights": "x"}, "model.weights"),
        ({**base, "source": "keras"}, "model.source"),
        ({k: v for k, v in base.items() if k != "network"}, "model.network"),
        ({**base, "fold": 1}, "model.fold"),
        ({**base, "members_file": "ids.txt"}, "exactly one of members"),
        ({**base, "members": ["a", "a"]}, "twice"),
        ({**base, "source": "bundle"}, "source = 'monai' only"),
    ]
    for data, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_model_source(data)
    # members from an nnU-Net splits_final.json: fold K's training cases
    splits = [{"train": ["a", "b"], "val": ["c"]}, {"train": ["c", "a"], "val": ["b"]}]
    (tmp_path / "splits_final.json").write_text(json.dumps(splits))
    (tmp_path / "ids.txt").write_text("# members\nb\n\nc\n")
    cfg = str(tmp_path / "study.toml")
    nn_source = parse_model_source(
        {"source": "nnunet", "path": "m", "fold": 1, "members_file": "splits_final.json"}
    )
    assert resolve_members(nn_source, ["a", "b", "c", "d"], cfg) == ("a", "c")
    txt = parse_model_source(
        {**{k: v for k, v in base.items() if k != "members"}, "members_file": "ids.txt"}
    )
    assert resolve_members(txt, ["a", "b", "c"], cfg) == ("b", "c")
    with pytest.raises(ConfigError, match=r"study\.toml: model\.members.*'zz'"):
        resolve_members(parse_model_source({**base, "members": ["a", "zz"]}), ["a", "b"], cfg)


@pytest.mark.slow
def test_cli_run_audits_an_nnunet_folder_with_its_own_preprocessing(tmp_path):
    import csv

    from inversion_audit.cli.main import main

    root, _ = write_nnunet(tmp_path)
    splits = [{"train": ["sub-001", "sub-003"], "val": ["sub-000", "sub-002"]}]
    (tmp_path / "splits_final.json").write_text(json.dumps(splits))
    text = external_study_toml(tmp_path, ["x"])
    model = text[text.index("[model]") :]
    text = text.replace(
        model,
        f'[model]\nsource = "nnunet"\npath = "{root.name}"\nfold = 0\n'
        'members_file = "splits_final.json"\n',
    )
    config = tmp_path / "audit.toml"
    config.write_text(text)
    out = tmp_path / "study"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    with open(out / "scores" / "scores.csv", newline="") as fh:
        ids = {r["reconstruction_id"] for r in csv.DictReader(fh)}
    assert ids == {"sub-001", "sub-003"}
    # the plans' grid and spacing replace the study's: (x, y, z) = reversed (z, y, x) patch
    from inversion_audit.io import read_volume

    rec = read_volume(
        out / "reconstructions" / "external_skull-stripped_bottleneck" / "sub-001_recon_pre.nii.gz"
    )
    assert rec.array.shape == (32, 32, 16)
    np.testing.assert_allclose(np.abs(np.diag(rec.affine)[:3]), [2.0, 2.0, 3.0], atol=1e-4)
    report_md = (out / "report.md").read_text()
    assert "PlainConvUNet" in report_md and "`encoder.stages.2`" in report_md
    assert "preprocessing differs" in report_md


# ---- rebuilding the model beside its decoder (napari's Reconstruct) ------------------------------


def _decoder_beside(tmp_path, model, epochs=1):
    from inversion_audit.checkpoints import save_checkpoint
    from inversion_audit.data import PreprocessConfig

    target = model.target()
    images = blob_images((32, 32, 32), 2)
    decoder, _ = train_inversion(target, images, InversionConfig(epochs=epochs), device="cpu")
    pre = PreprocessConfig(spacing=(2.0, 2.0, 2.0), shape=(32, 32, 32), bias_correction=False)
    save_checkpoint(tmp_path / "inv" / "inversion", decoder, {"preprocess": pre})
    return tmp_path / "inv" / "inversion.safetensors", decoder


def test_model_is_rebuilt_from_the_decoders_sidecar_and_checked(tmp_path):
    from inversion_audit.attack_pair import load_attack_pair

    _, path = save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    model = load_monai(path, "BasicUNet", TINY["BasicUNet"])
    inversion, decoder = _decoder_beside(tmp_path, model)
    pair = load_attack_pair(path, inversion)
    target, again, pre = pair.target, pair.decoder, pair.preprocess
    assert target.arch_args == model.target().arch_args and pre.shape == (32, 32, 32)
    image = blob_images((32, 32, 32), 1)[0]
    np.testing.assert_allclose(
        reconstruct(target, again, image, device="cpu"),
        reconstruct(model.target(), decoder, image, device="cpu"),
        atol=1e-6,
    )
    # other weights of the same network: refused, naming what differs
    (tmp_path / "o").mkdir()
    _, other = save_monai(tmp_path / "o", "BasicUNet", TINY["BasicUNet"], seed=5)
    with pytest.raises(CheckpointError, match="weights_sha256"):
        load_attack_pair(other, inversion)


def test_reconstruct_widget_runs_an_external_model(make_napari_viewer, qtbot, tmp_path):
    from gui_fakes import blob_image

    _, path = save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    inversion, _ = _decoder_beside(tmp_path, load_monai(path, "BasicUNet", TINY["BasicUNet"]))
    viewer = make_napari_viewer()
    viewer.add_image(blob_image((20, 22, 18), seed=3) * 900.0, name="T1", scale=(2.0, 2.0, 2.0))
    from inversion_audit.gui.review_panel import open_tab

    widget = open_tab(viewer, "Reconstruct")
    widget.target_edit.setText(str(path))
    widget.inversion_edit.setText(str(inversion))
    widget.device_combo.setCurrentText("cpu")
    widget.image_combo.choose("T1")
    job = widget.run()
    assert job is not None
    qtbot.waitUntil(lambda: not job.is_running, timeout=120000)
    assert job.error is None
    layer = viewer.layers["T1 reconstruction"]
    assert layer.data.shape == (20, 22, 18) and np.isfinite(layer.data).all()
