"""A decoder's ``convergence`` sidecar table: written, read back, checked, optional."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_blob_volume
from inversion_audit.errors import CheckpointError

torch = pytest.importorskip("torch")


def _trained(tmp_path, **kwargs):
    """A tiny target and a decoder trained against it, saved with its training metadata."""
    from inversion_audit.attack import InversionConfig, train_inversion
    from inversion_audit.checkpoints import save_checkpoint, training_metadata
    from inversion_audit.metrics import correlation, ssim
    from inversion_audit.models import build_target_network

    torch.manual_seed(0)
    target = build_target_network("unet", n_classes=2, depth=2, base_filters=8).eval()
    images = [make_blob_volume(shape=(16,) * 3, seed=i)[0] for i in range(5)]
    config = InversionConfig(epochs=3, batch_size=2, lr=1e-2, seed=2)

    def scores(rec, orig):
        return {"ssim": ssim(rec, orig, data_range=1.0), "correlation": correlation(rec, orig)}

    decoder, history = train_inversion(
        target, images, config, "cpu", validation_metrics=scores, **kwargs
    )
    meta = training_metadata(config, history, None, [f"s{i}" for i in range(5)])
    weights, sidecar = save_checkpoint(tmp_path / "inversion", decoder, meta)
    return target, history, weights, sidecar


def test_convergence_round_trips_through_the_sidecar(tmp_path):
    from inversion_audit.checkpoints import load_inversion, read_metadata

    target, history, weights, sidecar = _trained(
        tmp_path, validation_fraction=0.4, patience=5, lr_schedule="cosine"
    )
    conv = read_metadata(sidecar)["convergence"]
    assert conv == json.loads(json.dumps(history.convergence()))
    assert conv["stopped_by"] == "budget" and conv["epochs_run"] == conv["budget_epochs"] == 3
    assert conv["steps_run"] == history.steps and conv["n_val"] == 2 and conv["patience"] == 5
    assert conv["train_loss"] == history.epoch_loss and conv["val_loss"] == history.val_loss
    assert conv["lr"] == pytest.approx(history.lr) and conv["lr"][1] < conv["lr"][0]
    assert conv["best_val_loss"] == min(history.val_loss)
    assert conv["final_val_loss"] == history.val_loss[-1]
    assert -1 <= conv["val_metrics"]["ssim"] <= 1 and -1 <= conv["val_metrics"]["correlation"] <= 1
    decoder = load_inversion(weights, target=target)
    assert decoder.metadata["convergence"] == conv


def test_a_decoder_saved_before_convergence_was_recorded_still_loads(tmp_path):
    from inversion_audit.checkpoints import load_inversion, read_metadata

    target, _, weights, sidecar = _trained(tmp_path)
    record = json.loads(sidecar.read_text())
    record.pop("convergence")
    sidecar.write_text(json.dumps(record))
    assert "convergence" not in read_metadata(sidecar)
    assert load_inversion(weights, target=target).metadata.get("convergence") is None


def test_non_finite_losses_are_recorded_as_null():
    from inversion_audit.attack.history import InversionHistory

    h = InversionHistory("inversion", {}, "cpu", 4, epoch_loss=[1.0, float("nan")])
    h.val_loss, h.best_epoch, h.val_metrics = [float("inf"), 0.5], 1, {"correlation": np.nan}
    conv = h.convergence()
    assert conv["train_loss"] == [1.0, None] and conv["val_loss"] == [None, 0.5]
    assert conv["best_val_loss"] == 0.5 and conv["val_metrics"] == {"correlation": None}


@pytest.mark.parametrize(
    "change, key",
    [
        ({"stopped_by": "cancel"}, "convergence.stopped_by"),
        ({"lr_schedule": "exponential"}, "convergence.lr_schedule"),
        ({"epochs_run": -1}, "convergence.epochs_run"),
        ({"steps_run": 1.5}, "convergence.steps_run"),
        ({"patience": True}, "convergence.patience"),
        ({"train_loss": "falling"}, "convergence.train_loss"),
        ({"val_loss": [0.1, "x"]}, r"convergence.val_loss\[1\]"),
        ({"lr": [1e-3] * 100_001}, "convergence.lr"),
        ({"best_val_loss": "low"}, "convergence.best_val_loss"),
        ({"min_delta": -1.0}, "convergence.min_delta"),
        ({"validation_fraction": 1.0}, "convergence.validation_fraction"),
        ({"val_metrics": {"ssim": 1.5}}, "convergence.val_metrics.ssim"),
        ({"val_metrics": {"Bad Name": 0.5}}, "convergence.val_metrics"),
        ({"val_metrics": [0.5]}, "convergence.val_metrics"),
    ],
)
def test_bad_convergence_fields_are_refused_naming_them(change, key):
    from inversion_audit.checkpoint_sidecar import SIDECAR_FORMAT, check_sidecar

    good = {
        "stopped_by": "plateau",
        "epochs_run": 3,
        "budget_epochs": 10,
        "steps_run": 6,
        "best_epoch": 1,
        "train_loss": [0.3, 0.2, 0.2],
        "val_loss": [0.4, 0.3, None],
        "lr": [1e-3, 1e-3, 5e-4],
        "final_val_loss": None,
        "best_val_loss": 0.3,
        "validation_fraction": 0.2,
        "n_train": 8,
        "n_val": 2,
        "patience": 1,
        "min_delta": 0.0,
        "lr_schedule": "plateau",
        "val_metrics": {"ssim": 0.8, "correlation": 0.9},
    }
    meta = {
        "format": SIDECAR_FORMAT,
        "kind": "inversion",
        "architecture": "inversion",
        "arch_args": {
            "target_arch": "unet",
            "target_args": {
                "n_classes": 2,
                "depth": 2,
                "base_filters": 8,
                "kernel_size": 3,
                "pool_size": 2,
            },
            "threat_model": "bottleneck",
        },
    }
    check_sidecar({**meta, "convergence": good}, "x.json")
    with pytest.raises(CheckpointError, match=f"x.json: {key}"):
        check_sidecar({**meta, "convergence": {**good, **change}}, "x.json")
    with pytest.raises(CheckpointError, match="convergence must be a table"):
        check_sidecar({**meta, "convergence": [good]}, "x.json")
