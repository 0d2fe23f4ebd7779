"""What a run has recorded so far, in memory: the content of ``metrics.csv`` and
``topology.npz``, and the run's instruments (:mod:`.instruments`) with their records."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .instruments import Instrument


@dataclass
class History:
    """``rows``: one dict per epoch with the keys of
    :data:`synapses_study.runs.run_dir.METRIC_COLUMNS`; ``counts``: ``epoch + 1`` arrays
    ``(784,)``, the first layer's connections per pixel (row 0 at initialisation);
    ``instruments``: the records the run's configuration asks for."""

    epoch: int = 0
    rows: list[dict[str, float]] = field(default_factory=list)
    counts: list[np.ndarray] = field(default_factory=list)
    instruments: list[Instrument] = field(default_factory=list)
