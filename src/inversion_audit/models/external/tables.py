"""The classes a model file may name, as explicit tables from allowed names to objects.

A name in a plans file or bundle config is looked up here, spelled exactly as one of the
keys; nothing is ever imported, located or reached by walking a module's attributes from a
file's string. The name tables are torch-free; the functions that return the objects
import them explicitly (``from ... import ...``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MONAI_NETWORKS",
    "MONAI_REMOVED_ARGS",
    "NNUNET_IMPORT_KINDS",
    "NNUNET_NETWORKS",
    "monai_classes",
    "monai_short_name",
    "nnunet_classes",
    "nnunet_imports",
]

#: class names of ``monai.networks.nets`` that may be built (3D segmentation networks)
MONAI_NETWORKS = ("UNet", "BasicUNet", "SegResNet", "DynUNet", "AttentionUnet", "SwinUNETR")
#: module of each, for the ``monai.networks.nets.<module>.<Class>`` spelling of a _target_
_MONAI_MODULES = {
    "UNet": "unet",
    "BasicUNet": "basic_unet",
    "SegResNet": "segresnet",
    "DynUNet": "dynunet",
    "AttentionUnet": "attentionunet",
    "SwinUNETR": "swin_unetr",
}
#: spellings of a bundle's ``_target_`` -> the class name
_MONAI_SPELLINGS = {
    spelling: name
    for name, module in _MONAI_MODULES.items()
    for spelling in (
        name,
        f"monai.networks.nets.{name}",
        f"monai.networks.nets.{module}.{name}",
    )
}
#: arguments that older MONAI versions took and the installed one may not: dropped with a note
MONAI_REMOVED_ARGS: dict[str, tuple[str, ...]] = {"SwinUNETR": ("img_size",)}

_DNA = "dynamic_network_architectures.architectures"
#: nnU-Net network classes: spelling in plans.json -> class name
NNUNET_NETWORKS = {
    f"{_DNA}.unet.PlainConvUNet": "PlainConvUNet",
    f"{_DNA}.unet.ResidualEncoderUNet": "ResidualEncoderUNet",
    f"{_DNA}.unet.ResidualUNet": "ResidualUNet",
    # the spelling nnU-Net's own conversion of older plans writes
    f"{_DNA}.residual_unet.ResidualEncoderUNet": "ResidualEncoderUNet",
}
#: which kind of class each importable keyword of an nnU-Net network takes
NNUNET_IMPORT_KINDS = {
    "conv_op": "conv",
    "norm_op": "norm",
    "dropout_op": "dropout",
    "nonlin": "nonlin",
    "block": "block",
}
_TORCH_LAYERS = {  # class name -> (kind, module under torch.nn.modules)
    "Conv3d": ("conv", "conv"),
    "InstanceNorm3d": ("norm", "instancenorm"),
    "BatchNorm3d": ("norm", "batchnorm"),
    "GroupNorm": ("norm", "normalization"),
    "LayerNorm": ("norm", "normalization"),
    "Dropout": ("dropout", "dropout"),
    "Dropout3d": ("dropout", "dropout"),
    "LeakyReLU": ("nonlin", "activation"),
    "ReLU": ("nonlin", "activation"),
    "PReLU": ("nonlin", "activation"),
    "ELU": ("nonlin", "activation"),
    "GELU": ("nonlin", "activation"),
    "SiLU": ("nonlin", "activation"),
    "Identity": ("nonlin", "linear"),
}
#: 1D/2D layers a plans file of a 2D model names (refused with "2D models are not supported")
TORCH_LOWER_DIM = frozenset(
    f"torch.nn.{m}{n}" for n in ("Conv1d", "Conv2d") for m in ("", "modules.conv.")
)


def monai_short_name(target: str) -> str | None:
    """The allowed MONAI class a ``_target_`` or ``model.network`` spells, else ``None``."""
    return _MONAI_SPELLINGS.get(target)


def monai_classes() -> dict[str, type]:
    """Class name -> the MONAI network class, for :data:`MONAI_NETWORKS` only."""
    from monai.networks.nets import (
        AttentionUnet,
        BasicUNet,
        DynUNet,
        SegResNet,
        SwinUNETR,
        UNet,
    )

    return {
        "UNet": UNet,
        "BasicUNet": BasicUNet,
        "SegResNet": SegResNet,
        "DynUNet": DynUNet,
        "AttentionUnet": AttentionUnet,
        "SwinUNETR": SwinUNETR,
    }


def nnunet_classes() -> dict[str, type]:
    """Spelling in plans.json -> the ``dynamic_network_architectures`` network class."""
    from dynamic_network_architectures.architectures.unet import (
        PlainConvUNet,
        ResidualEncoderUNet,
        ResidualUNet,
    )

    objects = {
        "PlainConvUNet": PlainConvUNet,
        "ResidualEncoderUNet": ResidualEncoderUNet,
        "ResidualUNet": ResidualUNet,
    }
    return {spelling: objects[name] for spelling, name in NNUNET_NETWORKS.items()}


def nnunet_imports() -> dict[str, tuple[str, Any]]:
    """Spelling -> (kind, class) of every layer or block a plans file may have imported.

    torch layers in both spellings nnU-Net writes (``torch.nn.Conv3d`` and
    ``torch.nn.modules.conv.Conv3d``); residual blocks of ``dynamic_network_architectures``.
    """
    from dynamic_network_architectures.building_blocks.residual import BasicBlockD, BottleneckD
    from torch.nn import (
        ELU,
        GELU,
        BatchNorm3d,
        Conv3d,
        Dropout,
        Dropout3d,
        GroupNorm,
        Identity,
        InstanceNorm3d,
        LayerNorm,
        LeakyReLU,
        PReLU,
        ReLU,
        SiLU,
    )

    layers = {
        "Conv3d": Conv3d,
        "InstanceNorm3d": InstanceNorm3d,
        "BatchNorm3d": BatchNorm3d,
        "GroupNorm": GroupNorm,
        "LayerNorm": LayerNorm,
        "Dropout": Dropout,
        "Dropout3d": Dropout3d,
        "LeakyReLU": LeakyReLU,
        "ReLU": ReLU,
        "PReLU": PReLU,
        "ELU": ELU,
        "GELU": GELU,
        "SiLU": SiLU,
        "Identity": Identity,
    }
    table: dict[str, tuple[str, Any]] = {}
    for name, (kind, module) in _TORCH_LAYERS.items():
        table[f"torch.nn.{name}"] = (kind, layers[name])
        table[f"torch.nn.modules.{module}.{name}"] = (kind, layers[name])
    blocks = "dynamic_network_architectures.building_blocks.residual"
    table[f"{blocks}.BasicBlockD"] = ("block", BasicBlockD)
    table[f"{blocks}.BottleneckD"] = ("block", BottleneckD)
    return table
