"""Hostile model folders (issue 27): plans and bundle configs that try to run code, refused by name.

Each folder is written in the format nnU-Net's planner (plans.json, dataset.json,
fold_K/checkpoint_final.pth with network_weights) or MONAI's bundle template
(configs/inference.json, configs/metadata.json, models/model.pt) produces, with a
``hubconf.py`` beside it: ``torch.hub.load(folder, ..., source="local")`` would import it
and so write a marker file. Every class a file names is looked up in an explicit table, so
each name is refused with a :class:`ConfigError` naming the file and key, and the marker
never appears.
"""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from inversion_audit.errors import CheckpointError, ConfigError
from inversion_audit.models.external import load_bundle, load_external, load_monai, load_nnunet
from test_external_models import (
    NNUNET_ARCH,
    TINY,
    _MakesAFile,
    save_monai,
    write_bundle,
    write_nnunet,
)

HUB = "torch.hub.load"
#: attribute paths through each module an allowed name starts with, reaching torch.hub.load
THROUGH = [
    f"dynamic_network_architectures.architectures.unet.{HUB}",
    f"dynamic_network_architectures.architectures.{HUB}",
    f"torch.nn.modules.conv.{HUB}",
    f"torch.nn.{HUB}",
    f"dynamic_network_architectures.building_blocks.residual.{HUB}",
]
DUNDER = [
    "dynamic_network_architectures.architectures.unet.PlainConvUNet.__init__.__globals__",
    "torch.nn.modules.conv.Conv3d.__init__.__globals__",
    "torch.nn.LeakyReLU.__class__",
]
CYRILLIC_E, CYRILLIC_O = "\u0435", "\u043e"  # look like Latin e and o
LOOKALIKES = [
    f"dynamic_network_architectures.architectures.unet.PlainConvUN{CYRILLIC_E}t",
    f"torch.nn.modules.conv.C{CYRILLIC_O}nv3d",
    f"torch.nn.modules.instancenorm.InstanceN{CYRILLIC_O}rm3d",
    f"torch.nn.L{CYRILLIC_E}akyReLU",
]
HOSTILE = THROUGH + DUNDER + LOOKALIKES


def plant_hubconf(folder, marker) -> dict:
    """A hubconf.py in ``folder`` that writes ``marker`` when imported; the kwargs hub.load takes."""
    (folder / "hubconf.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n\ndef net(**kwargs):\n    return None\n"
    )
    return {"repo_or_dir": str(folder), "model": "net", "source": "local", "trust_repo": True}


def hostile_nnunet(tmp_path, edit) -> tuple:
    """A real nnU-Net folder whose architecture entry ``edit(arch, hub_kwargs)`` made hostile."""
    marker = tmp_path / "marker"
    root, _ = write_nnunet(tmp_path)
    hub = plant_hubconf(root, marker)
    plans = json.loads((root / "plans.json").read_text())
    arch = json.loads(json.dumps(NNUNET_ARCH))
    edit(arch, hub)
    plans["configurations"]["3d_fullres"]["architecture"] = arch
    (root / "plans.json").write_text(json.dumps(plans))
    return root, marker


def refused(call, *needles: str) -> str:
    with pytest.raises(ConfigError) as err:
        call()
    message = str(err.value)
    for needle in needles:
        assert needle in message, (needle, message)
    return message


@pytest.mark.parametrize("name", HOSTILE)
def test_nnunet_network_class_name_is_looked_up_never_located(tmp_path, name):
    def edit(arch, hub):
        arch["network_class_name"] = name
        arch["arch_kwargs"] = {**arch["arch_kwargs"], **hub}

    root, marker = hostile_nnunet(tmp_path, edit)
    message = refused(
        lambda: load_nnunet(root), "plans.json", "key architecture.network_class_name"
    )
    assert "not allowed" in message and not marker.exists()
    if name in LOOKALIKES:  # the look-alike letter shows as an escape, not as a Latin one
        assert "\\u04" in message


@pytest.mark.parametrize("key", ["conv_op", "norm_op", "dropout_op", "nonlin"])
@pytest.mark.parametrize("name", HOSTILE)
def test_nnunet_imported_ops_are_looked_up_never_located(tmp_path, key, name):
    def edit(arch, hub):
        arch["arch_kwargs"][key] = name

    root, marker = hostile_nnunet(tmp_path, edit)
    refused(lambda: load_nnunet(root), "plans.json", f"key architecture.arch_kwargs.{key}")
    assert not marker.exists()


