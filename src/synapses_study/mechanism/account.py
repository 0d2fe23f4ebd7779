"""The predictions of ``docs/mechanism_predictions.md``, scored against the committed runs.

Each prediction is read with the instrument the file names (survivors; the SET paper's
network, which recorded no pruning in its standardised runs, on the recorded topology on
both sides) at the epoch it names, against the paired baseline run of the same seed. The
table :func:`prediction_table` is the write-up's ``<!-- table: mechanism -->``; it says
for each prediction what was measured and whether it held, in every seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..measures.analysis import ink_correlation
from ..measures.survivors import (
    BAND_NAMES,
    band_density,
    band_tipping_epoch,
    crossing_epoch,
    final_survivors,
    ink_band,
    survivor_counts,
    survivor_rho,
)
from ..measures.topology import center_ratio
from ..reading.demography import (
    AgeStructure,
    age_structure,
    demography,
    equalised_accounts,
    predicted_crossing,
    rates,
    simulate,
    window_rates,
    windowed,
)
from ..reading.results import select_runs, training_ink
from ..reading.stats import geometric_mean_ci, mean_std, slope
from ..runs.lifetimes import read_lifetimes
from ..runs.run_dir import RunDir

SEEDS = (0, 1)
MODEL_WINDOW = 10  # epochs over which E2's rates are averaged for the account
MODEL_TOLERANCE = 40  # epochs: a predicted crossing within this of the observed one is a hit


@dataclass(frozen=True)
class Scored:
    name: str
    prediction: str
    measured: str
    held: bool | None  # None: its runs are not all finished yet


@dataclass(frozen=True)
class RunSet:
    """Where a run set of the mechanism lives: a sweep (``"name"`` or ``"name/entry"``) and
    the fields that narrow it; its seeds are :data:`SEEDS`."""

    spec: str
    fields: tuple[tuple[str, object], ...] = ()

    @property
    def sweep(self) -> str:
        return self.spec.partition("/")[0]

    @property
    def entry(self) -> str | None:
        return self.spec.partition("/")[2] or None

    def narrowed(self, **fields: object) -> RunSet:
        """The same set with more fields fixed."""
        return RunSet(self.spec, self.fields + tuple(fields.items()))

    def finished(self, results: Path) -> dict[int, Path]:
        """Seed -> folder of its finished runs (:func:`finished_runs`)."""
        return finished_runs(results, self.sweep, self.entry, **dict(self.fields))


# The mechanism's run sets, declared once: the undecayed 1000-epoch baselines with pruning
# recorded, by the inputs' name the figures give them, and the interventions of
# configs/why_it_inverts.yaml; the scores below and why_it_inverts.ipynb read them here.
BASELINES = {
    "standardised": RunSet("mechanism_1000", (("inputs", "standardized"), ("weight_decay", 0.0))),
    "scaled (blank at 0)": RunSet("mechanism_1000", (("inputs", "scaled"), ("weight_decay", 0.0))),
    "unit ([0, 1])": RunSet("extensions_1000/unit_inputs", (("inputs", "unit"), ("weight_decay", 0.0))),
}
E1_SMALL_NEWBORNS = RunSet("why_it_inverts/e1_small_newborns")  # at 0.05σ and 0.1σ
E3_FAST_UNIT = RunSet("why_it_inverts/e3_fast_unit")
E3_SLOW_SCALED = RunSet("why_it_inverts/e3_slow_scaled")
E5_BLANK_NOISE = RunSet("why_it_inverts/e5_blank_noise")
E5_SHIFTS = RunSet("why_it_inverts/e5_shifts")
INTERVENTIONS = {
    "E1: newborns at 0.05σ": E1_SMALL_NEWBORNS.narrowed(input_regrowth_scale=0.05),
    "E3: unit, first layer lr × 10.5": E3_FAST_UNIT,
    "E3: scaled, first layer lr ÷ 10.5": E3_SLOW_SCALED,
    "E5: noise on blank pixels": E5_BLANK_NOISE,
    "E5: shifts of ±2 px": E5_SHIFTS,
}


class _Pending(Exception):
    """A prediction's runs are not all finished."""


@dataclass(frozen=True)
class Survivors:
    """One run read on survivors: ``rho`` ``(epochs,)`` and ``density`` ``(epochs, 4)``."""

    rho: np.ndarray
    density: np.ndarray
    pruned_total: np.ndarray
    counts: np.ndarray

    def at(self, epoch: int) -> tuple[float, np.ndarray]:
        return float(self.rho[epoch - 1]), self.density[epoch - 1]


def _bands() -> tuple[np.ndarray, np.ndarray]:
    ink = training_ink()
    return ink, ink_band(ink)


