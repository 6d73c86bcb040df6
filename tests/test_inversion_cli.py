"""``train-inversion`` trained to convergence: the flags, what it prints, what its sidecar keeps."""

from __future__ import annotations

import json

import pytest

from inversion_audit.cli.main import main

COMMON = "--device cpu --threads 1 --quiet"


def run(command: str) -> int:
    return main(f"{command} {COMMON}".split())


@pytest.fixture
def target_checkpoint(tmp_path):
    """A tiny untrained U-Net checkpoint recording 32^3 preprocessing without N4."""
    import torch

    from inversion_audit.checkpoints import save_checkpoint
    from inversion_audit.data import PreprocessConfig
    from inversion_audit.models import build_target_network

    torch.manual_seed(0)
    target = build_target_network("unet", n_classes=2, depth=2, base_filters=8)
    pre = PreprocessConfig(shape=(32, 32, 32), bias_correction=False, divisible_by=4)
    weights, _ = save_checkpoint(tmp_path / "target", target, {"preprocess": pre.to_dict()})
    return weights


def test_train_inversion_to_convergence_prints_and_records_it(
    tiny_cohort, tmp_path, target_checkpoint, capsys
):
    out = tmp_path / "inv"
    code = run(
        f"train-inversion --target {target_checkpoint} --cohort {tiny_cohort} --out {out} "
        "--epochs 30 --batch-size 2 --lr 0.03 --validation-fraction 0.34 --patience 2 "
        "--min-delta 0.001 --lr-schedule plateau"
    )
    assert code == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "inversion.json").read_text())
    conv = record["convergence"]
    assert conv["stopped_by"] in ("plateau", "budget")
    assert f"stopped by {conv['stopped_by']} after {conv['epochs_run']}/30 epochs" in printed
    assert f"SSIM {conv['val_metrics']['ssim']:.3f}" in printed
    assert "on 2 held-out attack subject(s)" in printed
    assert (conv["n_val"], conv["n_train"], conv["budget_epochs"]) == (2, 4, 30)
    assert conv["validation_fraction"] == 0.34 and conv["lr_schedule"] == "plateau"
    assert len(conv["train_loss"]) == len(conv["val_loss"]) == conv["epochs_run"]
    assert conv["best_val_loss"] == conv["val_loss"][conv["best_epoch"]]
    assert set(conv["val_metrics"]) == {"ssim", "correlation"}


def test_train_inversion_without_a_split_says_so(tiny_cohort, tmp_path, target_checkpoint, capsys):
    out = tmp_path / "inv"
    code = run(
        f"train-inversion --target {target_checkpoint} --cohort {tiny_cohort} --out {out} "
        "--subjects sub00 sub01 --epochs 1 --batch-size 2"
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "stopped by budget after 1/1 epochs" in printed
    assert "no validation split" in printed
    conv = json.loads((out / "inversion.json").read_text())["convergence"]
    assert conv["n_val"] == 0 and conv["val_loss"] == [] and conv["val_metrics"] == {}


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--patience 3", "validation_fraction > 0"),
        ("--validation-fraction 1.5", "validation_fraction must be in"),
        ("--validation-fraction 0.5 --subjects sub00", "at least 2 attack subjects"),
    ],
)
def test_bad_convergence_flags_are_refused_before_anything_is_written(
    tiny_cohort, tmp_path, target_checkpoint, capsys, flags, message
):
    out = tmp_path / "inv"
    code = run(
        f"train-inversion --target {target_checkpoint} --cohort {tiny_cohort} --out {out} {flags}"
    )
    assert code != 0
    assert message in capsys.readouterr().err
    assert not out.exists()
