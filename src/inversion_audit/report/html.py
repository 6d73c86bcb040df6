"""The report's Markdown as one self-contained HTML page, and as ``report.md``.

The report is written once, as Markdown lines (headings ``#`` to ``######``, list items and
nested items, paragraphs, pipe tables, ``**bold**``, ``*italic*``, ```code```, and links to
the report's own headings ``[text](#anchor)``), with three kinds of marker lines that
Markdown viewers hide:

- ``<!-- figure: KEY -->`` (:func:`~.figures.figure_slot`): the figure ``KEY`` goes here
  (HTML: the embedded image, at 80% of the page's width, with its alt text and caption;
  Markdown: its caption);
- ``<!-- verdict -->`` ... ``<!-- /verdict -->``: the verdict cards' block;
- ``<!-- verdict-card RISK -->`` ... ``<!-- /verdict-card -->``: one card (HTML: an element
  of class ``verdict-card``).

Headings get GitHub's anchors (:func:`slug`), so a link works in both files. Links to
anything but an anchor of the page are shown as text: the page loads nothing.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

from .figures import Figure, figure_slot, slot_key

__all__ = ["Slugger", "html_page", "md_to_html", "report_markdown", "slug"]

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;color:#222;
line-height:1.4;padding:0 1em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}
td,th{border:1px solid #bbb;padding:3px 7px;text-align:right}th{background:#eee}
td:first-child,th:first-child{text-align:left}h2{border-bottom:1px solid #ccc;margin-top:1.6em}
h3{margin:1.2em 0 .4em}figure.report-figure{margin:.6em 0 1.2em}
figure.report-figure img{width:80%;display:block}figcaption{font-size:13px;color:#444;width:80%}
.verdict{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:8px}
.verdict-card{border:1px solid #999;border-left:8px solid #999;border-radius:5px;
padding:2px 10px;font-size:13px;line-height:1.3}.verdict-card h3{margin:.3em 0;font-size:15px}
.verdict-card ul{margin:.2em 0;padding-left:1.1em}.verdict-card li{margin:.15em 0}
.risk-high{border-left-color:#c0392b}.risk-moderate{border-left-color:#e67e22}
.risk-low{border-left-color:#27ae60}.risk-not-shown{border-left-color:#7f8c8d}
.verdict+p,.verdict+p+p{font-size:12px;color:#444;margin:.4em 0}code{background:#f3f3f3;padding:0 3px}"""

_HEADING = re.compile(r"^(#{1,6}) +(.*?) *#* *$")
_CARD = re.compile(r"^<!-- verdict-card ([a-z ]+) -->$")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def slug(text: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    plain = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text).replace("**", "").replace("`", "")
    return re.sub(r"[^\w\- ]", "", plain.strip().lower()).replace(" ", "-")


class Slugger:
    """Unique anchors in page order (a repeated heading gets ``-1``, ``-2``, ... as on GitHub)."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, text: str) -> str:
        base = slug(text)
        count = self.seen.get(base, 0)
        self.seen[base] = count + 1
        return base if count == 0 else f"{base}-{count}"


def _inline(text: str) -> str:
    """Escaped text with bold, italic, code and in-page links."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"(?<![*\w])\*(?![\s*])(.+?)(?<![\s*])\*(?![*\w])", r"<i>\1</i>", out)

    def link(m: re.Match) -> str:
        label, target = m.group(1), m.group(2)
        if target.startswith("#"):
            return f"<a href='#{html.escape(target[1:], quote=True)}'>{label}</a>"
        return f"{label} ({target})"  # shown, never loaded

    return _LINK.sub(link, out)


def _figure(key: str, figures: Mapping[str, Figure]) -> str:
    f = figures.get(key)
    if f is None:
        return ""
    return (
        f"<figure class='report-figure' id='figure-{html.escape(key, quote=True)}'>"
        f"<img alt='{html.escape(f.alt, quote=True)}' src='data:image/png;base64,{f.png}'>"
        f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
    )


def md_to_html(lines: list[str], figures: Mapping[str, Figure] | None = None) -> str:
    """The report's Markdown (see the module) as HTML; ``figures`` fill the figure slots."""
    figures = figures or {}
    out: list[str] = []
    table: list[str] = []
    depth = 0  # open <ul> levels
    anchors = Slugger()

    def close_lists(to: int = 0) -> None:
        nonlocal depth
        while depth > to:
            out.append("</li></ul>")
            depth -= 1

    def flush_table() -> None:
        if not table:
            return
        head = [c.strip() for c in table[0].strip().strip("|").split("|")]
        body = [[c.strip() for c in row.strip().strip("|").split("|")] for row in table[2:]]
        out.append("<table><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in head) + "</tr>")
        for row in body:
            out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>")
        out.append("</table>")
        table.clear()

    for line in lines:
        if line.startswith("|"):
            close_lists()
            table.append(line)
            continue
        flush_table()
        item = re.match(r"^( *)- (.*)$", line)
        if item:
            level = len(item.group(1)) // 2 + 1
            if level > depth:
                while depth < level:
                    out.append("<ul><li>")
                    depth += 1
            else:
                close_lists(level)
                out.append("</li><li>")
            out.append(_inline(item.group(2)))
            continue
        close_lists()
        heading = _HEADING.match(line)
        card = _CARD.match(line)
        if heading:
            n, text = len(heading.group(1)), heading.group(2)
            out.append(f"<h{n} id='{anchors(text)}'>{_inline(text)}</h{n}>")
        elif slot_key(line) is not None:
            out.append(_figure(slot_key(line), figures))
        elif line == "<!-- verdict -->":
            out.append("<div class='verdict'>")
        elif card:
            risk = card.group(1).strip().replace(" ", "-")
            out.append(f"<div class='verdict-card risk-{risk}'>")
        elif line in ("<!-- /verdict -->", "<!-- /verdict-card -->"):
            out.append("</div>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush_table()
    close_lists()
    return "\n".join(out)


def _unplaced(lines: list[str], figures: Mapping[str, Figure]) -> list[str]:
    """The keys of ``figures`` that no slot of ``lines`` places, in their order."""
    placed = {slot_key(line) for line in lines}
    return [k for k in figures if k not in placed]


def html_page(title: str, lines: list[str], figures: Mapping[str, Figure]) -> str:
    """The whole page: ``lines`` (Markdown) as HTML, each figure at its slot (any figure
    without one at the end, under "Other figures")."""
    rest = _unplaced(lines, figures)
    if rest:
        lines = [*lines, "", "## Other figures", "", *(figure_slot(k) for k in rest)]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>{md_to_html(lines, figures)}</body></html>"
    )


def report_markdown(lines: list[str], figures: Mapping[str, Figure]) -> str:
    """``report.md``: ``lines`` with each figure slot as its caption (the image is in
    report.html; a figure without a slot at the end, under "Other figures"); the verdict
    markers stay (Markdown viewers hide them; :func:`~.pdf.draw_page_one` reads them)."""
    rest = _unplaced(lines, figures)
    if rest:
        lines = [*lines, "", "## Other figures", "", *(figure_slot(k) for k in rest)]
    out = []
    for line in lines:
        key = slot_key(line)
        if key is not None:
            if key in figures:
                out += [f"*Figure ({key}, in report.html): {figures[key].caption}*", ""]
        else:
            out.append(line)
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(out))
    return text.rstrip("\n") + "\n"
