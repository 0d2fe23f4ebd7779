"""Forecast, from a configuration alone, whether and when the first layer inverts.

    python -m synapses_study.forecast configs/forecast_test.yaml
    python -m synapses_study.forecast my_run.json --json

For each run line of a sweep file (or the one config of a ``.json`` file): whether rho on
survivors crosses 0 by the last epoch (the study's crossing rule: the trailing 10-epoch mean
below 0 from then on), the crossing epoch with an interval, and rho on survivors at the
last epoch with an interval. The numbers come from :mod:`synapses_study.forecast.model`'s
simulation with the committed constants, run :data:`STREAMS` times with independent random
streams; the intervals are the streams' range widened on each side by the committed
replicate tolerances (the spread between committed runs of one condition). Nothing of the
run itself is read: no results folder is opened.

``--json`` prints one JSON object per run line: ``run_id``, ``crosses``, ``crossing_epoch``,
``crossing_interval``, ``rho_end``, ``rho_end_interval``, ``outside_model`` (``null``, or
why the configuration is outside what the model describes; then the forecast fields are
``null``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..setup.config import ConfigError, ExperimentConfig
from ..setup.sweep_file import load_sweep
from .model import Constants, outside_model, pixel_statistics, simulate

STREAMS = 5
END_WINDOW = 10  # rho "at the last epoch": the mean of the last 10 epochs, as the crossing rule reads it


@dataclass(frozen=True)
class Forecast:
    """One run line's forecast (see the module's docstring for the fields)."""

    run_id: str
    crosses: bool | None
    crossing_epoch: int | None
    crossing_interval: tuple[int, int] | None
    rho_end: float | None
    rho_end_interval: tuple[float, float] | None
    outside_model: str | None


def forecast(config: ExperimentConfig, constants: Constants | None = None) -> Forecast:
    """The forecast of ``config`` (read from its fields and the committed constants only)."""
    why = outside_model(config)
    if why is not None:
        return Forecast(config.run_id(), None, None, None, None, None, why)
    constants = constants if constants is not None else Constants.load()
    stats = pixel_statistics(config)
    runs = [simulate(config, constants, seed=stream, stats=stats) for stream in range(STREAMS)]
    ends = np.array([run.rho[-END_WINDOW:].mean() for run in runs])
    crossings = [run.crossing for run in runs]
    crossed = [c for c in crossings if c is not None]
    crosses = len(crossed) * 2 > len(crossings)
    epoch = interval = None
    if crosses:
        tolerance = constants.crossing_tolerance
        epoch = int(np.median(crossed))
        interval = (max(1, int(np.floor(min(crossed) - tolerance))), int(np.ceil(max(crossed) + tolerance)))
    spread = constants.rho_tolerance
    return Forecast(
        config.run_id(),
        crosses,
        epoch,
        interval,
        round(float(ends.mean()), 4),
        (round(float(ends.min() - spread), 4), round(float(ends.max() + spread), 4)),
        None,
    )


def configs_of(path: Path) -> list[ExperimentConfig]:
    """The run lines of a sweep file (``.yaml``/``.yml``) or the config of a ``.json`` file.

    Raises:
        ConfigError: a missing file, another suffix, or an invalid config (named).
    """
    if not path.exists():
        raise ConfigError(f"{path}: no such file (give a sweep file or a config .json)")
    if path.suffix in (".yaml", ".yml"):
        return [run.config for run in load_sweep(path).runs]
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path} is not valid JSON ({error.msg} at line {error.lineno})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold one JSON object of config fields")
        return [ExperimentConfig.from_dict(data, where=str(path))]
    raise ConfigError(f"{path}: give a sweep file (.yaml) or a config (.json), not {path.suffix or 'no suffix'}")


def _line(found: Forecast) -> str:
    if found.outside_model is not None:
        return f"{found.run_id}: outside the model: {found.outside_model}"
    assert found.rho_end is not None and found.rho_end_interval is not None
    rho = f"rho at the end {found.rho_end:+.3f} [{found.rho_end_interval[0]:+.3f}, {found.rho_end_interval[1]:+.3f}]"
    if found.crosses:
        assert found.crossing_interval is not None
        return (
            f"{found.run_id}: crosses at epoch {found.crossing_epoch} "
            f"[{found.crossing_interval[0]}, {found.crossing_interval[1]}]; {rho}"
        )
    return f"{found.run_id}: does not cross; {rho}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m synapses_study.forecast",
        description="Forecast, from the configuration alone, whether and when rho on survivors crosses 0.",
    )
    parser.add_argument("file", type=Path, help="a sweep file (.yaml) or a config (.json)")
    parser.add_argument("--json", action="store_true", help="one JSON object per run line")
    args = parser.parse_args(argv)
    try:
        configs = configs_of(args.file)
        constants = Constants.load()
    except (ConfigError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"forecasting {len(configs)} run line(s), {STREAMS} simulations each", file=sys.stderr)
    for config in configs:
        found = forecast(config, constants)
        print(json.dumps(asdict(found)) if args.json else _line(found), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
