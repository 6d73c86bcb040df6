"""Checkpoints: safetensors + sidecar round trip, mismatch errors, refusal of code-running pickles."""

from __future__ import annotations

import json
import pickle

import pytest

from inversion_audit.errors import CheckpointError

torch = pytest.importorskip("torch")


def _target(arch="unet", filters=8, seed=0):
    from inversion_audit.models import build_target_network

    torch.manual_seed(seed)
    model = build_target_network(arch, n_classes=4, depth=2, base_filters=filters)
    # non-trivial BatchNorm statistics, so that buffers are round-tripped too
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 1, 32, 32, 32))
    return model.eval()


@pytest.mark.parametrize("arch", ["unet", "segnet"])
def test_target_round_trip_is_bit_for_bit(tmp_path, arch):
    from inversion_audit.checkpoints import load_target, save_checkpoint, training_metadata
    from inversion_audit.data import PreprocessConfig
    from inversion_audit.io import ids_hash
    from inversion_audit.training import TargetConfig

    model = _target(arch)
    model.label_map = {4: 1, 11: 2}
    pre = PreprocessConfig(shape=(32, 32, 32), intensity="nyul", nyul_landmarks=tuple(range(11)))
    meta = training_metadata(
        TargetConfig(arch=arch, seed=3), None, pre, train_ids=["secret01", "secret02"]
    )
    weights, sidecar = save_checkpoint(tmp_path / "fold0" / "target", model, meta)
    assert weights.name == "target.safetensors" and sidecar.name == "target.json"
    loaded = load_target(weights)
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.label_map == {4: 1, 11: 2}
    record = json.loads(sidecar.read_text())
    assert record["kind"] == "target" and record["architecture"] == arch
    assert record["arch_args"]["base_filters"] == 8
    assert {"torch", "monai", "inversion_audit"} <= set(record["versions"])
    assert tuple(record["preprocess"]["nyul_landmarks"]) == tuple(float(v) for v in range(11))
    assert record["seed"] == 3 and record["train_ids_hash"] == ids_hash(["secret02", "secret01"])
    assert "secret01" not in sidecar.read_text()


def test_inversion_round_trip_checks_its_target(tmp_path):
    from inversion_audit.attack import build_inversion_decoder
    from inversion_audit.checkpoints import load_inversion, load_target, save_checkpoint, state_hash

    target = _target("segnet")
    decoder = build_inversion_decoder(target, "bottleneck+skips")
    decoder.target_weights_sha256 = state_hash(target)
    save_checkpoint(tmp_path / "target", target)
    save_checkpoint(tmp_path / "inversion", decoder)
    loaded_target = load_target(tmp_path / "target.json")
    loaded = load_inversion(tmp_path / "inversion", target=loaded_target)
    assert loaded.threat_model == "bottleneck+skips"
    with torch.no_grad():
        latent = target.encode(torch.rand(1, 1, 32, 32, 32))
        assert torch.equal(decoder.eval()(latent), loaded(latent))
    with pytest.raises(CheckpointError, match="different target weights"):
        load_inversion(tmp_path / "inversion", target=_target("segnet", seed=1))
    with pytest.raises(CheckpointError, match="not for unet"):
        load_inversion(tmp_path / "inversion", target=_target("unet"))


def test_mismatched_shapes_and_kinds_name_the_file(tmp_path):
    from inversion_audit.checkpoints import load_inversion, load_target, save_checkpoint

    weights, sidecar = save_checkpoint(tmp_path / "target.safetensors", _target())
    record = json.loads(sidecar.read_text())
    record["arch_args"]["base_filters"] = 16
    sidecar.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=rf"{weights}.*has shape"):
        load_target(weights)
    with pytest.raises(CheckpointError, match="not a inversion checkpoint|not an inversion"):
        load_inversion(weights)
    sidecar.unlink()
    with pytest.raises(CheckpointError, match="sidecar target.json is missing"):
        load_target(weights)


def test_tampered_weights_are_detected(tmp_path):
    from inversion_audit.checkpoints import load_target, save_checkpoint

    weights, _ = save_checkpoint(tmp_path / "target", _target())
    save_checkpoint(tmp_path / "other", _target(seed=1))
    weights.write_bytes((tmp_path / "other.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="hash differs"):
        load_target(weights)


def test_pt_state_dicts_load_through_weights_only(tmp_path):
    from inversion_audit.checkpoints import load_target, save_checkpoint

    model = _target()
    _, sidecar = save_checkpoint(tmp_path / "exported", model)
    (tmp_path / "exported.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "exported.pt")
    loaded = load_target(tmp_path / "exported.pt")
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


class _CreatesFile:
    """Unpickling this calls ``open(path, "w")``: a real code-running payload."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_without_running(tmp_path, writer):
    from inversion_audit.checkpoints import load_target, save_checkpoint

    # control: the payload really runs code when unpickled the unsafe way
    control = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(_CreatesFile(control))).close()
    assert control.exists()

    _, sidecar = save_checkpoint(tmp_path / "evil", _target())
    (tmp_path / "evil.safetensors").unlink()
    marker = tmp_path / "pwned_marker"
    payload = {"down.0.0.conv.weight": _CreatesFile(marker)}
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused.*could run code"):
        load_target(path)
    assert not marker.exists()


def test_metadata_never_holds_subject_ids(tmp_path):
    from inversion_audit.checkpoints import save_checkpoint

    with pytest.raises(ValueError, match="subject ids"):
        save_checkpoint(tmp_path / "t", _target(), {"train_ids": ["sub01"]})
    assert not (tmp_path / "t.safetensors").exists()


def test_garbage_safetensors_is_a_checkpoint_error(tmp_path):
    from inversion_audit.checkpoints import load_target, save_checkpoint

    weights, sidecar = save_checkpoint(tmp_path / "target", _target())
    record = json.loads(sidecar.read_text())
    record.pop("weights_sha256")
    sidecar.write_text(json.dumps(record))
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_target(weights)


@pytest.mark.gpu
def test_cuda_round_trip_and_amp_training(tmp_path, tiny_volumes):
    from inversion_audit.attack import InversionConfig, reconstruct, train_inversion
    from inversion_audit.checkpoints import load_inversion, load_target, save_checkpoint
    from inversion_audit.training import TargetConfig, train_target

    images, labels = tiny_volumes
    target, _ = train_target(images[:2], labels[:2], TargetConfig(depth=2, epochs=1), device="cuda")
    decoder, history = train_inversion(
        target, images[2:4], InversionConfig(epochs=2), device="cuda"
    )
    assert history.device.startswith("cuda") and all(v == v for v in history.step_loss)
    save_checkpoint(tmp_path / "target", target)
    save_checkpoint(tmp_path / "inversion", decoder)
    t2 = load_target(tmp_path / "target", device="cuda")
    d2 = load_inversion(tmp_path / "inversion", target=t2, device="cuda")
    assert next(d2.parameters()).is_cuda
    rec = reconstruct(t2, d2, images[0], device="cuda")
    assert rec.shape == images[0].shape
