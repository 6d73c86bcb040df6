"""Error messages a clinician can read: one line, the whole file name, no library advice.

The core's errors name the file and the problem; some carry a library's own explanation
in parentheses or on further lines. PyTorch's refusal of a pickle, for one, suggests
loading it again with ``weights_only=False``: advice that must never reach the user of a
tool whose promise is that untrusted checkpoints never run.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["user_message", "CHECKPOINT_SUFFIXES", "checkpoint_problem"]

#: phrases of library advice (PyTorch's unsafe-loading hints and similar)
_ADVICE = re.compile(
    r"weights_only|can still be loaded|trust the source|add_safe_globals|safe_globals|"
    r"re-?running|will likely succeed|torch\.serialization",
    re.IGNORECASE,
)
#: a parenthesised aside (one nesting level)
_ASIDE = re.compile(r"\s*\((?:[^()]|\([^()]*\))*\)")

#: files a checkpoint field accepts (the weights; the ``.json`` sidecar lies beside them)
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".json")


def user_message(error: BaseException | str) -> str:
    """``error`` as one line: its first line, without asides or sentences of library advice."""
    text = str(error).strip() or type(error).__name__
    line = text.splitlines()[0].strip()
    line = _ASIDE.sub(lambda m: "" if _ADVICE.search(m.group(0)) else m.group(0), line)
    if _ADVICE.search(line):  # advice outside an aside: drop those sentences
        parts = re.split(r"(?<=[.;])\s+", line)
        line = " ".join(p for p in parts if not _ADVICE.search(p)).strip()
    return re.sub(r"\s{2,}", " ", line).strip() or type(error).__name__


def checkpoint_problem(path: str | Path, what: str) -> str | None:
    """Why ``path`` cannot be a checkpoint, in a line naming it (``None`` when it may be)."""
    p = Path(str(path)).expanduser()
    if not p.exists():
        return f"{what} {p}: file not found"
    if p.is_dir():
        return f"{what} {p}: a folder, not a checkpoint file"
    if not p.name.lower().endswith(CHECKPOINT_SUFFIXES):
        return (
            f"{what} {p}: not a checkpoint; choose a .safetensors (or .pt/.pth) file "
            "with its .json sidecar beside it"
        )
    return None
