"""Child processes that die with their parent, and scratch folders that the next run cleans.

ANTs registrations and N4 run in child Python processes. When the parent is killed
(``kill -9``, a crash), such a child must not go on running, and the image arrays it
was given must not stay on disk:

- the child calls :func:`die_with_parent` first thing: on Linux the kernel sends it
  SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); everywhere a watchdog
  thread polls the parent's pid and ends the child when the parent is gone (it runs
  between GIL-holding native calls);
- temporary files go to :func:`scratch_dir`, a folder ``<cache>/tmp/<prefix>-<pid>-<random>``
  named after the process that owns it; :func:`clean_stale_scratch` (run whenever a new
  scratch folder is made, and at the start of a study) removes the folders whose
  owner is no longer alive.

Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "PARENT_PID_ENV",
    "child_env",
    "clean_stale_scratch",
    "die_with_parent",
    "scratch_dir",
    "scratch_root",
]

#: the environment variable through which a parent tells its child its pid
PARENT_PID_ENV = "INVERSION_AUDIT_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) plus this process's pid for :func:`die_with_parent`."""
    out = dict(os.environ if env is None else env)
    out[PARENT_PID_ENV] = str(os.getpid())
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:
        return False
    return True


def _watch(parent: int, interval: float) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent or not _pid_alive(parent):
            os._exit(1)


def die_with_parent(parent: int | None = None, interval: float = 0.5) -> None:
    """Make this (child) process end when its parent dies; call it first thing in the child.

    ``parent`` defaults to :data:`PARENT_PID_ENV` from the environment (set by
    :func:`child_env`), else the current parent. If the parent is already gone, the
    child exits at once.
    """
    if parent is None:
        value = os.environ.get(PARENT_PID_ENV, "")
        parent = int(value) if value.isdigit() else os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the watchdog remains
            pass
    if os.getppid() != parent or not _pid_alive(parent):  # died before prctl took effect
        os._exit(1)
    threading.Thread(
        target=_watch, args=(parent, interval), name="parent-watchdog", daemon=True
    ).start()


def scratch_root() -> Path:
    """``<cache>/tmp``: where scratch folders are made."""
    from .io import cache_dir

    return cache_dir() / "tmp"


def clean_stale_scratch(root: Path | None = None) -> list[Path]:
    """Remove scratch folders whose owner process is dead; return the folders removed."""
    root = scratch_root() if root is None else root
    removed = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for entry in entries:
        parts = entry.name.split("-")
        pid = next((int(p) for p in parts[1:2] if p.isdigit()), None) if len(parts) >= 3 else None
        if pid is None or pid == os.getpid() or _pid_alive(pid) or not entry.is_dir():
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


@contextmanager
def scratch_dir(prefix: str = "ants") -> Iterator[Path]:
    """A private temporary folder ``<cache>/tmp/<prefix>-<pid>-<random>``, removed on exit.

    Stale folders of dead processes are cleaned first. ``prefix`` holds no ``-``.
    """
    root = scratch_root()
    root.mkdir(parents=True, exist_ok=True)
    clean_stale_scratch(root)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix.replace('-', '_')}-{os.getpid()}-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
