"""``train-target``, ``train-inversion`` and ``reconstruct`` on the tiny cohort."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from inversion_audit.cli.main import main
from inversion_audit.io import ids_hash

COMMON = "--device cpu --threads 1 --quiet"


def run(command: str) -> int:
    """Run the CLI on a command line (test paths hold no spaces)."""
    return main(f"{command} {COMMON}".split())


@pytest.mark.slow
def test_train_target_inversion_and_reconstruct(tiny_cohort, tmp_path, capsys):
    out = tmp_path / "run"
    config = tmp_path / "fold.toml"
    config.write_text(
        '[target]\ndepth = 2\nbase_filters = 4\nepochs = 1\nbatch_size = 2\nlabel_map = [["1"], ["2-4"]]\n'
        "[inversion]\nepochs = 1\nbatch_size = 2\n"
        "[preprocess]\nshape = [32, 32, 32]\n"
    )
    code = run(
        f"train-target --arch segnet --cohort {tiny_cohort} --subjects sub00,sub01 --out {out} "
        f"--config {config} --seed 5 --skull-strip labels"
    )
    assert code == 0
    record = json.loads((out / "target.json").read_text())
    assert record["architecture"] == "segnet" and record["seed"] == 5
    assert record["arch_args"]["n_classes"] == 3
    assert record["label_map"] == {"1": 1, "2": 2, "3": 2, "4": 2}
    assert record["preprocess"]["skull_strip"] == "labels"
    assert record["preprocess"]["shape"] == [32, 32, 32]
    assert record["preprocess"]["bias_correction"] is True  # N4 is on unless turned off
    # the sidecar: epochs and final losses of this run, a hash of the private ids, never the ids
    assert record["epochs"] == 1 and record["epochs_run"] == 1
    assert np.isfinite(record["final_losses"]["train"])
    assert record["train_ids_hash"] == ids_hash(["sub00", "sub01"])
    assert "sub00" not in (out / "target.json").read_text()

    code = run(
        f"train-inversion --target {out / 'target.safetensors'} --cohort {tiny_cohort} "
        f"--subjects sub02 sub03 --out {out} --config {config} --threat-model bottleneck+skips"
    )
    assert code == 0
    inv = json.loads((out / "inversion.json").read_text())
    assert inv["kind"] == "inversion" and inv["threat_model"] == "bottleneck+skips"
    assert inv["preprocess"] == record["preprocess"] and inv["n_train"] == 2
    assert inv["train_ids_hash"] == ids_hash(["sub02", "sub03"])
    assert "sub02" not in (out / "inversion.json").read_text()

    recon = tmp_path / "recon"
    code = run(
        f"reconstruct --target {out / 'target.safetensors'} --inversion {out / 'inversion'} "
        f"--cohort {tiny_cohort} --subjects sub00 --out {recon}"
    )
    assert code == 0
    source = nib.load(tiny_cohort / "sub00_T1.nii.gz")
    written = nib.load(recon / "sub00_recon.nii.gz")
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    assert nib.load(recon / "sub00_recon_pre.nii.gz").shape == (32, 32, 32)
    assert "wrote 2 reconstructions" in capsys.readouterr().out


def test_bad_inputs_fail_with_messages_naming_them(tiny_cohort, tmp_path, capsys):
    missing = tmp_path / "nope.safetensors"
    code = run(f"train-inversion --target {missing} --cohort {tiny_cohort} --out {tmp_path}")
    assert code == 1
    assert "nope.json is missing" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[target]\nfilterz = 8\n")
    code = run(f"train-target --cohort {tiny_cohort} --out {tmp_path} --config {bad}")
    assert code == 1
    assert "filterz" in capsys.readouterr().err


# ---- external targets: every source a study's [model] accepts ---------------------------------

#: the tiny cohort as the external models below take it: 2 mm, no N4
EXTERNAL = "--spacing 2 --no-bias-correction --epochs 1 --batch-size 2 --lr 0.003"


def _recon_grids(tiny_cohort, recon, sid="sub00"):
    """The reconstruction on the subject's grid and on the preprocessed grid."""
    source = nib.load(tiny_cohort / f"{sid}_T1.nii.gz")
    written = nib.load(recon / f"{sid}_recon.nii.gz")
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    pre = nib.load(recon / f"{sid}_recon_pre.nii.gz")
    assert np.isfinite(pre.get_fdata()).all() and pre.get_fdata().std() > 0
    return pre