@cache
def survivors_of(run_dir: Path) -> Survivors:
    """A recorded run's survivors (connections never pruned since birth): their ink ρ and
    band densities per epoch, read once per process."""
    folder = RunDir(run_dir)
    folder.verified_config()
    pruned, _ = folder.pruning()
    counts = survivor_counts(folder.topology(), pruned)
    ink, band = _bands()
    return Survivors(survivor_rho(counts, ink), band_density(counts, band), pruned.sum(axis=1), counts)


def _recorded_rho(run_dir: Path) -> np.ndarray:
    ink, _ = _bands()
    return np.asarray(ink_correlation(RunDir(run_dir).topology()[1:], ink))


def finished_runs(results: Path, sweep: str, entry: str | None = None, **fields: object) -> dict[int, Path]:
    """Seed -> run folder of the finished runs of a sweep entry (fields narrow it), each
    verified against its manifest; a run not yet finished is left out (its row pending), a
    damaged one raises :class:`DamagedFileError` naming it (never dropped)."""
    found = {}
    for config in select_runs(sweep, entry, None, **fields):
        folder = RunDir.of(config, results)
        if config.seed in SEEDS and folder.finished(config):
            found[config.seed] = folder.path
    return found


def undecayed_baseline(results: Path, inputs: str) -> dict[int, Path]:
    """The committed undecayed 1000-epoch runs with pruning recorded, by seed (:data:`BASELINES`)."""
    label = {"standardized": "standardised", "scaled": "scaled (blank at 0)", "unit": "unit ([0, 1])"}[inputs]
    return BASELINES[label].finished(results)


def _count(flags: list[bool]) -> str:
    return f"{sum(flags)} of {len(flags)}"


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:+.3f}" for v in values)


def _band(values: np.ndarray) -> str:
    return ", ".join(f"{name} {v:.1f}" for name, v in zip(BAND_NAMES, values))


@cache
def e2_demography(results: Path) -> pd.DataFrame:
    runs = finished_runs(results, "why_it_inverts", "e2_lifetimes")
    if 0 not in runs:
        raise FileNotFoundError("the E2 run (why_it_inverts/e2_lifetimes, seed 0) is not finished in " + str(results))
    _, band = _bands()
    return demography(read_lifetimes(RunDir(runs[0]).lifetimes_file), band)


def _window_means(values: np.ndarray, start: int, width: int = 50) -> np.ndarray:
    """``(epochs, 4)`` -> ``(windows, 4)`` means over windows of ``width`` epochs from ``start + 1``."""
    return np.stack([np.nanmean(values[a : a + width], axis=0) for a in range(start, len(values), width)])


def score_e2(results: Path) -> list[Scored]:
    table = e2_demography(results)
    s, h = rates(table)
    s50, h150 = _window_means(s, 50), _window_means(h, 150)
    ratio = np.nanmax(s50, axis=1) / np.nanmin(s50, axis=1)
    order_ok = [bool(np.all(np.diff(row) > 0)) for row in h150]
    wide = table.pivot(index="epoch", columns="band")
    lottery = (wide["survivor_w0"] > wide["newborn_w0"]).iloc[50:][list(BAND_NAMES)]
    run = finished_runs(results, "why_it_inverts", "e2_lifetimes")[0]
    surv = survivors_of(run)
    crossing, tipping = crossing_epoch(surv.rho), band_tipping_epoch(surv.density)
    s150 = _window_means(s, 150)
    core_over_rare = s150[:, BAND_NAMES.index("core")] / s150[:, BAND_NAMES.index("rare")]
    return [
        Scored(
            "E2.1",
            "newborn survival < 0.05, every band, every 50-epoch window after 50",
            f"largest {np.nanmax(s50):.3f} (epochs 51-100: {_band(100 * s50[0])} %)",
            bool(np.nanmax(s50) < 0.05),
        ),
        Scored(
            "E2.2",
            "newborn survival differs between bands by less than a factor of 3",
            f"largest ratio {ratio.max():.2f}",
            bool(ratio.max() < 3),
        ),
        Scored(
            "E2.3",
            "established hazard never < rare < medium < core from epoch 150; never below 0.002",
            f"ordered in {sum(order_ok)} of {len(order_ok)} windows; per epoch, epochs 151-400: "
            + ", ".join(f"{n} {v:.4f}" for n, v in zip(BAND_NAMES, np.nanmean(h[150:], axis=0))),
            all(order_ok) and bool(np.nanmax(h150[:, 0]) < 0.002),
        ),
        Scored(
            "E2.4",
            "the core falls below the rare band at least 20 epochs before ρ crosses 0",
            f"band tipping at epoch {tipping}, crossing at {crossing}",
            tipping is not None and crossing is not None and crossing - tipping >= 20,
        ),
        Scored(
            "E2.5",
            "surviving newborns were born larger than the median newborn (> 90% of epochs after 50, every band)",
            "in " + ", ".join(f"{n} {100 * lottery[n].mean():.0f}%" for n in BAND_NAMES) + " of epochs",
            bool((lottery.mean() > 0.9).all()),
        ),
        Scored(
            "H2",
            "(H2's own) newborn survival in the core below the rare band's by a factor of 3 after epoch 150",
            f"core / rare: {_fmt(list(core_over_rare))} by 50-epoch window",
            bool(np.all(core_over_rare < 1 / 3)),
        ),
    ]


