"""The attack pair's one loader: a target of any source, a decoder with the target it records."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from inversion_audit.attack_pair import (
    TargetSpec,
    load_attack_pair,
    load_target_any,
    model_stamp,
    target_problem,
    target_source,
)
from inversion_audit.data import PreprocessConfig
from inversion_audit.errors import CheckpointError, ConfigError

torch = pytest.importorskip("torch")

PRE = PreprocessConfig(spacing=(2.0, 2.0, 2.0), shape=(32, 32, 32), bias_correction=False)


def _paper_pair(folder, seed: int = 0):
    """An untrained tiny U-Net target and its decoder, saved as the CLI saves them."""
    from inversion_audit.attack import build_inversion_decoder
    from inversion_audit.checkpoints import save_checkpoint, state_hash
    from inversion_audit.models import build_target_network

    torch.manual_seed(seed)
    target = build_target_network("unet", n_classes=3, depth=2, base_filters=4).eval()
    decoder = build_inversion_decoder(target, "bottleneck")
    decoder.target_weights_sha256 = state_hash(target)
    save_checkpoint(folder / "target", target, {"preprocess": PRE})
    save_checkpoint(folder / "inversion", decoder, {"preprocess": PRE})
    return folder / "target.safetensors", folder / "inversion.safetensors"


def _monai_pair(tmp_path):
    """MONAI BasicUNet weights and an (untrained) decoder recorded against them."""
    from inversion_audit.attack import build_inversion_decoder
    from inversion_audit.checkpoints import save_checkpoint, state_hash
    from inversion_audit.models.external import load_monai
    from test_external_models import TINY, save_monai

    _, weights = save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    target = load_monai(weights, "BasicUNet", TINY["BasicUNet"], grid=(32, 32, 32)).target()
    decoder = build_inversion_decoder(target, "bottleneck")
    decoder.target_weights_sha256 = state_hash(target)
    save_checkpoint(tmp_path / "inv" / "inversion", decoder, {"preprocess": PRE})
    return weights, tmp_path / "inv" / "inversion.safetensors"


def test_sources_and_problems_are_told_from_the_path(tmp_path):
    (tmp_path / "bundle" / "configs").mkdir(parents=True)
    (tmp_path / "nnunet").mkdir()
    (tmp_path / "nnunet" / "plans.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    assert target_source(tmp_path / "bundle") == "bundle"
    assert target_source(tmp_path / "nnunet") == "nnunet"
    assert target_source(weights) == "checkpoint"
    assert target_source(weights, network="BasicUNet") == "monai"
    with pytest.raises(CheckpointError, match=r"empty: a folder that is neither"):
        target_source(tmp_path / "empty")
    assert target_problem(tmp_path / "bundle") is None and target_problem(weights) is None
    assert "not found" in target_problem(tmp_path / "nowhere.safetensors")
    assert "neither a MONAI bundle" in target_problem(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("x")
    assert "not a weights file" in target_problem(tmp_path / "notes.txt")


def test_options_a_source_does_not_take_are_refused(tmp_path):
    spec = TargetSpec(tmp_path / "w.safetensors", fold=1)
    with pytest.raises(ConfigError, match="fold applies to nnU-Net folders only"):
        spec.check_options("checkpoint")
    with pytest.raises(ConfigError, match="network_args are given without the network"):
        TargetSpec(tmp_path, network_args={"a": 1}).check_options("checkpoint")
    with pytest.raises(ConfigError, match="network applies to MONAI weights only"):
        TargetSpec(tmp_path, network="UNet").check_options("bundle")
    with pytest.raises(ConfigError, match="latent applies to external models"):
        TargetSpec(tmp_path, latent="down_4").check_options("checkpoint")


def test_paper_pair_loads_reading_each_sidecar_once(tmp_path, monkeypatch):
    import inversion_audit.io.weights_format as weights_format

    target, inversion = _paper_pair(tmp_path)
    reads: list[str] = []
    real = weights_format.read_json

    def counting(path, *args, **kwargs):
        reads.append(os.path.basename(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(weights_format, "read_json", counting)
    pair = load_attack_pair(target, inversion)
    assert sorted(reads) == ["inversion.json", "target.json"]
    assert pair.source == "checkpoint" and pair.device == "cpu"
    assert pair.preprocess == PRE and pair.target.arch == "unet"
    assert pair.decoder.threat_model == "bottleneck"


def test_a_decoder_refuses_other_target_weights_and_another_kind_of_target(tmp_path):
    target, inversion = _paper_pair(tmp_path / "a")
    other, _ = _paper_pair(tmp_path / "b", seed=3)
    with pytest.raises(
        CheckpointError,
        match=r"inversion\.safetensors: decoder was trained against different target weights",
    ):
        load_attack_pair(other, inversion)
    (tmp_path / "bundle" / "configs").mkdir(parents=True)
    with pytest.raises(
        CheckpointError,
        match=r"inversion\.safetensors: not a decoder trained against an external model, but .*bundle is a MONAI bundle folder",
    ):
        load_attack_pair(tmp_path / "bundle", inversion)
    with pytest.raises(ConfigError, match="fold applies to nnU-Net folders only"):
        load_attack_pair(TargetSpec(target, fold=2), inversion)
    # the decoder's preprocessing must be its target's
    meta = json.loads(inversion.with_suffix(".json").read_text())
    meta["preprocess"]["spacing"] = [3.0, 3.0, 3.0]
    inversion.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="preprocessing differs from its target's in spacing"):
        load_attack_pair(target, inversion)


@pytest.mark.slow
def test_external_pair_is_rebuilt_from_the_decoders_record(tmp_path):
    from test_external_models import TINY, save_monai

    weights, inversion = _monai_pair(tmp_path)
    pair = load_attack_pair(weights, inversion)  # no network given: the decoder records it
    assert pair.source == "monai" and pair.target.arch_args["network"] == "BasicUNet"
    assert pair.preprocess == PRE
    # options given must agree with the record
    agreeing = TargetSpec(weights, network="BasicUNet", network_args=TINY["BasicUNet"])
    assert load_attack_pair(agreeing, inversion).target.arch_args == pair.target.arch_args
    with pytest.raises(CheckpointError, match="trained against network 'BasicUNet', not 'UNet'"):
        load_attack_pair(TargetSpec(weights, network="UNet"), inversion)
    with pytest.raises(CheckpointError, match="network_args"):
        args = {**TINY["BasicUNet"], "out_channels": 3}
        load_attack_pair(TargetSpec(weights, network="BasicUNet", network_args=args), inversion)
    # a folder given for weights, and other weights of the same network
    (tmp_path / "bundle" / "configs").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"bundle: is a MONAI bundle folder, but the decoder"):
        load_attack_pair(tmp_path / "bundle", inversion)
    (tmp_path / "o").mkdir()
    _, other = save_monai(tmp_path / "o", "BasicUNet", TINY["BasicUNet"], seed=5)
    with pytest.raises(CheckpointError, match="weights_sha256"):
        load_attack_pair(other, inversion)


def test_load_target_any_takes_each_source_with_what_it_needs(tmp_path):
    from test_external_models import TINY, save_monai

    target, _ = _paper_pair(tmp_path)
    loaded = load_target_any(target)
    assert loaded.source == "checkpoint" and loaded.preprocess == PRE and loaded.record is None
    _, weights = save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    with pytest.raises(CheckpointError, match=r"BasicUNet\.safetensors: sidecar .*\(--network\)"):
        load_target_any(weights)
    spec = TargetSpec(weights, network="BasicUNet", network_args=TINY["BasicUNet"])
    unshaped = PreprocessConfig(spacing=2.0, bias_correction=False)
    with pytest.raises(ConfigError, match="need the input grid"):
        load_target_any(spec, unshaped)
    with pytest.raises(ConfigError, match="an external model needs the preprocessing"):
        load_target_any(spec)
    loaded = load_target_any(spec, PRE)
    assert loaded.source == "monai" and loaded.preprocess == PRE
    assert loaded.record["network"] == "BasicUNet" and loaded.record["grid"] == [32, 32, 32]


def test_bundle_takes_its_own_grid_and_nnunet_its_plans(tmp_path):
    from test_external_models import TINY, write_bundle, write_nnunet

    args = {**TINY["SegResNet"], "norm": ["GROUP", {"num_groups": 2}]}
    bundle = write_bundle(tmp_path, {"_target_": "SegResNet", **args})
    unshaped = PreprocessConfig(spacing=2.0, bias_correction=False, skull_strip="labels")
    loaded = load_target_any(bundle, unshaped)
    assert loaded.source == "bundle" and loaded.preprocess.shape == (32, 32, 32)
    shaped = PreprocessConfig(spacing=2.0, shape=(16, 16, 16), divisible_by=16)
    loaded = load_target_any(TargetSpec(bundle), shaped)  # a grid given replaces the bundle's
    assert loaded.preprocess.shape == (16, 16, 16) and loaded.record["grid"] == [16, 16, 16]
    root, _ = write_nnunet(tmp_path)
    loaded = load_target_any(TargetSpec(root, fold=0), unshaped)
    assert loaded.source == "nnunet" and loaded.preprocess.shape == (32, 32, 16)
    assert loaded.preprocess.spacing == (2.0, 2.0, 3.0)
    assert loaded.preprocess.skull_strip == "labels"  # the project's choice is kept


def test_model_stamp_follows_the_sidecar_and_a_folders_files(tmp_path):
    target, _ = _paper_pair(tmp_path)
    before = model_stamp(target)
    sidecar = target.with_suffix(".json")
    os.utime(sidecar, ns=(before + 10**9, before + 10**9))
    assert model_stamp(target) == before + 10**9
    (tmp_path / "bundle" / "models").mkdir(parents=True)
    shutil.copy(target, tmp_path / "bundle" / "models" / "model.safetensors")
    stamp = model_stamp(tmp_path / "bundle")
    os.utime(tmp_path / "bundle" / "models" / "model.safetensors", ns=(stamp + 5, stamp + 5))
    assert model_stamp(tmp_path / "bundle") == stamp + 5
    with pytest.raises(CheckpointError, match="not found"):
        model_stamp(tmp_path / "nowhere.safetensors")
