"""Reading small untrusted text files (sidecars, configs): size, UTF-8 and nesting checked before parsing.

A checkpoint sidecar or a study config may come from someone else. Before a parser
sees it, the file's size is checked (no runaway memory) and the nesting depth of its
brackets is counted in one linear pass (no runaway recursion: JSON nested 100,000 deep
is refused here, not by a ``RecursionError`` deep inside the parser).
"""

from __future__ import annotations

import codecs
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from ..errors import InversionAuditError

__all__ = [
    "MAX_TEXT_BYTES",
    "MAX_NESTING",
    "decode_utf8",
    "nesting_depth",
    "not_utf8",
    "read_json",
    "read_text",
    "read_toml",
]

#: a sidecar or config larger than this is refused unread
MAX_TEXT_BYTES = 4 * 2**20
#: deepest accepted nesting of arrays/tables/objects
MAX_NESTING = 32
#: longest accepted run of digits in a number (no count or seed needs more)
MAX_DIGITS = 300
_DIGIT_RUN = re.compile(rf"\d{{{MAX_DIGITS + 1},}}")
_KEY_BEFORE = re.compile(
    r"(\"[^\"\n]{0,100}\"|'[^'\n]{0,100}'|[A-Za-z0-9_.-]{1,100})\s*[:=]\s*[-+]?$"
)
_ITEM_BEFORE = re.compile(r"[\[,]\s*[-+]?$")


def nesting_depth(text: str, comments: bool = False) -> int:
    """The deepest nesting of ``[]``/``{}`` outside strings (and ``#`` comments for TOML)."""
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'":
            quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else ch
            i += len(quote)
            while i < n and not text.startswith(quote, i):
                i += 2 if text[i] == "\\" and quote[0] == '"' else 1
            i += len(quote)
            continue
        if comments and ch == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1
    return deepest


def _not_utf8_message(path: str | os.PathLike[str], byte: int, offset: int) -> str:
    return f"{path}: not UTF-8 text (byte 0x{byte:02x} at offset {offset})"


def decode_utf8(data: bytes, path: str | os.PathLike[str], error: type[InversionAuditError]) -> str:
    """``data`` (the bytes of file ``path``) as UTF-8 text; else ``error`` naming the file,
    the first bad byte and its offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(_not_utf8_message(path, exc.object[exc.start], exc.start)) from None


def not_utf8(path: str | os.PathLike[str], error: type[InversionAuditError]) -> InversionAuditError:
    """The error to raise when a text read of ``path`` hit a ``UnicodeDecodeError``.

    The decoder's own offset is relative to a buffered chunk, so the file is scanned once
    more (in blocks, bounded memory) for its first byte that is not UTF-8.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    try:
        with open(path, "rb") as fh:
            while True:
                chunk = fh.read(2**20)
                start = offset - len(decoder.getstate()[0])  # file offset of the decoder's input
                try:
                    decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as exc:
                    return error(_not_utf8_message(path, exc.object[exc.start], start + exc.start))
                if not chunk:
                    break
                offset += len(chunk)
    except OSError as exc:
        return error(f"{path}: unreadable ({exc.strerror or exc})")
    return error(f"{path}: not UTF-8 text")  # the file changed since the failed read


def _read_text(
    path: Path, error: type[InversionAuditError], max_bytes: int, kind: str, comments: bool
) -> str:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{path}: {kind} is {size} bytes, more than the {max_bytes} allowed")
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except OSError as exc:
        raise error(f"{path}: unreadable {kind} ({exc})") from None
    # universal newlines, as a text-mode read would give
    text = decode_utf8(data, path, error).replace("\r\n", "\n").replace("\r", "\n")
    depth = nesting_depth(text, comments=comments)
    if depth > MAX_NESTING:
        raise error(f"{path}: {kind} is nested {depth} levels deep (at most {MAX_NESTING})")
    for run in _DIGIT_RUN.finditer(text):  # named here: the parsers would not name the key
        before = text[max(0, run.start() - 120) : run.start()]
        key = _KEY_BEFORE.search(before)
        if key or _ITEM_BEFORE.search(before):  # else: digits inside a string
            name = key.group(1).strip("\"'") if key else "a list item"
            raise error(
                f"{path}: {kind}: {name} is a number of {len(run.group())} digits "
                f"(at most {MAX_DIGITS})"
            )
    return text


def read_text(
    path: str | os.PathLike[str],
    error: type[InversionAuditError],
    kind: str = "text file",
    max_bytes: int = MAX_TEXT_BYTES,
    comments: bool = True,
) -> str:
    """The text of a file after the size, nesting and digit checks (for YAML or line lists)."""
    return _read_text(Path(path), error, max_bytes, kind, comments)


def read_json(
    path: str | os.PathLike[str],
    error: type[InversionAuditError],
    kind: str = "JSON file",
    max_bytes: int = MAX_TEXT_BYTES,
) -> Any:
    """Parse a JSON file after the size and nesting checks; every failure raises ``error`` naming it."""
    path = Path(path)
    text = _read_text(path, error, max_bytes, kind, comments=False)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise error(f"{path}: invalid JSON in {kind} ({exc})") from None


def read_toml(
    path: str | os.PathLike[str],
    error: type[InversionAuditError],
    kind: str = "TOML file",
    max_bytes: int = MAX_TEXT_BYTES,
) -> dict[str, Any]:
    """Parse a TOML file after the size and nesting checks; every failure raises ``error`` naming it."""
    path = Path(path)
    text = _read_text(path, error, max_bytes, kind, comments=True)
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError, ValueError) as exc:
        raise error(f"{path}: invalid TOML in {kind} ({exc})") from None
