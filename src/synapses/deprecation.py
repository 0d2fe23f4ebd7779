"""Spellings kept from synapses 0.0.13 and its first successors, which still work and warn.

Each spelling warns once per process (a training loop that sets ``layer.optimizer`` for
every layer warns once, not once per layer), as a ``FutureWarning`` so that scripts, not
only test runners, show it.
"""

from __future__ import annotations

import warnings

_warned: set[str] = set()


def warn_once(spelling: str, instead: str, stacklevel: int = 3) -> None:
    """Warn, the first time in this process, that ``spelling`` is deprecated in favour of
    ``instead`` (both as the user would type them)."""
    if spelling in _warned:
        return
    warnings.warn(
        f"synapses: {spelling} is deprecated and will be removed; use {instead}", FutureWarning, stacklevel=stacklevel
    )
    _warned.add(spelling)  # after: where warnings are errors, every use raises, not the first only


def forget_warnings() -> None:
    """Warn again for every spelling (for tests that check the warning)."""
    _warned.clear()