def test_bundle_train_inversion_then_reconstruct_and_refuse_another_model(
    tiny_cohort, tmp_path, capsys
):
    from test_external_models import TINY, write_bundle

    args = {**TINY["SegResNet"], "norm": ["GROUP", {"num_groups": 2}]}
    bundle = write_bundle(tmp_path, {"_target_": "SegResNet", **args})
    out = tmp_path / "attack"
    code = run(
        f"train-inversion --target {bundle} --cohort {tiny_cohort} --subjects sub02,sub03 "
        f"--out {out} {EXTERNAL}"
    )
    assert code == 0, capsys.readouterr().err
    assert "against bundle target" in capsys.readouterr().out
    inv = json.loads((out / "inversion.json").read_text())
    target_args = inv["arch_args"]["target_args"]
    assert inv["arch_args"]["target_arch"] == "external" and target_args["source"] == "bundle"
    assert target_args["network"] == "SegResNet" and inv["external_model"]["grid"] == [32, 32, 32]
    assert inv["preprocess"]["shape"] == [32, 32, 32]  # the bundle's own grid
    assert inv["train_ids_hash"] == ids_hash(["sub02", "sub03"])

    recon = tmp_path / "recon"
    code = run(
        f"reconstruct --target {bundle} --inversion {out / 'inversion.safetensors'} "
        f"--cohort {tiny_cohort} --subjects sub00 sub01 --out {recon}"
    )
    assert code == 0, capsys.readouterr().err
    assert _recon_grids(tiny_cohort, recon).shape == (32, 32, 32)
    assert json.loads((recon / "reconstruct.json").read_text())["done"] == ["sub00", "sub01"]

    # the same bundle with other weights: refused before anything is written
    import shutil

    import torch
    from monai.networks import nets

    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    torch.manual_seed(9)
    torch.save(
        {"model": nets.SegResNet(**TINY["SegResNet"]).state_dict()}, other / "models" / "model.pt"
    )
    refused = tmp_path / "refused"
    capsys.readouterr()
    code = run(
        f"reconstruct --target {other} --inversion {out / 'inversion.safetensors'} "
        f"--cohort {tiny_cohort} --subjects sub00 --out {refused}"
    )
    assert code == 1 and not refused.exists()
    err = capsys.readouterr().err
    assert str(other) in err and "weights_sha256" in err
    # a paper checkpoint's flags on a bundle: refused, naming the flag
    code = run(f"train-inversion --target {bundle} --fold 1 --cohort {tiny_cohort} --out {refused}")
    assert code == 1 and "fold applies to nnU-Net folders only" in capsys.readouterr().err
    assert not refused.exists()


