"""Finding the latent of an external network: the deepest encoder output, by one hooked forward pass.

Only modules that hold a convolution, pooling or upsampling layer are watched. The
bottleneck is the module whose output has the smallest spatial size before the first
upsampling (a module whose output grid is larger than its input's). Among the modules
with that output size, concatenations of a module's own input (skip connections) are
skipped; the one with the most channels wins, ties going to the last to finish (the
outermost). ``bottleneck+skips`` also taps, for each larger grid met before the
bottleneck, the encoder feature chosen the same way (finest first): the features the
decoder receives through its skip connections. Hooked tensors are cloned, because
in-place activations may overwrite them after the hook has run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import ConfigError
from ..latent import Latent

__all__ = ["LatentTaps", "find_latent", "resolve_module_path", "tap_latent"]

_PART = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*|-?[0-9]+)$")


@dataclass(frozen=True)
class LatentTaps:
    """Where the latent is tapped and what it looks like for one input of the model's grid.

    Attributes
    ----------
    bottleneck : module path of the bottleneck (``named_modules`` spelling).
    skips : module paths of the skip features, finest first.
    bottleneck_shape : (C, X', Y', Z') of the bottleneck for one input.
    skip_shapes : (C, X, Y, Z) of each skip feature.
    """

    bottleneck: str
    skips: tuple[str, ...]
    bottleneck_shape: tuple[int, ...]
    skip_shapes: tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict:
        """JSON-safe dict."""
        return {
            "module": self.bottleneck,
            "skips": list(self.skips),
            "shape": list(self.bottleneck_shape),
            "skip_shapes": [list(s) for s in self.skip_shapes],
        }


def resolve_module_path(network: nn.Module, path: str) -> str:
    """The ``named_modules`` name of ``path``, a dotted attribute path into the module tree.

    Only child-module names and (negative) indices are followed; nothing is imported or
    evaluated. An unknown path raises :class:`ConfigError` naming it.
    """
    parts = path.split(".") if path else []
    if not parts or not all(_PART.match(p) for p in parts):
        raise ConfigError(
            f"model.latent {path!r} is not a module path (dotted child names and indices only)"
        )
    module, names = network, []
    for part in parts:
        children = dict(module.named_children())
        if part.lstrip("-").isdigit() and part not in children:
            keys = list(children)
            try:
                part = keys[int(part)]
            except IndexError:
                part = "?"
        if part not in children:
            raise ConfigError(
                f"model.latent {path!r}: {type(module).__name__} at {'.'.join(names) or 'the root'} "
                f"has no child {part!r} (children: {', '.join(list(children)[:12])})"
            )
        module = children[part]
        names.append(part)
    return ".".join(names)


@dataclass
class _Event:
    order: int
    name: str
    in_voxels: int
    out: torch.Tensor
    is_concat: bool


#: modules known to emit channels-first feature maps; only modules holding one are watched,
#: so that channels-last tensors inside transformer blocks are never mistaken for grids
_GRID_MODULES = (
    nn.modules.conv._ConvNd,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.Upsample,
)


def _spatial(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape[2:])


def _voxels(t: torch.Tensor) -> int:
    n = 1
    for s in t.shape[2:]:
        n *= int(s)
    return n


def _first_tensor(obj: object) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)) and obj and isinstance(obj[0], torch.Tensor):
        return obj[0]
    return None


def _is_concat(inp: torch.Tensor, out: torch.Tensor) -> bool:
    c = inp.shape[1]
    if out.shape[1] <= c or _spatial(out) != _spatial(inp) or out.shape[0] != inp.shape[0]:
        return False
    return bool(torch.equal(out[:, :c], inp) or torch.equal(out[:, -c:], inp))


def _record(network: nn.Module, x: torch.Tensor, also: str = "") -> list[_Event]:
    events: list[_Event] = []
    ndim = x.ndim

    def hook(name: str):
        def run(module: nn.Module, args: tuple, output: object) -> None:
            out = output if isinstance(output, torch.Tensor) else None
            inp = _first_tensor(args)
            if out is None or out.ndim != ndim or inp is None or inp.ndim != ndim:
                return
            events.append(
                _Event(len(events), name, _voxels(inp), out.detach().clone(), _is_concat(inp, out))
            )

        return run

    handles = [
        m.register_forward_hook(hook(n))
        for n, m in network.named_modules()
        if n and (n == also or any(isinstance(sub, _GRID_MODULES) for sub in m.modules()))
    ]
    try:
        with torch.no_grad():
            network(x)
    finally:
        for h in handles:
            h.remove()
    return events


def _pick(events: list[_Event]) -> _Event:
    """Most channels; ties to the last to finish."""
    return max(events, key=lambda e: (e.out.shape[1], e.order))


def find_latent(
    network: nn.Module,
    in_channels: int,
    grid: tuple[int, ...],
    latent: str = "auto",
) -> LatentTaps:
    """Locate the bottleneck (and skip features) of ``network`` on an input of ``grid``.

    ``latent="auto"`` finds the deepest encoder output; otherwise ``latent`` is a module
    path (:func:`resolve_module_path`) and the skips are the encoder features on larger
    grids computed before it. Raises :class:`ConfigError` when nothing fits.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.rand((1, in_channels, *grid), generator=g)
    was_training = network.training
    network.eval()
    try:
        events = _record(
            network, x, "" if latent == "auto" else resolve_module_path(network, latent)
        )
    finally:
        network.train(was_training)
    if not events:
        raise ConfigError(
            f"{type(network).__name__}: no module emitted a feature map on grid {grid}"
        )
    if latent == "auto":
        first_up = next(
            (k for k, e in enumerate(events) if _voxels(e.out) > e.in_voxels), len(events)
        )
        encoder = [e for e in events[:first_up] if not e.is_concat]
        if not encoder:
            raise ConfigError(
                f"{type(network).__name__}: no encoder output before the first upsampling"
            )
        smallest = min(_voxels(e.out) for e in encoder)
        bottleneck = _pick([e for e in encoder if _voxels(e.out) == smallest])
    else:
        name = resolve_module_path(network, latent)
        found = [e for e in events if e.name == name]
        if not found:
            raise ConfigError(
                f"model.latent {latent!r}: module {name} emits no feature map of the input's rank"
            )
        bottleneck = found[-1]
    levels: dict[tuple[int, ...], list[_Event]] = {}
    for e in events[: bottleneck.order]:
        if not e.is_concat and _voxels(e.out) > _voxels(bottleneck.out):
            levels.setdefault(_spatial(e.out), []).append(e)
    skips = sorted((_pick(v) for v in levels.values()), key=lambda e: -_voxels(e.out))
    skips = [e for e in skips if all(a <= b for a, b in zip(_spatial(e.out), grid, strict=True))]
    return LatentTaps(
        bottleneck.name,
        tuple(e.name for e in skips),
        tuple(int(s) for s in bottleneck.out.shape[1:]),
        tuple(tuple(int(s) for s in e.out.shape[1:]) for e in skips),
    )


class _Stop(Exception):
    pass


def tap_latent(network: nn.Module, taps: LatentTaps, x: torch.Tensor, skips: bool = True) -> Latent:
    """Run ``network`` on ``x`` and return the tapped :class:`Latent` (cloned tensors).

    The forward pass stops once every tapped module has run.
    """
    modules = dict(network.named_modules())
    wanted = [taps.bottleneck, *(taps.skips if skips else ())]
    got: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def run(module: nn.Module, args: tuple, output: object) -> None:
            got[name] = output.clone()
            if len(got) == len(wanted):
                raise _Stop

        return run

    handles = [modules[n].register_forward_hook(hook(n)) for n in wanted]
    try:
        network(x)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in wanted if n not in got]
    if missing:
        raise RuntimeError(f"{type(network).__name__}: tapped modules did not run: {missing}")
    return Latent(got[taps.bottleneck], tuple(got[n] for n in taps.skips) if skips else ())