def _paired_rows(
    results: Path, name: str, runs: dict[int, Path], baseline: dict[int, Path], epoch: int
) -> tuple[list[float], list[float], list[np.ndarray], list[np.ndarray], list[int]]:
    seeds = sorted(set(runs) & set(baseline))
    if len(seeds) < len(SEEDS):
        raise _Pending(f"{name}: {len(seeds)} of {len(SEEDS)} seeds finished")
    rho, base, density, base_density = [], [], [], []
    for seed in seeds:
        r, d = survivors_of(runs[seed]).at(epoch)
        b, bd = survivors_of(baseline[seed]).at(epoch)
        rho.append(r)
        base.append(b)
        density.append(d)
        base_density.append(bd)
    return rho, base, density, base_density, seeds


def _guarded(name: str, prediction: str, score) -> Scored:
    """``score()``'s row, or a pending one while its runs are not all finished."""
    try:
        return score()
    except _Pending as pending:
        return Scored(name, prediction, str(pending).split(": ", 1)[1], None)


def score_interventions(results: Path) -> list[Scored]:
    standard, unit, scaled = (undecayed_baseline(results, inputs) for inputs in ("standardized", "unit", "scaled"))
    core, rare, never = (BAND_NAMES.index(n) for n in ("core", "rare", "never"))
    rows = []

    def e1(scale: float) -> Scored:
        runs = E1_SMALL_NEWBORNS.narrowed(input_regrowth_scale=scale).finished(results)
        rho, base, density, _, seeds = _paired_rows(results, "E1", runs, standard, 400)
        crossings = [crossing_epoch(survivors_of(runs[s]).rho[:400]) for s in seeds]
        bands_ok = [int(np.argmax(d)) == core and int(np.argmin(d)) == never for d in density]
        return Scored(
            f"E1 ({scale:g}σ)",
            E1_TEXT,
            f"ρ {_fmt(rho)} (baseline {_fmt(base)}); bands at 400: {_band(np.mean(density, axis=0))}; "
            f"core densest and never sparsest in {_count(bands_ok)}; crossings {crossings}",
            all(r > 0 for r in rho) and all(bands_ok) and all(c is None for c in crossings),
        )

    def e3_fast() -> Scored:
        fast = E3_FAST_UNIT.finished(results)
        rho, base, density, base_density, seeds = _paired_rows(results, "E3", fast, unit, 400)
        crossings = [crossing_epoch(survivors_of(fast[s]).rho[:400]) for s in seeds]
        shifted = [d[core] < b[core] and d[rare] > b[rare] for d, b in zip(density, base_density)]
        return Scored(
            "E3 (unit, lr × 10.53)",
            E3_FAST_TEXT,
            f"ρ {_fmt(rho)} (unit baseline {_fmt(base)}); crossings {crossings}; core down and rare up in "
            f"{_count(shifted)} seeds",
            all(r < 0 for r in rho) and all(c is not None and 80 <= c <= 250 for c in crossings) and all(shifted),
        )

    def e3_slow() -> Scored:
        slow = E3_SLOW_SCALED.finished(results)
        rho, base, _, _, seeds = _paired_rows(results, "E3", slow, scaled, 400)
        crossings = [crossing_epoch(survivors_of(slow[s]).rho[:400]) for s in seeds]
        return Scored(
            "E3 (scaled, lr ÷ 10.53)",
            E3_SLOW_TEXT,
            f"ρ {_fmt(rho)} (scaled baseline {_fmt(base)}); crossings {crossings}",
            all(r > 0 for r in rho) and all(c is None for c in crossings),
        )

    def e5_noise() -> Scored:
        noise = E5_BLANK_NOISE.finished(results)
        rho, base, density, base_density, _ = _paired_rows(results, "E5", noise, scaled, 400)
        periphery_lost = [d[never] < b[never] and d[rare] < b[rare] for d, b in zip(density, base_density)]
        return Scored(
            "E5 (noise on blank pixels)",
            E5_NOISE_TEXT,
            f"ρ {_fmt(rho)} (scaled baseline {_fmt(base)}); never and rare down in {_count(periphery_lost)} seeds",
            all(r - b >= 0.1 for r, b in zip(rho, base)) and all(periphery_lost),
        )

    def e5_noise_sign() -> Scored:
        rho = _paired_rows(results, "E5", E5_BLANK_NOISE.finished(results), scaled, 400)[0]
        return Scored("E5 (noise), sign", "ρ at 400 ≥ 0 (weak)", f"ρ {_fmt(rho)}", all(r >= 0 for r in rho))

    def e5_shifts() -> Scored:
        shifts = E5_SHIFTS.finished(results)
        rho, base, _, _, seeds = _paired_rows(results, "E5", shifts, scaled, 400)
        crossings = [crossing_epoch(survivors_of(shifts[s]).rho[:400]) for s in seeds]
        base_crossings = [crossing_epoch(survivors_of(scaled[s]).rho[:400]) for s in seeds]
        later = [c is not None and b is not None and c > b for c, b in zip(crossings, base_crossings)]
        return Scored(
            "E5 (shifts ±2 px)",
            E5_SHIFT_TEXT,
            f"ρ {_fmt(rho)} (baseline {_fmt(base)}); crossings {crossings} against {base_crossings}",
            all(r < 0 for r in rho) and all(later),
        )

    def e4() -> Scored:
        scaled_net = finished_runs(results, "why_it_inverts", "e4_set_mlp_scaled")
        standard_net = finished_runs(results, "set_mlp", "set", weight_decay=0.0)
        seeds = sorted(set(scaled_net) & set(standard_net))
        if len(seeds) < len(SEEDS):
            raise _Pending(f"E4: {len(seeds)} of {len(SEEDS)} seeds finished")
        a = [float(_recorded_rho(scaled_net[s])[99]) for s in seeds]
        b = [float(_recorded_rho(standard_net[s])[99]) for s in seeds]
        return Scored(
            "E4 (SET paper's net, scaled)",
            E4_TEXT,
            f"ρ {_fmt(a)} against {_fmt(b)}",
            all(x < 0 and x - y <= 0.15 for x, y in zip(a, b)),
        )

    for scale in (0.05, 0.1):
        rows.append(_guarded(f"E1 ({scale:g}σ)", E1_TEXT, lambda scale=scale: e1(scale)))
    rows += [
        _guarded("E3 (unit, lr × 10.53)", E3_FAST_TEXT, e3_fast),
        _guarded("E3 (scaled, lr ÷ 10.53)", E3_SLOW_TEXT, e3_slow),
        _guarded("E5 (noise on blank pixels)", E5_NOISE_TEXT, e5_noise),
        _guarded("E5 (noise), sign", "ρ at 400 ≥ 0 (weak)", e5_noise_sign),
        _guarded("E5 (shifts ±2 px)", E5_SHIFT_TEXT, e5_shifts),
        _guarded("E4 (SET paper's net, scaled)", E4_TEXT, e4),
    ]
    return rows


