"""Device and thread selection shared by the CLI and the GUI. torch is imported lazily."""

from __future__ import annotations

import os
from numbers import Integral
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEVICES",
    "available_devices",
    "cpu_count",
    "get_device",
    "resolve_threads",
    "set_threads",
]

#: every device name a config or a flag may give (``"auto"``: cuda, then mps, then cpu)
DEVICES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """``"auto"`` plus the devices that exist here (cpu, cuda, mps)."""
    import torch

    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def get_device(name: str | None = "auto") -> torch.device:
    """Resolve a device name. ``"auto"`` picks cuda, then mps, then cpu.

    A device that is requested but absent is an error, not a silent fallback.
    """
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError("device 'mps' requested but MPS is not available")
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op CPU threads (``None`` leaves the default)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def cpu_count() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | str) -> int:
    """A thread or worker count: ``"auto"`` is every core this process may use
    (:func:`cpu_count`), an integer of at least 1 is itself (a string of digits too).

    Raises ``ValueError`` for anything else (0, negative numbers, booleans, other words).
    """
    if isinstance(threads, str):
        text = threads.strip().lower()
        if text == "auto":
            return cpu_count()
        if text.isdigit() and int(text) >= 1:
            return int(text)
    elif isinstance(threads, Integral) and not isinstance(threads, bool) and threads >= 1:
        return int(threads)
    raise ValueError(f'threads must be "auto" or an integer >= 1, got {threads!r}')