def test_nnunet_op_of_the_wrong_kind_or_not_imported_is_refused(tmp_path):
    def wrong_kind(arch, hub):
        arch["arch_kwargs"]["nonlin"] = "torch.nn.modules.conv.Conv3d"

    root, _ = hostile_nnunet(tmp_path / "a", wrong_kind)
    refused(lambda: load_nnunet(root), "plans.json", "arch_kwargs.nonlin", "not allowed")

    def not_imported(arch, hub):  # a class name outside _kw_requires_import stays a string
        arch["_kw_requires_import"] = ["conv_op", "norm_op", "dropout_op"]
        arch["arch_kwargs"]["nonlin"] = HUB

    root, _ = hostile_nnunet(tmp_path / "b", not_imported)
    refused(lambda: load_nnunet(root), "plans.json", "arch_kwargs.nonlin", "takes a class")


@pytest.mark.parametrize(
    "needs, value, key",
    [
        (["conv_op", "repo_or_dir"], HUB, "_kw_requires_import"),
        (["conv_op", "__class__"], HUB, "_kw_requires_import"),
        (["conv_op", f"n{CYRILLIC_O}nlin"], HUB, "_kw_requires_import"),
        (
            ["conv_op", "block"],
            f"dynamic_network_architectures.building_blocks.residual.{HUB}",
            "arch_kwargs.block",
        ),
        ("conv_op", None, "_kw_requires_import"),
    ],
)
def test_nnunet_kw_requires_import_is_checked(tmp_path, needs, value, key):
    def edit(arch, hub):
        arch["_kw_requires_import"] = needs
        if isinstance(needs, list):
            arch["arch_kwargs"][needs[-1]] = value
        arch["arch_kwargs"].update(hub)

    root, marker = hostile_nnunet(tmp_path, edit)
    refused(lambda: load_nnunet(root), "plans.json", f"key architecture.{key}")
    assert not marker.exists()


@pytest.mark.parametrize(
    "extra, needle",
    [
        ({"foo": 1}, "key architecture.arch_kwargs.foo: PlainConvUNet takes no argument 'foo'"),
        ({"repo_or_dir": "x"}, "PlainConvUNet takes no argument 'repo_or_dir'"),
        ({"n_stages": HUB}, "arch_kwargs.n_stages: PlainConvUNet expects int"),
        ({"conv_bias": 1}, "arch_kwargs.conv_bias"),
        ({"norm_op_kwargs": {"__globals__": 1}}, "arch_kwargs.norm_op_kwargs"),
        ({"nonlin_kwargs": {"inplace": "../../etc/passwd"}}, "arch_kwargs.nonlin_kwargs.inplace"),
        ({"input_channels": 4}, "arch_kwargs.input_channels"),
    ],
)
def test_nnunet_arguments_the_class_does_not_take_are_refused(tmp_path, extra, needle):
    def edit(arch, hub):
        arch["arch_kwargs"].update(extra)

    root, marker = hostile_nnunet(tmp_path, edit)
    refused(lambda: load_nnunet(root), "plans.json", needle)
    assert not marker.exists()