E1_TEXT = "ρ at 400 > 0; core densest, never sparsest; no crossing"
E3_FAST_TEXT = "ρ at 400 < 0; crossing in 80-250; core loses and rare gains against unit"
E3_SLOW_TEXT = "ρ at 400 > 0; no crossing"
E5_NOISE_TEXT = "ρ at 400 above the paired baseline by ≥ 0.1; never and rare lose"
E5_SHIFT_TEXT = "ρ at 400 < 0; crossing later than the paired baseline"
E4_TEXT = "recorded ρ at 100 < 0, within 0.15 of or below the standardised run's (H3: above by more)"


def score_headline(results: Path) -> list[Scored]:
    rows = []
    core = BAND_NAMES.index("core")
    for decay in (1e-3, 1e-2):
        runs = finished_runs(results, "why_it_inverts", "survivors_decay", weight_decay=decay)
        if len(runs) < len(SEEDS):
            rows.append(
                Scored(
                    f"L2 {decay:g}, 1000 epochs",
                    "ρ > 0 at every epoch; core densest from epoch 50",
                    f"{len(runs)} of {len(SEEDS)} seeds finished",
                    None,
                )
            )
            continue
        lowest = [float(survivors_of(p).rho.min()) for p in runs.values()]
        core_first = [bool((np.argmax(survivors_of(p).density[49:], axis=1) == core).all()) for p in runs.values()]
        rows.append(
            Scored(
                f"L2 {decay:g}, 1000 epochs",
                "ρ > 0 at every epoch; core densest from epoch 50",
                f"lowest ρ {_fmt(lowest)}; core densest throughout in {_count(core_first)} seeds",
                all(v > 0 for v in lowest) and all(core_first),
            )
        )
    return rows


