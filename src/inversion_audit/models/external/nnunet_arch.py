"""An nnU-Net plans ``architecture`` entry, checked against explicit tables and built without nnU-Net.

nnU-Net's ``get_network_from_plans`` resolves ``network_class_name`` and every
``_kw_requires_import`` value with ``pydoc.locate``, which imports modules and walks their
attributes: a name such as ``dynamic_network_architectures.architectures.unet.torch.hub.load``
reaches any function. Here each name is looked up, exactly as spelled, in
:func:`.tables.nnunet_classes` / :func:`.tables.nnunet_imports`; the network is then built
as nnU-Net builds it (``cls(input_channels, num_classes, deep_supervision=False, **kwargs)``,
no initialisation) from arguments checked against the class's signature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import ConfigError
from .arguments import check_arguments
from .tables import NNUNET_IMPORT_KINDS, NNUNET_NETWORKS, TORCH_LOWER_DIM

__all__ = ["NOT_3D", "build_nnunet_network", "check_architecture"]

NOT_3D = "2D models are not supported; train or export a 3d_fullres (or 3d_lowres) configuration"


def _name(value: Any) -> str:
    """A name as the error shows it: ASCII, so look-alike letters stand out."""
    return ascii(value)[:160]


def check_architecture(arch: Any, path: Path) -> tuple[str, type, dict[str, Any]]:
    """``(class name, class, keyword arguments)`` of a plans ``architecture`` entry.

    Every class comes from the tables; every other argument is a literal the class's
    signature takes. Anything else raises :class:`ConfigError` naming ``path`` and the key.
    """
    from .tables import nnunet_classes, nnunet_imports

    if not isinstance(arch, dict):
        raise ConfigError(f"{path}: key architecture must be a table")
    name, kwargs = arch.get("network_class_name"), arch.get("arch_kwargs")
    needs = arch.get("_kw_requires_import", [])
    if not isinstance(name, str) or name not in NNUNET_NETWORKS:
        raise ConfigError(
            f"{path}: key architecture.network_class_name = {_name(name)} is not allowed; "
            f"choose one of {', '.join(sorted(NNUNET_NETWORKS))}"
        )
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{path}: key architecture.arch_kwargs must be a table")
    if not isinstance(needs, list) or not all(isinstance(k, str) for k in needs):
        raise ConfigError(f"{path}: key architecture._kw_requires_import must list argument names")
    imports = nnunet_imports()
    classes: dict[str, Any] = {}
    for key in needs:
        if key not in NNUNET_IMPORT_KINDS:
            raise ConfigError(
                f"{path}: key architecture._kw_requires_import names {_name(key)}; only "
                f"{', '.join(NNUNET_IMPORT_KINDS)} take a class"
            )
        if key not in kwargs:
            raise ConfigError(
                f"{path}: key architecture._kw_requires_import names {key!r}, not in arch_kwargs"
            )
        value, at = kwargs[key], f"{path}: key architecture.arch_kwargs.{key}"
        if value is None:
            classes[key] = None
            continue
        if value in TORCH_LOWER_DIM:
            raise ConfigError(f"{at} = {value!r}: {NOT_3D}")
        kind = NNUNET_IMPORT_KINDS[key]
        found = imports.get(value) if isinstance(value, str) else None
        if found is None or found[0] != kind:
            allowed = sorted(
                k for k, (v, _) in imports.items() if v == kind and ".modules." not in k
            )
            raise ConfigError(
                f"{at} = {_name(value)} is not allowed; choose one of {', '.join(allowed)} "
                "(torch layers also as torch.nn.modules.<module>.<class>)"
            )
        classes[key] = found[1]
    cls = nnunet_classes()[name]
    args = {k: v for k, v in kwargs.items() if k != "deep_supervision"}  # nnU-Net sets it too
    args, _ = check_arguments(
        cls,
        {k: classes.get(k, v) for k, v in args.items()},
        f"{path}: key architecture.arch_kwargs",
        classes=classes,
        set_by_us=("input_channels", "num_classes"),
    )
    return NNUNET_NETWORKS[name], cls, args


def build_nnunet_network(
    cls: type, kwargs: dict[str, Any], in_channels: int, n_out: int, path: Path
) -> Any:
    """The network as nnU-Net's ``get_network_from_plans`` builds it (deep supervision off, no init)."""
    try:
        return cls(input_channels=in_channels, num_classes=n_out, deep_supervision=False, **kwargs)
    except (TypeError, ValueError, KeyError, IndexError, AssertionError, RuntimeError) as exc:
        raise ConfigError(
            f"{path}: key architecture.arch_kwargs: cannot build {cls.__name__} "
            f"({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