def test_nnunet_is_built_as_nnunet_builds_it(tmp_path):
    """The table-built network equals nnU-Net's own (trusted plans): same modules, same output."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    root, net = write_nnunet(tmp_path)
    model = load_nnunet(root)
    arch = NNUNET_ARCH
    theirs = get_network_from_plans(
        arch["network_class_name"],
        arch["arch_kwargs"],
        arch["_kw_requires_import"],
        1,
        3,
        allow_init=False,
        deep_supervision=False,
    )
    theirs.load_state_dict(net.state_dict())
    assert [type(m) for m in model.network.modules()] == [type(m) for m in theirs.modules()]
    x = torch.rand(1, 1, 16, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.network(x), theirs.eval()(x))


# ---- MONAI bundles and networks -------------------------------------------------------------

MONAI_HOSTILE = [
    f"monai.networks.nets.{HUB}",
    f"monai.networks.nets.segresnet.{HUB}",
    f"monai.networks.{HUB}",
    "monai.networks.nets.SegResNet.__init__.__globals__",
    "SegResNet.__class__",
    f"SegR{CYRILLIC_E}sNet",
    f"monai.networks.nets.S{CYRILLIC_E}gResNet",
    HUB,
]


@pytest.mark.parametrize("name", MONAI_HOSTILE)
def test_bundle_target_is_looked_up_never_located(tmp_path, name):
    marker = tmp_path / "marker"
    hub = {"repo_or_dir": str(tmp_path / "bundle"), "model": "net", "source": "local"}
    root = write_bundle(tmp_path, {"_target_": name, **hub})
    plant_hubconf(root, marker)
    refused(lambda: load_bundle(root), "inference.json", "key network_def._target_")
    assert not marker.exists()
    _, weights = save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    refused(lambda: load_monai(weights, name, TINY["BasicUNet"]), "model.network")
    assert not marker.exists()


@pytest.mark.parametrize(
    "args, key",
    [
        ({"act": {"_target_": HUB, "repo_or_dir": "."}}, "network_def.act"),
        ({"norm": "@evil"}, "network_def.norm"),
        ({"repo_or_dir": "x"}, "network_def.repo_or_dir: SegResNet takes no argument"),
        ({"init_filters": "@evil#repo_or_dir"}, "network_def.init_filters"),
        ({"act": ["RELU", {"__globals__": 1}]}, "network_def.act[1]"),
    ],
)
def test_bundle_nested_targets_and_unknown_arguments_are_refused(tmp_path, args, key):
    marker = tmp_path / "marker"
    root = write_bundle(tmp_path, {"_target_": "SegResNet", **TINY["SegResNet"], **args})
    hub = plant_hubconf(root, marker)
    config = json.loads((root / "configs" / "inference.json").read_text())
    config["evil"] = {"_target_": HUB, **hub}
    (root / "configs" / "inference.json").write_text(json.dumps(config))
    refused(lambda: load_bundle(root), "inference.json", key)
    assert not marker.exists()


def _template_bundle(tmp_path, extra: dict, network_def: dict):
    root = write_bundle(tmp_path, network_def)
    config = json.loads((root / "configs" / "inference.json").read_text())
    (root / "configs" / "inference.json").write_text(json.dumps({**config, **extra}))
    return root


def test_bundle_references_to_literals_are_followed(tmp_path):
    """MONAI's segmentation template: ``out_channels: "@num_classes"``, chains, ``#`` and ``::``."""
    extra = {
        "num_classes": "@classes_again",
        "classes_again": 2,
        "sizes": {"filters": [4, 5, 6], "blocks": [1, 1, 1, 1]},
        "groups": "@sizes::blocks",
    }
    net_def = {
        "_target_": "monai.networks.nets.SegResNet",
        **TINY["SegResNet"],
        "out_channels": "@num_classes",
        "init_filters": "@sizes#filters#0",
        "blocks_down": "@groups",
        "norm": ["GROUP", {"num_groups": "@sizes#blocks#0"}],
    }
    model = load_bundle(_template_bundle(tmp_path, extra, net_def))
    assert model.name == "SegResNet" and model.network.conv_final[-1].out_channels == 2
    assert model.network.convInit.conv.out_channels == 4


@pytest.mark.parametrize(
    "extra, ref, message",
    [
        ({"a": "@b", "b": "@a"}, "@a", "cycle"),
        ({"a": "@a"}, "@a", "cycle"),
        ({"a": "$2 + 2"}, "@a", "never evaluated"),
        ({"a": "%configs/other.json#x"}, "@a", "never evaluated"),
        ({"a": {"_target_": "SegResNet"}}, "@a", "builds objects"),
        ({"a": [1, "@a"]}, "@a", "cycle"),
        ({}, "@missing", "names nothing"),
        (  # a billion laughs: 10 levels of 10 references each
            {f"l{k}": [f"@l{k + 1}"] * 10 for k in range(10)} | {"l10": 1},
            "@l0",
            "more than 10000 values",
        ),
        ({"a": [1, 2]}, "@a#5", "names nothing"),
    ],
)
def test_bundle_references_to_non_literals_are_refused(tmp_path, extra, ref, message):
    marker = tmp_path / "marker"
    net_def = {"_target_": "SegResNet", **TINY["SegResNet"], "out_channels": ref}
    root = _template_bundle(tmp_path, extra, net_def)
    plant_hubconf(root, marker)
    refused(lambda: load_bundle(root), "inference.json", "key network_def.out_channels", message)
    assert not marker.exists()


