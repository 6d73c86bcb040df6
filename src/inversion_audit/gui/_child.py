"""Entry point of the child process of :func:`inversion_audit.gui._subprocess.call_in_subprocess`.

Reads ``(fn, args, kwargs)`` from stdin, runs ``fn(*args, progress=..., **kwargs)`` and
writes progress, then the result or the exception, to stdout as length-prefixed pickles.
Anything else the work prints goes to stderr, so it cannot corrupt the protocol.
"""

from __future__ import annotations

import pickle
import sys

from ..children import die_with_parent
from ._subprocess import write_frame

__all__ = ["main"]


def main() -> int:
    die_with_parent()  # a killed napari must not leave a study or a registration running
    out = sys.stdout.buffer
    sys.stdout = sys.stderr
    fn, args, kwargs = pickle.loads(sys.stdin.buffer.read())

    def progress(done: int, total: int, stage: str) -> None:
        write_frame(out, ("progress", int(done), int(total), str(stage)))

    try:
        result = fn(*args, progress=progress, **kwargs)
    except BaseException as exc:  # sent to the parent, which re-raises it
        try:
            write_frame(out, ("error", exc))
        except Exception:  # an exception that does not pickle: keep its text
            write_frame(out, ("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        return 1
    write_frame(out, ("result", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
