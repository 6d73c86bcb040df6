"""``report.pdf``: the report laid out on A4 pages by matplotlib's PDF backend, for archiving
with a model release.

The same Markdown lines as ``report.md`` and ``report.html`` (see :mod:`.html`): page 1 holds
the title, the verdict cards and "What to do"; the rest follows from a new page, headings
and paragraphs as text, tables in a monospaced font (shrunk to the page's width), and each
figure where the HTML shows it. Text is embedded as TrueType (``pdf.fonttype`` 42), so it can
be searched and extracted.
"""

from __future__ import annotations

import base64
import io
import re
import textwrap
from collections.abc import Mapping

from .figures import Figure, slot_key

__all__ = ["draw_page_one", "report_pdf"]

_PAGE = (8.27, 11.69)  # A4 portrait, inches
_MARGIN = 0.6
_WIDTH = _PAGE[0] - 2 * _MARGIN
_HEADING_SIZE = {1: 15.0, 2: 12.5, 3: 10.5}
_TEXT = 8.5
_RISK_COLOURS = {
    "high": "#c0392b",
    "moderate": "#e67e22",
    "low": "#27ae60",
    "not shown": "#7f8c8d",
}


def _plain(text: str) -> str:
    """Inline Markdown as plain text (links keep their words)."""
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    return text.replace("**", "").replace("`", "").replace("*", "")


class _Pages:
    """A cursor over pages: text, tables and images placed from the top down."""

    def __init__(self, pdf) -> None:
        self.pdf, self.fig, self.y = pdf, None, 0.0
        self.card: tuple[float, str] | None = None
        self.pages: list = []

    def new_page(self) -> None:
        import matplotlib.pyplot as plt

        self.close_page()
        self.fig = plt.figure(figsize=_PAGE)
        self.y = _MARGIN

    def close_page(self) -> None:
        import matplotlib.pyplot as plt

        if self.fig is not None:
            self.end_card()
            if self.pdf is not None:
                self.pdf.savefig(self.fig)
            self.pages.append(self.fig)
            if self.pdf is not None:
                plt.close(self.fig)
            self.fig = None

    def room(self, height: float) -> None:
        if self.fig is None or self.y + height > _PAGE[1] - _MARGIN:
            card = self.card
            self.new_page()
            if card is not None:
                self.card = (self.y, card[1])

    def text(self, line: str, size: float, x: float = 0.0, **kw) -> None:
        step = size * 1.35 / 72
        self.room(step)
        self.fig.text(
            (_MARGIN + x) / _PAGE[0],
            1 - (self.y + size / 72) / _PAGE[1],
            line,
            fontsize=size,
            va="baseline",
            **kw,
        )
        self.y += step

    def paragraph(self, text: str, size: float = _TEXT, indent: float = 0.0, **kw) -> None:
        chars = int((_WIDTH - indent) * 72 / (size * 0.5))
        for part in textwrap.wrap(_plain(text), chars) or [""]:
            self.text(part, size, x=indent, **kw)
        self.y += size * 0.3 / 72

    def table(self, rows: list[list[str]]) -> None:
        cells = [[_plain(c) for c in row] for row in rows]
        widths = [max(len(r[k]) if k < len(r) else 0 for r in cells) for k in range(len(cells[0]))]
        total = sum(widths) + 2 * (len(widths) - 1)
        size = max(4.0, min(7.5, _WIDTH * 72 / (0.6 * max(total, 1))))
        limit = int(_WIDTH * 72 / (0.6 * size))
        for k, row in enumerate(cells):
            text = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False))
            self.text(text[:limit], size, family="monospace", weight="bold" if k == 0 else None)
        self.y += 0.08

    @staticmethod
    def pixels(figure: Figure):
        import matplotlib.image as mpimg

        return mpimg.imread(io.BytesIO(base64.b64decode(figure.png)), format="png")

    @staticmethod
    def size(pixels) -> tuple[float, float]:
        """The width and height (inches) a figure takes: 85% of the text width at most,
        never taller than a page."""
        h, w = pixels.shape[:2]
        width = 0.85 * _WIDTH
        height = min(width * h / w, _PAGE[1] - 2 * _MARGIN - 0.8)
        return height * w / h, height

    def image(self, figure: Figure) -> None:
        pixels = self.pixels(figure)
        width, height = self.size(pixels)
        self.room(height + 0.1)
        ax = self.fig.add_axes(
            (
                _MARGIN / _PAGE[0],
                1 - (self.y + height) / _PAGE[1],
                width / _PAGE[0],
                height / _PAGE[1],
            )
        )
        ax.imshow(pixels, interpolation="antialiased")
        ax.set_axis_off()
        self.y += height + 0.05
        self.paragraph(figure.caption, size=7.0, color="#444444")

    def start_card(self, risk: str) -> None:
        self.y += 0.05
        self.card = (self.y, risk)

    def end_card(self) -> None:
        from matplotlib.patches import Rectangle

        if self.card is None or self.fig is None:
            return
        top, risk = self.card
        self.fig.add_artist(
            Rectangle(
                ((_MARGIN - 0.15) / _PAGE[0], 1 - (self.y + 0.02) / _PAGE[1]),
                0.07 / _PAGE[0],
                (self.y + 0.02 - top) / _PAGE[1],
                transform=self.fig.transFigure,
                color=_RISK_COLOURS.get(risk, "#7f8c8d"),
            )
        )
        self.card = None
        self.y += 0.08