def test_nnunet_folder_train_inversion_then_reconstruct_on_its_plans_grid(
    tiny_cohort, tmp_path, capsys
):
    from test_external_models import write_nnunet

    root, _ = write_nnunet(tmp_path)
    out = tmp_path / "attack"
    code = run(
        f"train-inversion --target {root} --fold 0 --cohort {tiny_cohort} --subjects sub02 sub03 "
        f"--out {out} {EXTERNAL} --skull-strip labels"
    )
    assert code == 0, capsys.readouterr().err
    inv = json.loads((out / "inversion.json").read_text())
    assert inv["arch_args"]["target_args"]["source"] == "nnunet"
    assert inv["arch_args"]["target_args"]["fold"] == 0
    # the plans' spacing and patch replace the flags'; the skull stripping is the project's
    assert inv["preprocess"]["spacing"] == [2.0, 2.0, 3.0]
    assert inv["preprocess"]["skull_strip"] == "labels"

    recon = tmp_path / "recon"
    code = run(
        f"reconstruct --target {root} --inversion {out / 'inversion'} --cohort {tiny_cohort} "
        f"--subjects sub00 --out {recon}"
    )
    assert code == 0, capsys.readouterr().err
    pre = _recon_grids(tiny_cohort, recon)
    assert pre.shape == (32, 32, 16)  # (x, y, z) of the (z, y, x) patch [16, 32, 32]
    np.testing.assert_allclose(np.abs(np.diag(pre.affine)[:3]), [2.0, 2.0, 3.0], atol=1e-4)
    # another fold than the decoder's: refused, naming it
    code = run(
        f"reconstruct --target {root} --fold all --inversion {out / 'inversion'} "
        f"--cohort {tiny_cohort} --subjects sub00 --out {tmp_path / 'refused'}"
    )
    assert code == 1 and "trained against fold 0, not 'all'" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_monai_weights_train_inversion_then_reconstruct(tiny_cohort, tmp_path, capsys):
    from test_external_models import TINY, save_monai

    _, weights = save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    net_args = tmp_path / "net.json"
    net_args.write_text(json.dumps(TINY["BasicUNet"]))
    out = tmp_path / "attack"
    # without --network the weights are not a checkpoint: refused, saying what is missing
    code = run(f"train-inversion --target {weights} --cohort {tiny_cohort} --out {out}")
    assert code == 1 and "--network" in capsys.readouterr().err and not out.exists()
    code = run(
        f"train-inversion --target {weights} --network BasicUNet --network-args {net_args} "
        f"--cohort {tiny_cohort} --subjects sub02,sub03 --out {out} {EXTERNAL}"
    )
    assert code == 0, capsys.readouterr().err
    inv = json.loads((out / "inversion.json").read_text())
    target_args = inv["arch_args"]["target_args"]
    assert target_args["source"] == "monai" and target_args["network"] == "BasicUNet"
    assert target_args["network_args"]["features"] == [4, 4, 8, 8, 16, 4]
    # no --shape: the grid that holds every subject, divisible by 16
    assert inv["preprocess"]["shape"] == [32, 32, 32] == target_args["grid"]

    recon = tmp_path / "recon"
    code = run(
        f"reconstruct --target {weights} --inversion {out / 'inversion.safetensors'} "
        f"--cohort {tiny_cohort} --subjects sub00 --out {recon}"
    )
    assert code == 0, capsys.readouterr().err
    assert _recon_grids(tiny_cohort, recon).shape == (32, 32, 32)
    code = run(
        f"reconstruct --target {weights} --network UNet --inversion {out / 'inversion.safetensors'} "
        f"--cohort {tiny_cohort} --subjects sub00 --out {tmp_path / 'refused'}"
    )
    assert code == 1 and "not 'UNet'" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_network_args_must_be_literal_json(tiny_cohort, tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"\0" * 8)
    for given, named in (
        ("{not-json", "--network-args: not a JSON object"),
        ("[1,2]", "expected a JSON object, got list"),
        ('{"features":"$__import__(1)"}', "--network-args.features"),
    ):
        code = main(
            ["train-inversion", "--target", str(weights), "--network", "BasicUNet",
             "--network-args", given, "--cohort", str(tiny_cohort), "--out",
             str(tmp_path / "out"), *COMMON.split()]
        )  # fmt: skip
        assert code == 1 and named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_external_model_refused_after_the_grid_leaves_cache_and_out_unchanged(
    tiny_cohort, tmp_path, capsys
):
    """Validate, then write: the common grid is computed (held, not cached) before the model
    loads; a model that then fails to load leaves the cache and --out as they were."""
    import os
    from pathlib import Path

    from test_external_models import TINY, save_monai

    _, weights = save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    cache = Path(os.environ["INVERSION_AUDIT_CACHE"])
    before = sorted(p.relative_to(cache) for p in cache.rglob("*")) if cache.exists() else []
    out = tmp_path / "out"
    args = json.dumps({**TINY["BasicUNet"], "features": [4, 4, 8, 8, 16, 8]})  # not its weights
    code = main(
        ["train-inversion", "--target", str(weights), "--network", "BasicUNet",
         "--network-args", args, "--cohort", str(tiny_cohort), "--out", str(out),
         "--spacing", "2", "--no-bias-correction", *COMMON.split()]
    )  # fmt: skip
    assert code == 1 and "BasicUNet.safetensors" in capsys.readouterr().err
    after = sorted(p.relative_to(cache) for p in cache.rglob("*")) if cache.exists() else []
    assert after == before and not out.exists()