def score_model(results: Path) -> list[Scored]:
    """The account with E2's rates (windows of :data:`MODEL_WINDOW` epochs), from each run's
    own first epoch, against the runs it was not fitted to."""
    s, h = rates(e2_demography(results))
    s, h = windowed(s, MODEL_WINDOW), windowed(h, MODEL_WINDOW)
    ink, band = _bands()
    pixels = np.bincount(band, minlength=len(BAND_NAMES))
    targets = {f"scaled, seed {k}": v for k, v in undecayed_baseline(results, "scaled").items() if k == 1}
    targets |= {f"standardised, seed {k}": v for k, v in undecayed_baseline(results, "standardized").items()}
    targets |= {f"E5 shifts, seed {k}": v for k, v in E5_SHIFTS.finished(results).items()}
    targets |= {f"unit, seed {k} (not a committed target)": v for k, v in undecayed_baseline(results, "unit").items()}
    rows = []
    for name, path in targets.items():
        surv = survivors_of(path)
        epochs = min(len(surv.rho), len(s))
        start = np.array([surv.counts[0][band == b].sum() for b in range(len(BAND_NAMES))])
        predicted = predicted_crossing(
            simulate(start, surv.pruned_total[:epochs], s[:epochs], h[:epochs], pixels), band, ink
        )
        observed = crossing_epoch(surv.rho[:epochs])
        held = (predicted is None and observed is None) or (
            predicted is not None and observed is not None and abs(predicted - observed) <= MODEL_TOLERANCE
        )
        rows.append(
            Scored(
                f"account: {name}",
                f"crossing within ±{MODEL_TOLERANCE} epochs",
                f"predicted {predicted}, observed {observed}",
                held,
            )
        )
    return rows