def test_swinunetr_img_size_removed_from_monai_is_dropped_with_a_note(tmp_path):
    import inspect

    from monai.networks.nets import SwinUNETR

    assert "img_size" not in inspect.signature(SwinUNETR).parameters  # MONAI >= 1.5
    args = {**TINY["SwinUNETR"], "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}
    root = write_bundle(tmp_path, {"_target_": "SwinUNETR", "img_size": [64, 64, 64], **args})
    torch.manual_seed(0)
    torch.save(SwinUNETR(**TINY["SwinUNETR"]).state_dict(), root / "models" / "model.pt")
    model = load_bundle(root, grid=(64, 64, 64))
    notes = [d for d in model.preprocess_differences if "img_size" in d]
    assert len(notes) == 1 and "inference.json: key network_def.img_size: dropped" in notes[0]
    assert "img_size" in json.dumps(model.describe()["preprocess_differences"])
    # any other argument the class does not take is still refused
    config = json.loads((root / "configs" / "inference.json").read_text())
    config["network_def"]["img_sizes"] = [64, 64, 64]
    (root / "configs" / "inference.json").write_text(json.dumps(config))
    refused(lambda: load_bundle(root, grid=(64, 64, 64)), "network_def.img_sizes", "no argument")


@pytest.mark.parametrize(
    "grid, want", [((32, 32, 32), "[64, 64, 64]"), ((48, 64, 100), "[64, 64, 128]")]
)
def test_swinunetr_grid_message_names_the_grid_to_set(tmp_path, grid, want):
    _, path = save_monai(tmp_path, "SwinUNETR", TINY["SwinUNETR"])
    refused(
        lambda: load_monai(path, "SwinUNETR", TINY["SwinUNETR"], grid=grid),
        str(path),
        "multiple of 32",
        want,
    )


def test_torchscript_only_bundle_says_what_to_provide(tmp_path):
    root = write_bundle(tmp_path, {"_target_": "SegResNet", **TINY["SegResNet"]})
    (root / "models" / "model.pt").unlink()
    torch.jit.save(torch.jit.script(torch.nn.Conv3d(1, 2, 3)), str(root / "models" / "model.ts"))
    refused(
        lambda: load_bundle(root),
        "model.ts",
        "TorchScript",
        "never loaded",
        "models/model.pt",
        "model.safetensors",
    )


def test_bundle_channels_are_named_by_the_bundles_own_key(tmp_path):
    from monai.networks.nets import SegResNet

    args = {**TINY["SegResNet"], "in_channels": 2}
    root = write_bundle(tmp_path, {"_target_": "SegResNet", **args})
    torch.save(SegResNet(**args).state_dict(), root / "models" / "model.pt")
    model = load_bundle(root)
    assert model.in_channels == 2
    assert (
        model.channels_key == f"{root / 'configs' / 'inference.json'}: key network_def.in_channels"
    )
    _, path = save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    assert load_monai(path, "BasicUNet", TINY["BasicUNet"]).channels_key == (
        "model.network_args.in_channels"
    )


@pytest.mark.slow
def test_study_names_the_bundle_key_for_a_multichannel_model(tmp_path, capsys):
    from monai.networks.nets import SegResNet

    from inversion_audit.cli.main import main
    from test_external_models import external_study_toml

    args = {**TINY["SegResNet"], "in_channels": 2}
    root = write_bundle(tmp_path, {"_target_": "SegResNet", **args})
    torch.save(SegResNet(**args).state_dict(), root / "models" / "model.pt")
    text = external_study_toml(tmp_path, ["sub-000"])
    model = text[text.index("[model]") :]
    text = text.replace(
        model, '[model]\nsource = "bundle"\npath = "bundle"\nmembers = ["sub-000"]\n'
    )
    config = tmp_path / "audit.toml"
    config.write_text(text)
    assert main(["run", str(config), "--out", str(tmp_path / "study"), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "audit.toml" in err and "inference.json: key network_def.in_channels" in err
    assert "the cohort gives one image per subject; this model" in err and "takes 2" in err
    assert "model.network_args" not in err


# ---- nnU-Net: 2D, fold "all", a parent nnUNet_results folder ---------------------------------


def test_2d_nnunet_models_are_refused_plainly(tmp_path):
    root, _ = write_nnunet(tmp_path / "a")
    two_d = root.with_name("nnUNetTrainer__nnUNetPlans__2d")
    root.rename(two_d)
    refused(lambda: load_nnunet(two_d), "2D models are not supported", "'2d'")

    def flat(arch, hub):
        arch["arch_kwargs"]["conv_op"] = "torch.nn.modules.conv.Conv2d"

    root, _ = hostile_nnunet(tmp_path / "b", flat)
    refused(lambda: load_nnunet(root), "plans.json", "arch_kwargs.conv_op", "2D models")
    root, _ = write_nnunet(tmp_path / "c")
    plans = json.loads((root / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["patch_size"] = [32, 32]
    (root / "plans.json").write_text(json.dumps(plans))
    refused(lambda: load_nnunet(root), "plans.json", "3d_fullres.patch_size", "2D models")


def test_nnunet_fold_all_is_loaded_recorded_and_rebuilt(tmp_path):
    from inversion_audit.models.external import rebuild_target
    from inversion_audit.models.external.args import check_external_args

    root, _ = write_nnunet(tmp_path)
    (root / "fold_0").rename(root / "fold_all")
    model = load_external("nnunet", root, fold="all")
    record = model.target().arch_args
    assert record["fold"] == "all"
    check_external_args(record, "arch_args.target_args")
    again = rebuild_target(root, json.loads(json.dumps(record)))
    x = torch.rand(1, *again.arch_args["grid"])[None]
    with torch.no_grad():
        torch.testing.assert_close(again.encode(x).bottleneck, model.target().encode(x).bottleneck)
    refused(lambda: load_nnunet(root, fold=0), "fold_0")
    for bad in ("../fold_all", "ALL", -1, 100, True):
        refused(lambda bad=bad: load_nnunet(root, fold=bad), "model.fold")
    with pytest.raises(ConfigError, match="fold"):
        check_external_args({**record, "fold": "../x"}, "arch_args.target_args")


def test_model_table_takes_fold_all_and_its_members(tmp_path):
    from inversion_audit.study.model_source import parse_model_source, resolve_members

    base = {"source": "nnunet", "path": "m", "members_file": "splits_final.json"}
    assert parse_model_source({**base, "fold": "all"}).fold == "all"
    for bad in ("0", "every", 1.0, 100):
        with pytest.raises(ConfigError, match="model.fold"):
            parse_model_source({**base, "fold": bad})
    splits = [{"train": ["a", "b"], "val": ["c"]}, {"train": ["c", "a"], "val": ["b"]}]
    (tmp_path / "splits_final.json").write_text(json.dumps(splits))
    source = parse_model_source({**base, "fold": "all"})
    assert resolve_members(source, ["a", "b", "c", "d"], str(tmp_path / "s.toml")) == (
        "a",
        "b",
        "c",
    )


def test_parent_nnunet_results_folder_lists_its_models(tmp_path):
    results = tmp_path / "nnUNet_results"
    write_nnunet(results / "Dataset001_Tiny")
    message = refused(
        lambda: load_external("nnunet", results),
        str(results),
        "not an nnU-Net trained model folder",
        "Dataset001_Tiny/nnUNetTrainer__nnUNetPlans__3d_fullres",
    )
    assert "1 trained model folder" in message
    refused(lambda: load_nnunet(tmp_path / "empty"), "plans.json is missing")


# ---- weights: dtypes, pickles that would run code ----------------------------------------------


def test_int8_weights_are_refused_naming_file_and_tensor(tmp_path):
    from safetensors.torch import save_file

    net, path = save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    state = {
        k: v.to(torch.int8) if v.is_floating_point() else v for k, v in net.state_dict().items()
    }
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as err:
        load_monai(path, "BasicUNet", TINY["BasicUNet"])
    message = str(err.value)
    assert str(path) in message and "is int8, the network expects float32" in message
    assert "conv_0.conv.weight" in message
    # another precision of the same kind loads (cast to the network's dtype)
    half = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    save_file(half, str(path))
    assert next(load_monai(path, "BasicUNet", TINY["BasicUNet"]).network.parameters()).dtype == (
        torch.float32
    )


@pytest.mark.parametrize(
    ("dtype", "recorded", "expected"),
    [
        ("int8", True, r"tensor \S+ is int8, its sidecar records float32"),
        ("float16", True, r"tensor \S+ is float16, its sidecar records float32"),
        ("int8", False, r"is int8, the network expects float32"),  # a sidecar without dtypes
    ],
)
def test_weights_of_another_dtype_than_the_sidecar_are_refused(tmp_path, dtype, recorded, expected):
    from safetensors.torch import save_file

    from inversion_audit.checkpoints import load_target, save_checkpoint
    from inversion_audit.io import file_hash
    from inversion_audit.models import build_target_network

    model = build_target_network("unet", n_classes=2, depth=2, base_filters=4).eval()
    weights, sidecar = save_checkpoint(tmp_path / "target", model)
    assert set(json.loads(sidecar.read_text())["dtypes"].values()) == {"float32", "int64"}
    state = {
        k: (v * 100).to(getattr(torch, dtype)) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }
    save_file(state, str(weights))
    record = json.loads(sidecar.read_text())
    record["weights_sha256"] = file_hash(weights)  # the sidecar is the attacker's too
    if not recorded:
        del record["dtypes"]
    sidecar.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=rf"target\.safetensors: .*{expected}"):
        load_target(weights)


def _assert_no_unsafe_advice(message: str) -> None:
    lowered = message.lower()
    for advice in ("weights_only", "safe_globals", "trust", "will likely succeed", "can still be"):
        assert advice not in lowered, (advice, message)


def test_pickle_refusals_never_advise_loading_unsafely(tmp_path):
    from inversion_audit.io.weights import load_weights
    from inversion_audit.models.external.weights import read_state_dict

    marker = tmp_path / "pwned"
    torch_pickle = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": _MakesAFile(marker)}}, torch_pickle)
    plain_pickle = tmp_path / "plain.pth"  # not torch.save's zip: a bare protocol-5 pickle
    plain_pickle.write_bytes(pickle.dumps({"w": _MakesAFile(marker)}, protocol=5))
    nnunet, _ = write_nnunet(tmp_path / "nn", evil_pickle={"w": _MakesAFile(marker)})
    calls = [
        lambda: load_weights(torch_pickle),
        lambda: load_weights(plain_pickle),
        lambda: read_state_dict(torch_pickle),
        lambda: read_state_dict(plain_pickle),
        lambda: load_monai(torch_pickle, "BasicUNet", TINY["BasicUNet"]),
        lambda: load_nnunet(nnunet),
    ]
    for call in calls:
        with pytest.raises(CheckpointError) as err:
            call()
        message = str(err.value)
        assert "refused" in message and "nothing was executed" in message
        _assert_no_unsafe_advice(message)
        assert err.value.__cause__ is None  # PyTorch's advice is not chained either
        assert not marker.exists()
    assert "it names" in str(pytest.raises(CheckpointError, load_weights, torch_pickle).value)


def test_unreadable_checkpoint_message_is_scrubbed_too(tmp_path):
    from inversion_audit.io.weights import refusal_reason, without_unsafe_advice

    text = (
        "Weights only load failed. In PyTorch 2.6, we changed the default value of the "
        "`weights_only` argument in `torch.load` from `False` to `True`. Re-running `torch.load` "
        "with `weights_only` set to `False` will likely succeed, but it can result in arbitrary "
        "code execution. Do it only if you got the file from a trusted source.\nPlease file an "
        "issue with the following so that we can make `weights_only=True` compatible with your "
        "use case: WeightsUnpickler error: \n\nUnsupported operand 149\n\nCheck the documentation"
    )
    assert refusal_reason(pickle.UnpicklingError(text)) == "Unsupported operand 149"
    _assert_no_unsafe_advice(without_unsafe_advice(text))
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 not a zip")
    from inversion_audit.io.weights import load_weights

    with pytest.raises(CheckpointError, match="unreadable") as err:
        load_weights(broken)
    _assert_no_unsafe_advice(str(err.value))


def test_nnunet_residual_encoder_plans_are_built_from_the_table(tmp_path):
    """nnU-Net's ResEnc presets: ResidualEncoderUNet with n_blocks_per_stage, in both spellings."""
    from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet

    kwargs = {k: v for k, v in NNUNET_ARCH["arch_kwargs"].items() if k != "n_conv_per_stage"}
    kwargs["n_blocks_per_stage"] = [1, 1, 1]
    for spelling in ("unet", "residual_unet"):
        arch = {
            **NNUNET_ARCH,
            "network_class_name": f"dynamic_network_architectures.architectures.{spelling}."
            "ResidualEncoderUNet",
            "arch_kwargs": kwargs,
        }
        root, _ = write_nnunet(tmp_path / spelling, arch)
        built = {
            **kwargs,
            "conv_op": torch.nn.Conv3d,
            "norm_op": torch.nn.InstanceNorm3d,
            "nonlin": torch.nn.LeakyReLU,
        }
        torch.manual_seed(3)
        net = ResidualEncoderUNet(input_channels=1, num_classes=3, **built).eval()
        ckpt = torch.load(root / "fold_0" / "checkpoint_final.pth", weights_only=False)
        ckpt["network_weights"] = net.state_dict()
        torch.save(ckpt, root / "fold_0" / "checkpoint_final.pth")
        model = load_nnunet(root)
        assert model.name == "ResidualEncoderUNet"
        x = torch.rand(1, 1, 16, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(model.network(x), net(x))