def _layout(pages: _Pages, lines: list[str], figures: Mapping[str, Figure]) -> None:
    """Lay ``lines`` out on ``pages``, from a new page."""
    table: list[list[str]] = []
    pages.new_page()
    for k, line in enumerate(lines):
        if line.startswith("|"):
            if not line.startswith("|---"):
                table.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        if table:
            pages.table(table)
            table = []
        heading = re.match(r"^(#{1,6}) +(.*)$", line)
        card = re.match(r"^<!-- verdict-card ([a-z ]+) -->$", line)
        if heading:
            level = len(heading.group(1))
            if level <= 2 and pages.y > _MARGIN + 0.2:
                pages.y += 0.12
            size = _HEADING_SIZE.get(level, _TEXT + 1)
            after = next((x for x in lines[k + 1 :] if x.strip()), "")
            key = slot_key(after)
            below = size * 4 / 72  # a heading stays with its first line, or its figure
            if key in figures:
                below = size * 2 / 72 + pages.size(pages.pixels(figures[key]))[1] + 0.1
            pages.room(below)
            pages.paragraph(heading.group(2), size=size, weight="bold")
        elif card:
            pages.start_card(card.group(1).strip())
        elif line == "<!-- /verdict-card -->":
            pages.end_card()
        elif slot_key(line) is not None:
            if slot_key(line) in figures:
                pages.image(figures[slot_key(line)])
        elif line.startswith("<!--"):
            continue
        elif re.match(r"^ *- ", line):
            indent = 0.15 * (1 + (len(line) - len(line.lstrip())) // 2)
            pages.paragraph("• " + line.lstrip()[2:], indent=indent)
        elif line.strip():
            pages.paragraph(line)
    if table:
        pages.table(table)


_FRONT = ("## Verdict", "## What to do")


def _front(lines: list[str]) -> tuple[int, int]:
    """Where page 1's block (the verdict and "What to do") starts and ends in ``lines``."""
    start = next((k for k, line in enumerate(lines) if line.startswith(_FRONT)), len(lines))
    end = next(
        (
            k
            for k in range(start + 1, len(lines))
            if lines[k].startswith("## ") and not lines[k].startswith(_FRONT)
        ),
        len(lines),
    )
    return start, end


def draw_page_one(title: str, lines: list[str]):
    """Page 1 (title, verdict cards, "What to do") as a matplotlib figure, not saved."""
    start, end = _front(lines)
    pages = _Pages(None)
    _layout(pages, [f"# {title}", "", *lines[start:end]], {})
    pages.close_page()
    return pages.pages[0]


def report_pdf(title: str, lines: list[str], figures: Mapping[str, Figure]) -> bytes:
    """The report as PDF bytes: page 1 the verdict and "What to do", then everything else
    (see the module); ``lines`` are the report's Markdown, ``figures`` fill its slots."""
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    matplotlib.use("Agg")
    start, end = _front(lines)
    body = [line for line in lines[:start] if not line.startswith("# ")] + lines[end:]
    buf = io.BytesIO()
    with matplotlib.rc_context({"pdf.fonttype": 42}):
        with PdfPages(buf, metadata={"Title": title, "Creator": "inversion-audit"}) as pdf:
            pages = _Pages(pdf)
            _layout(pages, [f"# {title}", "", *lines[start:end]], figures)
            pages.close_page()
            _layout(pages, body, figures)
            pages.close_page()
    return buf.getvalue()