def prediction_table(results: Path) -> str:
    """The write-up's table of predictions, one row each: what was predicted, what was
    measured, whether it held ("pending" while its runs are not all finished)."""
    rows = score_e2(results) + score_interventions(results) + score_headline(results) + score_model(results)
    verdict = {True: "yes", False: "**no**", None: "pending"}
    lines = ["| prediction | predicted | measured | held |", "|---|---|---|---|"]
    lines += [f"| {r.name} | {r.prediction} | {r.measured} | {verdict[r.held]} |" for r in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- for the notebook
def survivor_frame(groups: dict[str, list[Path]]) -> pd.DataFrame:
    """Long table of labelled runs on survivors: ``configuration``, ``seed``, ``epoch``,
    ``band`` (a name of :data:`BAND_NAMES`, or ``"all"`` for ρ), ``density`` (survivors per
    pixel) and ``rho`` (survivor ink ρ, on the ``"all"`` rows)."""
    frames = []
    for label, run_dirs in groups.items():
        for path in run_dirs:
            surv, seed = survivors_of(Path(path)), RunDir(path).config().seed
            epochs = np.arange(1, len(surv.rho) + 1)
            for b, name in enumerate(BAND_NAMES):
                frames.append(
                    pd.DataFrame(
                        {
                            "configuration": label,
                            "seed": seed,
                            "epoch": epochs,
                            "band": name,
                            "density": surv.density[:, b],
                            "rho": np.nan,
                        }
                    )
                )
            frames.append(
                pd.DataFrame(
                    {
                        "configuration": label,
                        "seed": seed,
                        "epoch": epochs,
                        "band": "all",
                        "density": np.nan,
                        "rho": surv.rho,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def demography_frame(run_dir: Path, window: int = MODEL_WINDOW) -> pd.DataFrame:
    """:func:`.demography.demography` of a lifetime-recorded run with the rates ``s``
    (newborn survival) and ``h`` (established hazard), averaged over windows of ``window``
    epochs."""
    _, band = _bands()
    table = demography(read_lifetimes(RunDir(run_dir).lifetimes_file), band)
    s, h = (windowed(r, window) for r in rates(table))
    order = {name: i for i, name in enumerate(BAND_NAMES)}
    position = (table.epoch.to_numpy() - 1, table.band.map(order).to_numpy())
    return table.assign(s=s[position], h=h[position])


def account_frame(rate_run: Path, targets: dict[str, Path], window: int = MODEL_WINDOW) -> pd.DataFrame:
    """The birth-death account with ``rate_run``'s rates, from each target's first epoch:
    ``target``, ``epoch``, ``band``, ``observed`` (the target's survivors per pixel in that
    band) and ``predicted`` (the account's)."""
    _, band = _bands()
    s, h = (windowed(r, window) for r in rates(demography_frame(rate_run)))
    pixels = np.bincount(band, minlength=len(BAND_NAMES))
    frames = []
    for name, path in targets.items():
        surv = survivors_of(Path(path))
        epochs = min(len(surv.rho), len(s))
        account = (
            simulate(surv.density[0] * pixels, surv.pruned_total[:epochs], s[:epochs], h[:epochs], pixels) / pixels
        )
        for b, band_name in enumerate(BAND_NAMES):
            frames.append(
                pd.DataFrame(
                    {
                        "target": name,
                        "epoch": np.arange(1, epochs + 1),
                        "band": band_name,
                        "observed": surv.density[:epochs, b],
                        "predicted": account[:, b],
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------- end of run, on survivors
FINAL_CONFIGURATIONS: tuple[tuple[str, str, str | None, dict[str, object]], ...] = (
    ("demo net, no decay", "reproduction", None, {"weight_decay": 0.0}),
    ("demo net, L2 1e-3", "reproduction", None, {"weight_decay": 1e-3}),
    ("demo net, L2 1e-2", "reproduction", None, {"weight_decay": 1e-2}),
    ("demo net, inputs in [0, 1]", "extensions_1000", "unit_inputs", {}),
    ("demo net, scaled inputs", "mechanism_1000", None, {"inputs": "scaled"}),
    ("demo net, near-parents regrowth", "extensions_1000", "near_parents", {}),
    ("demo net, decoupled 2e-5", "extensions_1000", "decoupled", {}),
    ("demo net, L1 1e-4", "extensions_1000", "l1", {}),
    ("SET paper's net, no decay", "set_mlp", "set", {"weight_decay": 0.0}),
    ("SET paper's net, L2 1e-3", "set_mlp", "set", {"weight_decay": 1e-3}),
)


def final_survivor_table(results: Path) -> str:
    """Each committed 1000-epoch configuration at its last epoch, read on the survivors of
    its final network (``pruned`` off) beside the recorded topology: ink ρ, the centre's
    density over the mean, and survivors per pixel by ink band (mean ± sd over seeds)."""
    ink, band = _bands()
    lines = [
        "| configuration | n | ink ρ, recorded | ink ρ, survivors | centre ratio, survivors | never | rare | medium "
        "| core |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, sweep, entry, fields in FINAL_CONFIGURATIONS:
        configs = select_runs(sweep, entry, None, **fields)
        found = [RunDir.of(c, results) for c in configs if RunDir.of(c, results).finished(c)]
        if not found:
            continue
        recorded = np.array([float(ink_correlation(f.topology()[-1], ink)) for f in found])
        kept = np.stack([final_survivors_of(f) for f in found])
        cells = [
            mean_std(3)(recorded),
            mean_std(3)(np.asarray(ink_correlation(kept, ink))),
            mean_std(3)(np.asarray(center_ratio(kept))),
        ]
        cells += [mean_std(1)(band_density(kept, band)[:, b]) for b in range(len(BAND_NAMES))]
        lines.append(f"| {label} | {len(found)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def final_survivors_of(folder: RunDir) -> np.ndarray:
    return final_survivors(folder.model_state())


# ---------------------------------------------------------------------------- "Why it inverts", on what holds
# Windows: newborn survival over the 50-epoch windows after epoch 50 and the established
# hazard over those after epoch 150, as E2.1-E2.3 of docs/mechanism_predictions.md (fixed
# before the runs). The age cuts (older than 50 epochs; recruits at most 50 epochs old), the
# geometric-mean intervals over windows and the core-minus-rare gap of the counterfactual
# accounts were chosen after the E2 run had been read (issue 35).
OLD_AGE = 50
LATE_FROM = 150  # epochs after which the hazards are read (E2.3's window)
FLAT_FROM = 850  # [0, 1]: the epoch from which the late slope is read (issue 35's reading)


@cache
def e2_age_structure(results: Path) -> AgeStructure:
    run = finished_runs(results, "why_it_inverts", "e2_lifetimes")[0]
    _, band = _bands()
    return age_structure(
        read_lifetimes(RunDir(run).lifetimes_file), band, first_epoch=LATE_FROM + 1, old_age=OLD_AGE, young_age=OLD_AGE
    )


def _windows_label(start: int, count: int, width: int = 50) -> str:
    return f"the {count} {width}-epoch windows of epochs {start + 1}-{start + count * width}"


def newborn_survival_windows(results: Path) -> str:
    """E2: the share of all newborns (every band) that survives its first pruning, in the
    first and the last 50-epoch window after epoch 50."""
    per_epoch = e2_demography(results).groupby("epoch")[["newborn_survivors", "newborns"]].sum()
    window = (per_epoch.index.to_numpy() - 51) // 50  # 0: epochs 51-100; negative: the first 50
    totals = per_epoch[window >= 0].groupby(window[window >= 0]).sum()
    survival = (totals.newborn_survivors / totals.newborns).to_numpy()
    return f"{100 * survival[0]:.1f}% in epochs 51-100, {100 * survival[-1]:.1f}% in epochs 351-400"


def _band_ratio(results: Path, events: str, at_risk: str, start: int, a: str, b: str) -> str:
    rates_ = window_rates(e2_demography(results), events, at_risk, start)
    ratios = rates_[:, BAND_NAMES.index(a)] / rates_[:, BAND_NAMES.index(b)]
    mean, low, high = geometric_mean_ci(ratios)
    return (
        f"{mean:.2f} (95% CI {low:.2f} to {high:.2f} over {_windows_label(start, len(ratios))}; "
        f"below 1 in {int((ratios < 1).sum())} of {len(ratios)})"
    )


def core_rare_newborn_survival(results: Path) -> str:
    """E2: core over rare newborn survival, geometric mean over the 50-epoch windows after
    epoch 50 with its 95% interval."""
    return _band_ratio(results, "newborn_survivors", "newborns", 50, "core", "rare")


def never_medium_hazard(results: Path) -> str:
    """E2: never over medium established hazard, geometric mean over the 50-epoch windows
    after epoch 150 with its 95% interval."""
    return _band_ratio(results, "established_deaths", "established", LATE_FROM, "never", "medium")


def old_hazards(results: Path) -> str:
    """E2: the hazard per epoch of connections older than 50 epochs, by band, epochs 151-400."""
    ages = e2_age_structure(results)
    return ", ".join(f"{name} {h:.1e}" for name, h in zip(BAND_NAMES, ages.old_hazard))


def core_recruit_deaths(results: Path) -> str:
    """E2, epochs 151-400: the share of the core's established deaths that are recruits at
    most 50 epochs old, and how fast those recruits' |w| shrank (σ₀ per epoch)."""
    ages = e2_age_structure(results)
    core = BAND_NAMES.index("core")
    return (
        f"{100 * ages.recruit_share[core]:.0f}% of the core's deaths of established connections are recruits at "
        f"most {ages.young_age} epochs old, whose |w| shrank by {ages.recruit_shrink[core]:.3f} σ₀ per epoch of "
        f"life on average (rare band: {100 * ages.recruit_share[BAND_NAMES.index('rare')]:.0f}%, "
        f"{ages.recruit_shrink[BAND_NAMES.index('rare')]:.3f} σ₀)"
    )


def equalised_account(results: Path) -> str:
    """E2's account over its own 400 epochs, fitted and with newborn survival or the
    established hazard made equal across bands: how much of the fitted account's
    core-minus-rare survivor gap at the last epoch each removes."""
    s, h = (windowed(r, MODEL_WINDOW) for r in rates(e2_demography(results)))
    _, band = _bands()
    pixels = np.bincount(band, minlength=len(BAND_NAMES))
    surv = survivors_of(finished_runs(results, "why_it_inverts", "e2_lifetimes")[0])
    start = np.array([surv.counts[0][band == b].sum() for b in range(len(BAND_NAMES))])
    accounts = equalised_accounts(start, surv.pruned_total, s, h, pixels)
    core, rare = BAND_NAMES.index("core"), BAND_NAMES.index("rare")
    gap = {name: (a[-1] / pixels)[core] - (a[-1] / pixels)[rare] for name, a in accounts.items()}
    removed = {name: 1 - gap[name] / gap["fitted"] for name in ("equal survival", "equal hazard")}
    return (
        f"the fitted account ends with the core {gap['fitted']:+.2f} survivors per pixel against the rare band; "
        f"equal newborn survival removes {100 * removed['equal survival']:.0f}% of that gap, equal hazards "
        f"{100 * removed['equal hazard']:.0f}%"
    )


def tipping_against_crossing(results: Path) -> str:
    """The survivors' band tipping (core below rare) and crossing (ρ below 0) epochs of the
    slow first layer (E3, scaled inputs) and of the [0, 1] inputs' 1000-epoch runs."""
    parts = []
    for seed, path in sorted(E3_SLOW_SCALED.finished(results).items()):
        surv = survivors_of(path)
        parts.append(
            f"slow first layer, seed {seed}: crossing at {crossing_epoch(surv.rho)}, tipping at "
            f"{band_tipping_epoch(surv.density)}"
        )
    unit = []
    for config in select_runs("extensions_1000", "unit_inputs", None):
        folder = RunDir.of(config, results)
        if folder.finished(config):
            surv = survivors_of(folder.path)
            unit.append((config.seed, band_tipping_epoch(surv.density), crossing_epoch(surv.rho)))
    crossed = [c for *_, c in unit if c is not None]
    parts.append(
        "inputs in [0, 1], seeds "
        + ", ".join(str(s) for s, *_ in unit)
        + ": tipping at "
        + ", ".join(str(t) for _, t, _ in unit)
        + (", no crossing by epoch 1000" if not crossed else f", crossings {crossed}")
    )
    return "; ".join(parts)


def account_epochs(results: Path) -> str:
    """The crossing epochs the account with E2's rates predicts for the runs it was scored
    on (appendix Q), against the observed ones."""
    rows = score_model(results)
    predicted = [r.measured.split("predicted ")[1].split(",")[0] for r in rows]
    observed = [r.measured.split("observed ")[1] for r in rows]
    values = sorted({int(p) for p in predicted if p != "None"})
    return f"predicted epoch {values[0]}-{values[-1]} for all {len(rows)} runs; observed " + ", ".join(
        "none" if o == "None" else o for o in observed
    )


def unit_late_slope(results: Path) -> str:
    """Inputs in [0, 1], 1000 epochs: the least-squares slope of ink ρ on survivors over
    epochs 850-1000 per 100 epochs, and its 20-epoch means ending at 850 and at 1000, per seed."""
    parts = []
    for config in select_runs("extensions_1000", "unit_inputs", None):
        rho = survivors_of(RunDir.of(config, results).verified(config).path).rho
        last = len(rho)
        parts.append(
            f"seed {config.seed}: {100 * slope(rho, FLAT_FROM, last):+.3f} per 100 epochs "
            f"({rho[FLAT_FROM - 20 : FLAT_FROM].mean():.3f} to {rho[last - 20 :].mean():.3f})"
        )
    return "; ".join(parts)


def top_pixels_by_band(results: Path) -> str:
    """Appendix N: the ink bands of the 50 pixels with most first-layer connections after
    epoch 1000 without decay (ties broken as :func:`synapses_study.reading.selection.top_pixels` breaks them)."""
    from ..reading.selection import top_pixels  # (sklearn only when asked)

    _, band = _bands()
    parts = []
    for config in select_runs("reproduction", None, None, weight_decay=0.0):
        counts = np.bincount(band[top_pixels(RunDir.of(config, results).topology()[1000], 50)], minlength=4)
        parts.append(f"seed {config.seed}: " + ", ".join(f"{c} {n}" for n, c in zip(BAND_NAMES, counts)))
    return "; ".join(parts)


def scaled_against_standardised(results: Path) -> str:
    """Survivor ink ρ at epoch 1000 of the demo net's scaled-input runs (blank pixels at 0)
    against its standardised undecayed runs, each seed."""
    ink, _ = _bands()

    def rho(sweep: str, **fields: object) -> list[str]:
        found = []
        for config in select_runs(sweep, None, None, **fields):
            folder = RunDir.of(config, results)
            if folder.finished(config):
                found.append(f"{float(ink_correlation(final_survivors_of(folder), ink)):+.3f}")
        return found

    scaled, standard = rho("mechanism_1000", inputs="scaled"), rho("reproduction", weight_decay=0.0)
    return f"{', '.join(scaled)} (n = {len(scaled)}) against {', '.join(standard)} (n = {len(standard)})"


# ---------------------------------------------------------------------------- E2's quantities in every recorded run
def demography_summary(run_dir: Path) -> dict[str, float]:
    """E2's births-and-deaths quantities in any run with a lifetime record, read as E2's
    facts read them (the windows and age cuts above): newborn survival, all bands, in epochs
    51-100 and in the last 50 epochs (``survival_early``, ``survival_late``); core over rare
    newborn survival (geometric mean over the 50-epoch windows after epoch 50,
    ``core_rare_survival``); the hazard of connections older than 50 epochs from epoch 151
    on, per band (``hazard_<band>``); the share of the core's established deaths that are
    recruits at most 50 epochs old (``core_recruit_share``); survivors' ink ρ at the last
    epoch and the epoch it first fell below 0 (``ink_rho``, ``crossing``; NaN: never)."""
    folder = RunDir(run_dir)
    folder.verified_config()
    record = read_lifetimes(folder.lifetimes_file)
    _, band = _bands()
    table = demography(record, band)
    per_epoch = table.groupby("epoch")[["newborn_survivors", "newborns"]].sum()
    early = per_epoch.loc[51:100].sum()
    late = per_epoch.loc[record.epochs - 49 :].sum()
    survival = window_rates(table, "newborn_survivors", "newborns", 50)
    ratios = survival[:, BAND_NAMES.index("core")] / survival[:, BAND_NAMES.index("rare")]
    ages = age_structure(record, band, first_epoch=LATE_FROM + 1, old_age=OLD_AGE, young_age=OLD_AGE)
    surv = survivors_of(folder.path)
    crossing = crossing_epoch(surv.rho)
    summary = {
        "survival_early": float(early.newborn_survivors / early.newborns),
        "survival_late": float(late.newborn_survivors / late.newborns),
        "core_rare_survival": float(geometric_mean_ci(ratios)[0]),
        "core_recruit_share": float(ages.recruit_share[BAND_NAMES.index("core")]),
        "ink_rho": float(surv.rho[-1]),
        "crossing": float("nan") if crossing is None else float(crossing),
    }
    summary |= {f"hazard_{name}": float(h) for name, h in zip(BAND_NAMES, ages.old_hazard)}
    return summary
