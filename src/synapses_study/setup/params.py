"""Checks for notebook parameters, so that a bad ``papermill -p`` value stops the notebook
in its first code cell with the parameter's name and what it accepts.

    check_parameters(
        profile=(profile, one_of("smoke", "default", "paper")),
        seeds=(seeds, optional(list_of(seed_value))),
    )

A rule is a function that returns an error phrase ("a list of integers >= 0") for a bad
value and ``None`` for a good one; :func:`check_parameters` raises
:class:`ParameterError` listing every bad parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .config import MAX_SEED

Rule = Callable[[Any], "str | None"]


class ParameterError(ValueError):
    """A notebook parameter has a value it does not accept."""


def check_parameters(**parameters: tuple[Any, Rule]) -> None:
    """Check ``name=(value, rule)`` pairs; raise one :class:`ParameterError` naming each bad one."""
    problems = []
    for name, (value, rule) in parameters.items():
        expected = rule(value)
        if expected is not None:
            problems.append(f"parameter {name} must be {expected}, got {value!r}")
    if problems:
        raise ParameterError("; ".join(problems))


def check_epochs(name: str, epochs: list[int] | None, available: int) -> None:
    """Refuse epochs that the runs do not have (checked before any run is trained or read).

    Raises:
        ParameterError: naming the parameter, the values and the runs' length.
    """
    beyond = [e for e in epochs or [] if not 0 <= e <= available]
    if beyond:
        raise ParameterError(
            f"parameter {name} must list epochs in 0..{available} (the runs have {available} epochs), got {beyond}"
        )


def one_of(*allowed: Any) -> Rule:
    return lambda value: None if value in allowed else "one of " + ", ".join(map(repr, allowed))


def optional(rule: Rule) -> Rule:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        expected = rule(value)
        return None if expected is None else f"{expected} or None"

    return check


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(value: Any) -> str | None:
    return None if _is_int(value) and value >= 1 else "an integer >= 1"


def non_negative_int(value: Any) -> str | None:
    return None if _is_int(value) and value >= 0 else "an integer >= 0"


def seed_value(value: Any) -> str | None:
    """A seed the runs accept: an integer in [0, 2**32)."""
    return None if _is_int(value) and 0 <= value < MAX_SEED else "an integer in [0, 2**32)"


def non_negative_number(value: Any) -> str | None:
    return None if _is_number(value) and value >= 0 else "a finite number >= 0"


def text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "a non-empty string"


def file_prefix(value: Any) -> str | None:
    """A prefix for file names: letters, digits, ``-``, ``_``, ``.`` (or empty: no prefix)."""
    ok = isinstance(value, str) and all(ch.isalnum() or ch in "-_." for ch in value)
    return None if ok else "a file-name prefix of letters, digits, '-', '_' and '.' (or empty)"


def number_in(low: float, high: float, *, low_open: bool = False) -> Rule:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    bracket = "(" if low_open else "["

    def check(value: Any) -> str | None:
        ok = _is_number(value) and (value > low if low_open else value >= low) and value <= high
        return None if ok else f"a number in {bracket}{low:g}, {high:g}]"

    return check


def list_of(rule: Rule) -> Rule:
    def check(value: Any) -> str | None:
        if isinstance(value, (list, tuple)) and value and all(rule(v) is None for v in value):
            return None
        return f"a non-empty list, each {rule(object()) or 'value'}"

    return check


def mapping(value: Any) -> str | None:
    return None if isinstance(value, dict) else "a mapping"
