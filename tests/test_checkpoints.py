"""Checkpoints: safetensors + sidecar round trip, mismatch errors, refusal of code-running pickles."""

from __future__ import annotations

import json
import pickle
import re

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


# ---- the one weights format (io.weights_format) for every network the project saves -----------


def _kind(kind):
    """``(network, save(stem) -> (weights, sidecar), load(path))`` of one saved kind."""
    from inversion_audit.attack import build_inversion_decoder
    from inversion_audit.checkpoints import load_inversion, load_target, save_checkpoint
    from inversion_audit.defences.obfuscation import ObfuscationConfig, build_vae
    from inversion_audit.defences.vae_io import load_vae, save_vae
    from inversion_audit.matching.reid_io import load_reid, save_reid
    from inversion_audit.models import build_target_network

    torch.manual_seed(0)
    if kind in ("target", "inversion"):
        net = build_target_network("unet", n_classes=2, depth=2, base_filters=4).eval()
        if kind == "inversion":
            net = build_inversion_decoder(net, "bottleneck").eval()
            return net, lambda p: save_checkpoint(p, net), load_inversion
        return net, lambda p: save_checkpoint(p, net), load_target
    if kind == "reid":
        from inversion_audit.matching.reid import build_reid_network

        net = build_reid_network(2, 8).eval()
        return net, lambda p: save_reid(p, net), load_reid
    config = ObfuscationConfig(vae_filters=2, vae_latent=2)
    net = build_vae(config).eval()
    return net, lambda p: tuple(save_vae(p, net, config)), lambda p: load_vae(p, config)


FORMATS = {
    "target": "inversion-audit-checkpoint/1",
    "inversion": "inversion-audit-checkpoint/1",
    "reid": "inversion-audit-reid/1",
    "vae": "inversion-audit-vae/1",
}


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_every_kind_round_trips_through_the_one_weights_format(tmp_path, kind):
    from inversion_audit.io import file_hash
    from inversion_audit.io.weights_format import read_weights

    net, save, load = _kind(kind)
    weights, sidecar = save(tmp_path / "net")
    assert (weights.name, sidecar.name) == ("net.safetensors", "net.json")
    record, state = read_weights(sidecar, FORMATS[kind], kind)
    assert record["format"] == FORMATS[kind] and record["weights_file"] == weights.name
    assert record["weights_sha256"] == file_hash(weights)
    assert {"torch", "safetensors", "inversion_audit"} <= set(record["versions"])
    expected = net.state_dict()
    assert record["tensors"] == {k: list(v.shape) for k, v in expected.items()}
    assert record["dtypes"] == {k: str(v.dtype).removeprefix("torch.") for k, v in expected.items()}
    loaded = load(tmp_path / "net").state_dict()
    for name, tensor in expected.items():
        assert torch.equal(state[name], tensor) and torch.equal(loaded[name], tensor)


def test_write_and_read_weights_directly(tmp_path):
    from inversion_audit.io.weights_format import read_weights, write_weights

    state = {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor([3])}
    weights, sidecar = write_weights(tmp_path / "x.json", state, {"format": "test/1", "k": 1})
    assert weights == tmp_path / "x.safetensors"
    record, back = read_weights(weights, "test/1", "test")
    assert record["k"] == 1 and record["dtypes"] == {"w": "float32", "n": "int64"}
    assert all(torch.equal(back[k], v) for k, v in state.items())
    with pytest.raises(ValueError, match="subject ids"):
        write_weights(tmp_path / "y", state, {"format": "test/1", "subjects": ["sub01"]})
    assert not (tmp_path / "y.safetensors").exists()
    with pytest.raises(CheckpointError, match=r"x\.json: not an other sidecar"):
        read_weights(weights, "other/1", "other")


def _rewrite(weights, sidecar, state):
    """Weights replaced by ``state``, the sidecar's hash updated (the sidecar is the attacker's too)."""
    from safetensors.torch import save_file

    from inversion_audit.io import file_hash

    save_file(state, str(weights))
    record = json.loads(sidecar.read_text())
    record["weights_sha256"] = file_hash(weights)
    sidecar.write_text(json.dumps(record))


def _hash_differs(weights, sidecar, net):
    from safetensors.torch import save_file

    save_file({k: v + 1 for k, v in net.state_dict().items()}, str(weights))
    return weights, r"weights do not match their sidecar net\.json \(hash differs\)"


def _wrong_dtype(weights, sidecar, net):
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    _rewrite(weights, sidecar, state)
    return weights, r"tensor \S+ is float16, its sidecar records float32"


def _not_plain_name(weights, sidecar, net):
    record = json.loads(sidecar.read_text())
    record["weights_file"] = "../elsewhere/net.safetensors"
    sidecar.write_text(json.dumps(record))
    return sidecar, "weights_file must be a plain file name"


def _not_utf8(weights, sidecar, net):
    text = sidecar.read_bytes()
    sidecar.write_bytes(text[:1] + b'"x": "\xe9t\xe9", ' + text[1:])
    return sidecar, r"not UTF-8 text \(byte 0xe9 at offset 7\)"


@pytest.mark.parametrize("kind", ["target", "reid", "vae"])
@pytest.mark.parametrize("tamper", [_hash_differs, _wrong_dtype, _not_plain_name, _not_utf8])
def test_every_kind_refuses_tampered_weights_naming_the_file(tmp_path, kind, tamper):
    net, save, load = _kind(kind)
    weights, sidecar = save(tmp_path / "net")
    named, message = tamper(weights, sidecar, net)
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(named))}: .*{message}") as info:
        load(weights)
    assert str(named) in str(info.value)
