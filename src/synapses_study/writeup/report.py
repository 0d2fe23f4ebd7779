"""The write-up's generated tables and numbers, rewritten from the committed results.

A markdown file marks each generated table with a pair of comments::

    <!-- table: sweep155 -->
    ... (rewritten by this module) ...
    <!-- /table -->

and each generated number with ``<!--v TABLE | ROW | COLUMN -->...<!--/v-->`` or
``<!--v fact:NAME -->...<!--/v-->`` (:mod:`synapses_study.writeup.markers`). Table names:
:func:`synapses_study.writeup.tables.sweep_table`; facts: :mod:`synapses_study.writeup.facts`.

    python -m synapses_study.writeup.report regularization.md           # rewrite the tables
    python -m synapses_study.writeup.report regularization.md --check   # exit 1 if any table is stale
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..forecast.score import fit_table, forecast_table, replicate_table
from ..mechanism.account import final_survivor_table, prediction_table
from ..mechanism.protocol import protocol_table
from ..runs.run_files import DamagedFileError, write_atomic
from ..setup.paths import RESULTS, results_root
from .facts import fact, family_table
from .markers import parse_markers, replace_marked
from .tables import IncompleteResultsError, selection_table, sweep_table


def refresh(
    text: str,
    results_dir: str | Path | None = None,
    configs_dir: str | Path | None = None,
    *,
    allow_missing: bool = False,
    where: str = "the write-up",
    progress: Callable[[str], None] | None = None,
) -> str:
    """``text`` with every marked table and value regenerated (see :func:`sweep_table`
    and :mod:`.markers`); the markers are parsed strictly first. ``progress`` is told the
    name of each table and fact before it is computed (some take seconds).

    Raises:
        MarkerError: a marker that is unclosed, unopened, nested or mistyped.
    """
    spans = parse_markers(text, where)
    tables: dict[str, str] = {}

    def table(name: str) -> str:
        if name not in tables:
            if progress is not None:
                progress(f"table {name}")
            root = results_root(results_dir)
            if name == "selection":
                tables[name] = selection_table(root / "feature_selection.csv")
            elif name in (
                "mechanism",
                "mechanism:final",
            ):  # docs/mechanism_predictions.md scored; the end of runs on survivors
                tables[name] = prediction_table(root) if name == "mechanism" else final_survivor_table(root)
            elif name == "protocol":  # docs/protocol_predictions.md scored
                tables[name] = protocol_table(root)
            elif name in ("forecast", "forecast:hits"):  # docs/forecast_predictions.md scored
                tables[name] = forecast_table(root, hits=name == "forecast:hits")
            elif name == "forecast:fit":  # the forecast's fit and intervals (committed constants)
                tables[name] = fit_table()
            elif name == "forecast:replicates":  # the spread between runs of one condition
                tables[name] = replicate_table(root)
            elif name == "families":  # every p value's family (synapses_study.reading.families)
                tables[name] = family_table(root)
            else:
                tables[name] = sweep_table(
                    name, results_dir=results_dir, configs_dir=configs_dir, allow_missing=allow_missing
                )
        return tables[name]

    def value(name: str) -> str:
        if name.startswith("fact:"):
            if progress is not None:
                progress(name)
            return fact(name.removeprefix("fact:"), results_root(results_dir))
        parts = [part.strip() for part in name.split("|")]
        if len(parts) != 3:
            raise ValueError(f"value {name!r}: expected 'TABLE | ROW | COLUMN' or 'fact:NAME'")
        return table_cell(table(parts[0]), parts[1], parts[2], where=name)

    return replace_marked(text, spans, [table(s.name) if s.kind == "table" else value(s.name) for s in spans])


def table_cell(markdown: str, row: str, column: str, where: str = "") -> str:
    """The cell of ``markdown`` (a table of :func:`sweep_table`) in the row whose first
    cell is ``row`` and the column titled ``column``."""
    lines = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in markdown.splitlines()
        if line.startswith("|")
    ]
    header, rows = lines[0], {cells[0]: cells for cells in lines[2:]}
    if column not in header:
        raise ValueError(f"value {where!r}: no column {column!r}; columns: {header}")
    if row not in rows:
        raise ValueError(f"value {where!r}: no row {row!r}; rows: {sorted(rows)}")
    return rows[row][header.index(column)]


def stale_markers(text: str, fresh: str) -> list[str]:
    """Names of the tables and values of ``text`` that differ in ``fresh``."""
    old, new = parse_markers(text), parse_markers(fresh)
    return [a.name for a, b in zip(old, new) if text[a.body_start : a.body_end] != fresh[b.body_start : b.body_end]]


class Heartbeat:
    """A line on stderr every ``every`` seconds while a long job is busy, naming what it is
    doing now (``make report`` takes a minute or two; a job done sooner prints nothing).
    Call the object with the name of each step as it starts."""

    def __init__(self, what: str, steps: int, every: float = 5.0) -> None:
        self.what, self.steps, self.every = what, steps, every
        self.current, self.count, self.started = "", 0, time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __call__(self, name: str) -> None:
        self.current, self.count = name, self.count + 1

    def _beat(self) -> None:
        while not self._done.wait(self.every):
            print(
                f"{self.what} {self.current} ({self.count} of at most {self.steps}; "
                f"{time.monotonic() - self.started:.0f} s so far)",
                file=sys.stderr,
                flush=True,
            )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def read_markdown(path: Path) -> tuple[str, bool]:
    """``path``'s text with ``\n`` line endings, and whether they were all ``\r\n`` (written
    back as they were: regenerating a number must not change every line of the file).

    Raises:
        ValueError: the file mixes both kinds of line ending.
    """
    raw = path.read_bytes().decode()
    crlf = raw.count("\r\n")
    if crlf and crlf != raw.count("\n"):
        raise ValueError(
            f"{path} mixes CRLF and LF line endings ({crlf} of {raw.count(chr(10))} lines end in CRLF); make them "
            "one kind"
        )
    return raw.replace("\r\n", "\n"), bool(crlf)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m synapses_study.writeup.report",
        description="Regenerate the marked tables of a markdown file from results/.",
    )
    parser.add_argument("markdown", type=Path)
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a table differs from the results"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--allow-missing", action="store_true", help="pool the finished seeds of tables whose runs are not all there"
    )
    args = parser.parse_args(argv)
    try:
        text, crlf = read_markdown(args.markdown)
        with Heartbeat(f"{args.markdown}: computing", len(parse_markers(text, str(args.markdown)))) as progress:
            fresh = refresh(
                text, args.results_dir, allow_missing=args.allow_missing, where=str(args.markdown), progress=progress
            )
    except (OSError, UnicodeDecodeError, IncompleteResultsError, DamagedFileError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    if args.check:
        stale = stale_markers(text, fresh)
        if stale:
            print(
                f"{args.markdown}: stale table(s) or value(s): {', '.join(stale)} (run python -m "
                f"synapses_study.writeup.report {args.markdown})"
            )
            return 1
        kinds = [span.kind for span in parse_markers(text)]
        print(f"{args.markdown}: {kinds.count('table')} table(s) and {kinds.count('value')} value(s) match the results")
        return 0
    try:
        # a full disk leaves the old text, never half of it; CRLF line endings stay CRLF
        write_atomic(args.markdown, (fresh.replace("\n", "\r\n") if crlf else fresh).encode())
    except OSError as err:
        parser.exit(2, f"error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
