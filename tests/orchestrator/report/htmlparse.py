"""A small HTML reader for tests: tables (by class or enclosing figure), images, sections, every URL-bearing attribute."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

URL_ATTRS = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background", "xlink:href", "ping", "manifest"}


@dataclass
class ParsedTable:
    cls: str
    figure: str | None
    rows: list[list[str]] = field(default_factory=list)


class ReportParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[ParsedTable] = []
        self.images: list[dict[str, str]] = []
        self.section_ids: list[str] = []
        self.url_attrs: list[tuple[str, str, str]] = []  # (tag, attr, value)
        self.styles: list[str] = []  # <style> contents and style="" attributes
        self.tags: list[str] = []
        self._figure: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        for k, v in a.items():
            if k in URL_ATTRS:
                self.url_attrs.append((tag, k, v))
            if k == "style":
                self.styles.append(v)
        if tag == "section":
            self.section_ids.append(a.get("id", ""))
        elif tag == "figure":
            self._figure = a.get("id")
        elif tag == "img":
            self.images.append(a)
        elif tag == "table":
            self.tables.append(ParsedTable(a.get("class", ""), self._figure))
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "style":
            self._in_style = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self.tables:
            self.tables[-1].rows.append(self._row)
            self._row = None
        elif tag == "figure":
            self._figure = None
        elif tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_style:
            self.styles.append(data)


def parse(text: str) -> ReportParser:
    p = ReportParser()
    p.feed(text)
    p.close()
    return p


def table(p: ReportParser, cls: str) -> list[list[str]]:
    """Body rows of the first table with class ``cls`` (header row dropped)."""
    for t in p.tables:
        if t.cls == cls:
            return t.rows[1:]
    raise AssertionError(f"no table of class {cls!r}; classes: {[t.cls for t in p.tables]}")


def figure_table(p: ReportParser, figure_id: str) -> list[list[str]]:
    """The plotted-numbers table of one figure, header row included."""
    for t in p.tables:
        if t.figure == figure_id:
            return t.rows
    raise AssertionError(f"no data table in figure {figure_id!r}")


def md_table_after(md: str, heading: str) -> list[list[str]]:
    """Rows of the first Markdown table after ``heading`` (header and separator dropped)."""
    lines = md.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return rows
