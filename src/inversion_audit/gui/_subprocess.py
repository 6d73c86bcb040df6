"""Run a compute function in a child process, forwarding progress and honouring cancel.

ANTs holds the GIL while it registers, so a registration in a thread would freeze the
napari UI thread. :func:`call_in_subprocess` runs such work in a ``spawn`` child process
instead; the calling (worker) thread relays the child's progress reports to its own
``progress`` callback, which may raise
:class:`~inversion_audit.errors.JobCancelled` to terminate the child.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import queue as queue_module
from collections.abc import Callable
from typing import Any

from ..progress import ProgressCallback

__all__ = ["call_in_subprocess"]


def _put(q: Any, message: tuple) -> None:
    try:
        payload = pickle.dumps(message)
    except Exception as exc:  # an unpicklable error: keep its text
        payload = pickle.dumps(
            ("error", RuntimeError(f"{type(message[1]).__name__}: {message[1]} ({exc})"))
        )
    q.put(payload)


def _child(q: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    def progress(done: int, total: int, stage: str) -> None:
        _put(q, ("progress", int(done), int(total), str(stage)))

    try:
        result = fn(*args, progress=progress, **kwargs)
    except BaseException as exc:  # sent to the parent, which re-raises it
        _put(q, ("error", exc))
    else:
        _put(q, ("result", result))


def call_in_subprocess(
    fn: Callable[..., Any],
    *args: Any,
    progress: ProgressCallback | None = None,
    poll_seconds: float = 0.05,
    **kwargs: Any,
) -> Any:
    """``fn(*args, progress=..., **kwargs)`` in a spawned process; returns its result.

    ``fn`` must be importable by name (a module-level function of a module that does
    not import Qt). Its exceptions are re-raised here. ``progress`` is called at least
    every ``poll_seconds`` (repeating the last report), so a cancel takes effect
    promptly; the child is terminated when the call ends early.
    """
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(q, fn, args, kwargs), daemon=True)
    last = (0, 0, "starting worker process")
    proc.start()
    try:
        while True:
            if progress is not None:
                progress(*last)
            try:
                message = pickle.loads(q.get(timeout=poll_seconds))
            except queue_module.Empty:
                if not proc.is_alive() and q.empty():
                    raise RuntimeError(
                        f"{getattr(fn, '__name__', fn)}: worker process exited with code {proc.exitcode}"
                    ) from None
                continue
            kind = message[0]
            if kind == "progress":
                last = message[1:]
            elif kind == "result":
                return message[1]
            else:
                raise message[1]
    finally:
        if proc.is_alive():
            proc.terminate()
        proc.join(timeout=5)
        q.close()
