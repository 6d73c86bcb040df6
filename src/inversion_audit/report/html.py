"""The report's Markdown as one self-contained HTML page (figures embedded as base64 PNG)."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

from .figures import Figure

__all__ = ["html_page", "md_to_html"]

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #bbb;padding:3px 7px;text-align:right}
th{background:#eee}td:first-child{text-align:left}img{max-width:100%}h2{border-bottom:1px solid #ccc}"""


def md_to_html(lines: list[str]) -> str:
    """The report's Markdown subset (headings, list items, paragraphs, tables) as HTML."""
    out, table = [], []

    def flush() -> None:
        if not table:
            return
        head = [c.strip() for c in table[0].strip("|").split("|")]
        body = [[c.strip() for c in row.strip("|").split("|")] for row in table[2:]]
        out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
        for row in body:
            out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>")
        out.append("</table>")
        table.clear()

    for line in lines:
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("- "):
            out.append(f"<p>{_inline(line[2:])}</p>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)


def _inline(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))


def html_page(title: str, lines: list[str], figures: Mapping[str, Figure]) -> str:
    """The whole page: ``lines`` (Markdown) as HTML, then every figure with its caption."""
    imgs = "\n".join(
        f"<figure><h3>{html.escape(k.replace('_', ' ', 1))}</h3>"
        f"<img alt='{html.escape(k)}' src='data:image/png;base64,{f.png}'>"
        f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
        for k, f in figures.items()
    )
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>{md_to_html(lines)}<h2>Figures</h2>{imgs}</body></html>"
