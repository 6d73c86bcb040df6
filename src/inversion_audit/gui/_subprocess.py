"""Run a compute function in a child Python process, forwarding progress and honouring cancel.

ANTs holds the GIL while it registers, so a registration in a thread would freeze the
napari UI thread. :func:`call_in_subprocess` runs such work in ``python -m
inversion_audit.gui._child`` instead (a fresh interpreter: unlike multiprocessing's
``spawn`` it never re-runs the user's main script). The calling worker thread relays the
child's progress reports to its own ``progress`` callback, which may raise
:class:`~inversion_audit.errors.JobCancelled`; the child is then killed.

Protocol: the parent writes one pickle ``(fn, args, kwargs)`` to the child's stdin; the
child writes length-prefixed pickles ``("progress", done, total, stage)``, then
``("result", value)`` or ``("error", exception)`` to its stdout.
"""

from __future__ import annotations

import os
import pickle
import queue as queue_module
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import IO, Any

from ..children import child_env
from ..progress import ProgressCallback

__all__ = ["call_in_subprocess", "read_frame", "write_frame"]

_HEADER = 8


def write_frame(stream: IO[bytes], message: Any) -> None:
    """Write one length-prefixed pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(_HEADER, "little"))
    stream.write(data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any | None:
    """Read one length-prefixed pickle; ``None`` at end of stream."""
    header = stream.read(_HEADER)
    if len(header) < _HEADER:
        return None
    size = int.from_bytes(header, "little")
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


def _reader(stream: IO[bytes], out: queue_module.Queue) -> None:
    while (message := read_frame(stream)) is not None:
        out.put(message)
    out.put(None)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def call_in_subprocess(
    fn: Callable[..., Any],
    *args: Any,
    progress: ProgressCallback | None = None,
    poll_seconds: float = 0.05,
    **kwargs: Any,
) -> Any:
    """``fn(*args, progress=..., **kwargs)`` in a child interpreter; returns its result.

    ``fn`` must be importable by name from a module that does not import Qt. Its
    exceptions are re-raised here. ``progress`` is called at least every
    ``poll_seconds`` (repeating the last report) so that a cancel takes effect
    promptly; the child is killed when the call ends early.
    """
    payload = pickle.dumps((fn, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inversion_audit.gui._child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=child_env(_child_env()),  # the child dies with napari
        )
        messages: queue_module.Queue = queue_module.Queue()
        reader = threading.Thread(target=_reader, args=(proc.stdout, messages), daemon=True)
        reader.start()
        last: tuple = (0, 0, "starting worker process")
        try:
            proc.stdin.write(payload)
            proc.stdin.close()
            while True:
                if progress is not None:
                    progress(*last)
                try:
                    message = messages.get(timeout=poll_seconds)
                except queue_module.Empty:
                    continue
                if message is None:
                    proc.wait(timeout=10)
                    stderr.seek(0)
                    tail = stderr.read().decode("utf-8", "replace").strip().splitlines()[-5:]
                    raise RuntimeError(
                        f"{getattr(fn, '__name__', fn)}: worker process exited with code {proc.returncode}"
                        + (f": {' | '.join(tail)}" if tail else "")
                    )
                kind = message[0]
                if kind == "progress":
                    last = tuple(message[1:])
                elif kind == "result":
                    return message[1]
                else:
                    raise message[1]
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            proc.stdout.close()
            reader.join(timeout=5)
