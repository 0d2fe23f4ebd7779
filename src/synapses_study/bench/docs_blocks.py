"""Generated blocks in Markdown files: ``<!-- NAME -->`` ... ``<!-- /NAME -->``.

The measurement commands (:mod:`.peer_grid`, :mod:`.auto_rule`, :mod:`.memory`) write their
numbers into docs/performance.md between such markers, from the JSON files they wrote, so
that every number there comes from a command; the tests compare each block with what its
committed JSON renders to.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..runs.run_files import write_atomic


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name} -->", f"<!-- /{name} -->"


def read_block(markdown_file: Path, name: str) -> str:
    """The text between ``name``'s markers (without the newlines next to them)."""
    start, end = markers(name)
    text = markdown_file.read_text()
    if start not in text or end not in text:
        raise ValueError(f"{markdown_file} has no {start} ... {end} block")
    return text.split(start + "\n", 1)[1].split("\n" + end, 1)[0]


def fill_block(markdown_file: Path, name: str, body: str) -> None:
    """Replace what stands between ``name``'s markers in ``markdown_file`` with ``body`` (atomically)."""
    start, end = markers(name)
    text = markdown_file.read_text()
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{markdown_file} has no {start} ... {end} block to fill")
    block = f"{start}\n{body}\n{end}"
    write_atomic(markdown_file, pattern.sub(lambda _: block, text, count=1).encode())


def publish(body: str, markdown_file: Path | None, name: str) -> None:
    """A measurement command's output: into ``name``'s block of ``markdown_file`` where one
    is given (``--write-docs``), else printed."""
    if markdown_file is not None:
        fill_block(markdown_file, name, body)
    else:
        print(body)
