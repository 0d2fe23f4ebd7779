"""The generated parts of a write-up, found strictly before anything is rewritten.

A markdown file marks a generated table with ``<!-- table: NAME -->`` on a line of its own
and ``<!-- /table -->`` after it, and a generated number with ``<!--v NAME -->`` before it
and ``<!--/v-->`` after it. :func:`parse_markers` returns each marked span, or refuses the
whole file when a marker is opened and not closed, closed without being opened, nested,
or mistyped (an HTML comment that looks like a marker but is not one exactly): a loose
reading could rewrite prose up to the next closing marker, or leave a number unchecked.
Markers quoted in code are text, not markers: inline code (`` `<!--v … -->` ``, within one
paragraph, as markdown pairs backticks), a fenced block (```` ``` ````) or an indented code
block. An inline code span that holds a marker and anything else (an unmatched backtick
pairing with one further on) is refused: it would hide the markers between them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

COMMENT = re.compile(r"<!--(.*?)-->", re.DOTALL)
# markdown pairs backticks within a paragraph only: a span never crosses a blank line
CODE_SPAN = re.compile(r"(`+)(?:(?!\1)(?!\n[ \t]*\n).)+?\1", re.DOTALL)
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")
TABLE_OPEN = re.compile(r" table: (?P<name>[\w:/+.-]+) ")
VALUE_OPEN = re.compile(r"v (?P<name>[^<>]+?) ")
# comments that are probably meant as markers: refused unless they are exactly one
LOOKS_LIKE_MARKER = re.compile(r"^\s*/?\s*(v\b|/v|t[a-z]{2,4}l?e?s?\s*:|/\s*t[a-z]{2,4})", re.IGNORECASE)


class MarkerError(ValueError):
    """A write-up's markers do not pair up or are mistyped."""


@dataclass(frozen=True)
class Marked:
    """One generated span: ``text[body_start:body_end]`` is rewritten from ``name``."""

    kind: Literal["table", "value"]
    name: str
    body_start: int
    body_end: int
    line: int


def _blank(chunk: str) -> str:
    """``chunk`` as spaces, its line breaks kept (positions and line numbers stay)."""
    return re.sub(r"[^\n]", " ", chunk)


def _blank_code_blocks(text: str) -> str:
    """``text`` with fenced code blocks and indented code blocks (lines indented by four
    spaces or a tab after a blank line that follows a top-level paragraph, not a list)
    blanked."""
    lines = text.split("\n")
    fence: str | None = None
    previous = ""  # the last non-blank line outside code
    blank_before = True
    for number, line in enumerate(lines):
        opening = FENCE.match(line)
        if fence is not None:
            closes = opening is not None and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence)
            lines[number] = _blank(line)
            fence = None if closes and not line.strip().strip(fence[0]) else fence
            continue
        if opening:
            fence, lines[number] = opening.group(1), _blank(line)
            continue
        indented = line.startswith(("    ", "\t")) and line.strip()
        in_list = bool(LIST_ITEM.match(previous)) or previous.startswith((" ", "\t"))
        if indented and (blank_before or previous == "\0code") and not in_list:
            lines[number], previous = _blank(line), "\0code"
            continue
        if line.strip():
            previous = line
        blank_before = not line.strip()
    return "\n".join(lines)


def _blank_code_spans(text: str, fail: Callable[[int, str], MarkerError]) -> str:
    """``text`` with code replaced by spaces of the same length (positions kept).

    Raises:
        MarkerError: an inline code span that holds a marker and more than that marker.
    """
    text = _blank_code_blocks(text)

    def blank(span: re.Match[str]) -> str:
        inside = span.group(0)[len(span.group(1)) : -len(span.group(1))]
        quoted = [m for m in COMMENT.finditer(inside) if _is_marker(m.group(1))]
        if quoted and (len(quoted) > 1 or inside.strip() != quoted[0].group(0)):
            raise fail(
                span.start(),
                f"inline code holds the marker {quoted[0].group(0)!r} among other text: a backtick without its pair "
                "hides the markers up to the next one; pair or escape that backtick",
            )
        return _blank(span.group(0))

    return CODE_SPAN.sub(blank, text)


def _is_marker(inside: str) -> bool:
    """Whether a comment's inside is, or looks like, a marker."""
    return bool(
        TABLE_OPEN.fullmatch(inside)
        or VALUE_OPEN.fullmatch(inside)
        or inside in (" /table ", "/v")
        or LOOKS_LIKE_MARKER.match(inside)
    )


def parse_markers(text: str, where: str = "the write-up") -> list[Marked]:
    """Every marked table and value of ``text``, in order.

    Raises:
        MarkerError: ``"<where>, line N: <problem>"`` for the first problem found.
    """
    spans: list[Marked] = []
    opened: tuple[str, str, int, int] | None = None  # kind, name, body start, line

    def line_of(position: int) -> int:
        return text.count("\n", 0, position) + 1

    def fail(position: int, problem: str) -> MarkerError:
        return MarkerError(f"{where}, line {line_of(position)}: {problem}")

    visible = _blank_code_spans(text, fail)

    for match in COMMENT.finditer(visible):
        inside, start, end = match.group(1), match.start(), match.end()
        table, value = TABLE_OPEN.fullmatch(inside), VALUE_OPEN.fullmatch(inside)
        if table or value:
            if opened is not None:
                raise fail(
                    start,
                    f"{match.group(0)!r} opens a marker inside the {opened[0]} {opened[1]!r} opened at line "
                    f"{opened[3]}, which is never closed",
                )
            if table and not visible.startswith("\n", end):
                raise fail(start, f"{match.group(0)!r} must end its line (the table starts on the next one)")
            kind = "table" if table else "value"
            name = (table or value).group("name")  # type: ignore[union-attr]
            opened = (kind, name.strip(), end + (1 if table else 0), line_of(start))
        elif inside in (" /table ", "/v"):
            kind = "table" if inside == " /table " else "value"
            if opened is None or opened[0] != kind:
                what = (
                    f"the {opened[0]} {opened[1]!r} opened at line {opened[3]} is still open"
                    if opened
                    else "nothing is open"
                )
                raise fail(start, f"{match.group(0)!r} closes a {kind}, but {what}")
            spans.append(Marked(kind, opened[1], opened[2], start, opened[3]))  # type: ignore[arg-type]
            opened = None
        elif LOOKS_LIKE_MARKER.match(inside):
            raise fail(
                start,
                f"{match.group(0)!r} looks like a marker but is not one; write <!-- table: NAME -->, <!-- /table "
                "-->, <!--v NAME --> or <!--/v-->",
            )
    if opened is not None:
        raise MarkerError(f"{where}, line {opened[3]}: the {opened[0]} {opened[1]!r} is never closed")
    return spans


def replace_marked(text: str, spans: list[Marked], bodies: list[str]) -> str:
    """``text`` with each span's body replaced by the body at the same index."""
    pieces, position = [], 0
    for span, body in zip(spans, bodies, strict=True):
        pieces += [text[position : span.body_start], body]
        position = span.body_end
    return "".join(pieces + [text[position:]])
