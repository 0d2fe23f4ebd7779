"""Numbers the write-up quotes in its prose that no table holds, computed from results/.

Each fact is a function of the results folder that returns the text the write-up shows;
``python -m synapses_study.writeup.report`` fills ``<!--v fact:NAME -->...<!--/v-->`` markers with it
and ``--check`` fails when one differs, so these numbers cannot go stale either.

    python -m synapses_study.writeup.facts          # print every fact
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..measures.analysis import TRAILING_WINDOW, ink_correlation, settles_below_zero
from ..measures.survivors import ink_band
from ..mechanism import account as mechanism
from ..mechanism.protocol import crossings
from ..reading.families import FAMILIES, family
from ..reading.results import (
    excess_pruning,
    final_survivor_counts,
    load_metrics,
    select_runs,
    survivor_ink_correlation,
    training_ink,
)
from ..reading.stats import Comparison, describe, holm, paired, welch
from ..runs.run_dir import RunDir
from ..setup.config import ExperimentConfig
from ..setup.paths import RESULTS
from ..setup.sweep_file import CONFIGS, load_sweep, sweep_names

# Windows (epochs, inclusive) chosen after the first draft quoted single epochs, which an
# epoch-to-epoch sd of about 0.02 in center_ratio made unreliable; 20 epochs end each run.
EARLY_WINDOW = (91, 110)  # "by epoch 100" of the growing decay
EXPERIMENT_1_WINDOW = (140, 155)  # the end of the original's 155-epoch Experiment_1


def _run(results: Path, config: ExperimentConfig) -> RunDir:
    """``config``'s run folder, verified to be its finished run (a damaged one is named)."""
    return RunDir.of(config, results).verified(config)


def _metrics(results: Path, config: ExperimentConfig) -> pd.DataFrame:
    return load_metrics(_run(results, config).path)


def _topology(results: Path, config: ExperimentConfig) -> np.ndarray:
    return _run(results, config).topology()


def study_runs(configs_dir: Path = CONFIGS) -> list[ExperimentConfig]:
    """Every run the study's sweep files name, once each, in file order: the only runs the
    write-up's numbers come from (a trial run elsewhere in results/ never counts)."""
    found: dict[str, ExperimentConfig] = {}
    for name in sweep_names(configs_dir):
        for run in load_sweep(configs_dir / f"{name}.yaml").runs:
            found.setdefault(run.config.run_id(), run.config)
    return list(found.values())


def empty_pixels(results: Path) -> str:
    """How many finished sparse runs of the sweep files ever had an input pixel without any
    first-layer connection (a damaged run is an error, never left out)."""
    runs = sorted(
        (c for c in study_runs() if c.model != "Dense" and RunDir.of(c, results).finished(c)),
        key=ExperimentConfig.run_id,
    )
    hits = []
    for config in runs:
        counts = _topology(results, config)
        epochs, pixels = np.nonzero(counts == 0)
        if len(epochs):
            hits.append(
                f"{config.run_id()}: pixel {pixels[0]} after epoch {epochs[0]}, {len(epochs)} pixel-epoch(s) in all"
            )
    return f"{len(hits)} of {len(runs)} runs" + (f" ({'; '.join(hits)})" if hits else "")


def experiment_1_window(results: Path) -> str:
    """Range over seeds of the lowest test loss in epochs 140-155, sweep155 at 1e-3."""
    low, high = EXPERIMENT_1_WINDOW
    minima = [
        _metrics(results, c).query(f"{low} <= epoch <= {high}")["test_loss"].min()
        for c in select_runs("sweep155", weight_decay=1e-3)
    ]
    return f"{min(minima):.4f} to {max(minima):.4f}"


def growing_early(results: Path) -> str:
    """Mean center_ratio over epochs 91-110: growing decay, constant 1e-2 and 1e-3 (seed ranges)."""
    low, high = EARLY_WINDOW
    groups = {
        "growing": select_runs("growing_l2"),
        "1e-2": select_runs("reproduction", weight_decay=1e-2),
        "1e-3": select_runs("reproduction", weight_decay=1e-3),
    }
    parts = []
    for name, configs in groups.items():
        values = [_metrics(results, c).query(f"{low} <= epoch <= {high}")["center_ratio"].mean() for c in configs]
        parts.append(f"{name} {min(values):.3f} to {max(values):.3f}")
    return ", ".join(parts)


def decoupled_paired(results: Path) -> str:
    """Decoupled 2e-5 minus coupled 1e-3 in ink ρ on survivors, paired by seed (the same
    initial draw and data order) over all 1000 epochs: the reruns with pruning recorded
    (``survivors_curves``) against the headline runs of the same seed, the mean difference
    per seed and the share of epochs where decoupled is higher."""
    coupled = {c.seed: c for c in select_runs("headline_seeds", weight_decay=1e-3)}
    seeds, means, shares = [], [], []
    for config in select_runs("survivors_curves", entry="decoupled"):
        decoupled_rho, coupled_rho = (
            survivor_ink_correlation(_run(results, c).path)["ink_rho"].to_numpy()
            for c in (config, coupled[config.seed])
        )
        difference = (decoupled_rho - coupled_rho)[1:]
        seeds.append(str(config.seed))
        means.append(f"{difference.mean():+.3f}")
        shares.append(f"{100 * (difference > 0).mean():.0f}%")
    return f"mean {', '.join(means)} for seeds {', '.join(seeds)}; higher in {', '.join(shares)} of epochs"


def _last_epoch_by_seed(results: Path, sweep: str, entry: str, weight_decay: float, metric: str) -> dict[int, float]:
    return {
        c.seed: _metrics(results, c).iloc[-1][metric]
        for c in select_runs(sweep, entry=entry, weight_decay=weight_decay)
    }


def _checked(name: str, comparisons: list[Comparison]) -> dict[str, Comparison]:
    """The family ``name``'s comparisons, Holm-adjusted, after checking they are exactly
    the members :mod:`.families` declares."""
    declared = set(family(name).members)
    if {c.name for c in comparisons} != declared:
        raise ValueError(
            f"family {name!r}: computed {sorted(c.name for c in comparisons)}, declared {sorted(declared)}"
        )
    return {c.name: c for c in holm(comparisons)}


def _fixed_topology_family(results: Path) -> tuple[dict[str, Comparison], dict[str, tuple[list[int], np.ndarray]]]:
    """The fixed-topology family: positive minus inverted fixed topology at the last epoch,
    paired by seed (same fresh weights and data order), test accuracy in points and test
    loss, at each decay; paired t, Holm over the four. Also each member's seeds and per-seed
    differences."""
    comparisons, per_seed = [], {}
    for decay in (1e-3, 0.0):
        for metric, scale, short in (("test_acc", 100, "acc"), ("test_loss", 1, "loss")):
            high, low = (
                _last_epoch_by_seed(results, "fixed_topology", entry, decay, metric)
                for entry in ("positive", "inverted")
            )
            seeds = sorted(high.keys() & low.keys())
            a, b = scale * np.array([high[s] for s in seeds]), scale * np.array([low[s] for s in seeds])
            name = f"{short}_{decay:g}"
            comparisons.append(paired(name, a, b))
            per_seed[name] = (seeds, a - b)
    return _checked("fixed topology", comparisons), per_seed


def _fixed_topology_differences(results: Path, weight_decay: float) -> str:
    """Positive minus inverted fixed topology at one decay, at the last epoch: test accuracy
    in points and test loss, each seed's, with the paired t-test's p, Holm-adjusted over the
    fixed-topology family (:mod:`.families`)."""
    family_, per_seed = _fixed_topology_family(results)
    parts = []
    for short, label, unit, digits in (("acc", "test acc", " points", 2), ("loss", "test loss", "", 3)):
        name = f"{short}_{weight_decay:g}"
        seeds, differences = per_seed[name]
        listed = ", ".join(f"{d:+.{digits}f}" for d in differences)
        parts.append(
            f"{label} {listed}{unit} (seeds {', '.join(map(str, seeds))}; paired t, Holm p = {family_[name].p:.2g})"
        )
    return "; ".join(parts)


def fixed_topology_no_decay(results: Path) -> str:
    """Positive minus inverted fixed topology without decay (see _fixed_topology_differences)."""
    return _fixed_topology_differences(results, 0.0)


def fixed_topology_decay(results: Path) -> str:
    """Positive minus inverted fixed topology with L2 1e-3 (see _fixed_topology_differences)."""
    return _fixed_topology_differences(results, 1e-3)


# The excess-pruning curves' trailing window is TRAILING_WINDOW, fixed before the 1000-epoch
# recorded runs were made.


def seed_reruns(results: Path) -> str:
    """How far a rerun of the same seed repeats a committed run made before the rounding was
    pinned: per pair (below) and seed, the last epoch with identical
    connections per pixel, and ink ρ on survivors at the last epoch of each (original, then
    rerun). Only processor rounding can part them."""
    # the committed reruns of a committed run's seed with recording switched on (recording
    # draws no random numbers): (label, the originals, the reruns)
    pairs: tuple[tuple[str, list[ExperimentConfig], list[ExperimentConfig]], ...] = (
        (
            "no decay",
            select_runs("reproduction", weight_decay=0.0),
            select_runs("mechanism_1000", inputs="standardized"),
        ),
        (
            "L2 1e-3",
            select_runs("reproduction", weight_decay=1e-3),
            select_runs("why_it_inverts", "survivors_decay", weight_decay=1e-3),
        ),
        (
            "L2 1e-2",
            select_runs("reproduction", weight_decay=1e-2),
            select_runs("why_it_inverts", "survivors_decay", weight_decay=1e-2),
        ),
    )
    ink = training_ink()
    parts = []
    for label, original_runs, reruns in pairs:
        originals = {c.seed: c for c in original_runs}
        for config in reruns:
            original = originals[config.seed]
            same = [np.array_equal(a, b) for a, b in zip(_topology(results, original), _topology(results, config))]
            agree = len(same) if all(same) else same.index(False)
            rho = [
                float(ink_correlation(final_survivor_counts(_run(results, c).path), ink)) for c in (original, config)
            ]
            parts.append(
                f"{label} seed {config.seed}: identical through epoch {agree - 1}, ρ at the end {rho[0]:.3f} and "
                f"{rho[1]:.3f}"
            )
    return "; ".join(parts)


def pruning_crossing(results: Path) -> str:
    """Per input scaling and seed of mechanism_1000: the first epoch from which blank pixels
    are pruned no more than inked ones (pruned fraction, trailing 20-epoch mean) until epoch
    1000, or "never"."""
    groups = {inputs: select_runs("mechanism_1000", inputs=inputs) for inputs in ("standardized", "scaled")}
    excess = excess_pruning(groups, results, window=TRAILING_WINDOW)
    parts = []
    for (inputs, seed), run in excess.groupby(["configuration", "seed"], sort=False):
        above = run.loc[run["excess"] > 0, "epoch"]
        crossing = (
            "never"
            if len(above) and above.max() == run["epoch"].max()
            else f"epoch {int(above.max()) + 1 if len(above) else 1}"
        )
        parts.append(f"{inputs} seed {seed}: {crossing}")
    return "; ".join(parts)


def turns_negative(results: Path) -> str:
    """Per seed, the first epoch from which ink ρ (trailing 20-epoch mean) stays below 0 to
    the end, without decay: the SET paper's network (set_mlp) and the demo net
    (reproduction)."""
    ink = training_ink()
    parts = []
    for name, sweep, entry in (("SET paper's network", "set_mlp", "set"), ("demo net", "reproduction", None)):
        epochs = []
        for config in select_runs(sweep, entry, weight_decay=0.0):
            epoch = settles_below_zero(np.asarray(ink_correlation(_topology(results, config), ink)))
            epochs.append("never" if epoch is None else str(epoch))  # row e of topology.npz: after epoch e
        parts.append(f"{name}: epochs {', '.join(epochs)}")
    return "; ".join(parts)


def _set_mlp_family(results: Path) -> dict[str, Comparison]:
    """The SET net's accuracy family: final test accuracy (points) of SET without decay
    against the dense net (Welch: a different network) and against SET with L2 1e-3 (paired
    by seed: same initial draw and data order); Holm over the two."""

    def accuracy(entry: str, **fields: Any) -> dict[int, float]:
        return {
            c.seed: 100 * _metrics(results, c)["test_acc"].iloc[-1] for c in select_runs("set_mlp", entry, **fields)
        }

    plain, dense, decayed = accuracy("set", weight_decay=0.0), accuracy("dense"), accuracy("set", weight_decay=1e-3)
    seeds = sorted(plain.keys() & decayed.keys())
    return _checked(
        "SET net accuracy",
        [
            welch("set_vs_dense", np.array(list(plain.values())), np.array(list(dense.values()))),
            paired("set_decay", np.array([plain[s] for s in seeds]), np.array([decayed[s] for s in seeds])),
        ],
    )


def set_mlp_accuracy(results: Path) -> str:
    """SET without decay against the dense net (Welch) and against SET with L2 1e-3 (paired
    t), final test accuracy, Holm over the two (the SET net's accuracy family)."""
    family_ = _set_mlp_family(results)
    dense, decay = family_["set_vs_dense"], family_["set_decay"]
    return (
        f"against the dense net Welch {_p_value(dense.p)}, against L2 1e-3 paired {_p_value(decay.p)}; "
        "Holm over the two"
    )


def _p_value(p: float) -> str:
    """``p = 0.20``, or ``p < 0.001`` below what two decimals of three seeds can say."""
    return f"p = {_p_number(p)}" if p >= 0.001 else "p < 0.001"


def _p_number(p: float) -> str:
    """Two significant digits below 0.1 (0.048, 0.0014), two decimals above (0.20)."""
    return f"{p:.2g}" if p < 0.1 else f"{p:.2f}"


def idle_sign_skew(results: Path) -> str:
    """Share of positive weights among the never-inked pixels' surviving first-layer
    connections at the last epoch, undecayed: the demo net and the SET paper's (seed range)."""
    never = ink_band(training_ink()) == 0
    parts = []
    for label, sweep, entry in (("demo net", "reproduction", None), ("SET paper's net", "set_mlp", "set")):
        shares = []
        for config in select_runs(sweep, entry, None, weight_decay=0.0):
            state = _run(results, config).model_state()
            connections, weight, pruned = (
                state["set_layers.0.connections"],
                state["set_layers.0.weight"],
                state["set_layers.0.pruned"],
            )
            idle = ~pruned & torch.from_numpy(never)[connections[:, 0]]
            shares.append(float((weight[idle] > 0).double().mean()))
        parts.append(f"{label} {100 * min(shares):.0f}% to {100 * max(shares):.0f}% positive (n = {len(shares)})")
    return "; ".join(parts)


def _accuracy_family(results: Path) -> dict[str, Comparison]:
    """The accuracy family: every paired comparison of last-epoch test accuracy the
    write-up makes, tested together (paired t, Holm over the family), in points:
    decay 1e-3 against none over 1000 epochs (reproduction, seeds paired), and, per learned
    layer and decay, the positive against the inverted fixed topology (fixed_layers)."""

    def last(sweep: str, entry: str | None, **fields: object) -> dict[int, float]:
        return {
            c.seed: 100 * _metrics(results, c)["test_acc"].iloc[-1] for c in select_runs(sweep, entry, None, **fields)
        }

    def pair(name: str, a: dict[int, float], b: dict[int, float]) -> Comparison:
        seeds = sorted(a.keys() & b.keys())
        return paired(name, np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds]))

    members = [
        pair("decay_1000", last("reproduction", None, weight_decay=1e-3), last("reproduction", None, weight_decay=0.0))
    ]
    for layer in ("first", "second"):
        for decay in (1e-3, 0.0):
            members.append(
                pair(
                    f"{layer}_{decay:g}",
                    last("fixed_layers", f"positive_{layer}", weight_decay=decay),
                    last("fixed_layers", f"inverted_{layer}", weight_decay=decay),
                )
            )
    return _checked("accuracy", members)


def decay_accuracy_paired(results: Path) -> str:
    """Test accuracy at epoch 1000, decay 1e-3 minus none, paired by seed (accuracy family)."""
    return describe(_accuracy_family(results)["decay_1000"], 2, " points")


def fixed_layers_paired(results: Path) -> str:
    """Positive minus inverted fixed topology per learned layer and decay, paired by seed
    (accuracy family, Holm over its five tests)."""
    family = _accuracy_family(results)
    return "; ".join(
        f"{layer} layer, {'no decay' if decay == '0' else 'decay ' + decay}: "
        f"{describe(family[f'{layer}_{decay}'], 2, ' points')}"
        for layer in ("first", "second")
        for decay in ("0.001", "0")
    )


def protocol_crossings(results: Path) -> str:
    """Claim 8: the epoch from which recorded ink ρ stays below 0, per seed, of the demo net
    trained with the SET paper's protocol, at its own and at the SET net's connections per
    pixel (configs/protocol_matched.yaml; the instrument of turns_negative)."""
    found = crossings(results)
    own, dense = (
        ", ".join(str(v) for _, v in sorted(found[name].items())) for name in ("protocol", "protocol + density")
    )
    return f"epochs {own}; at the SET net's connections per pixel {dense}"


FAMILY_COMPARISONS: dict[str, Callable[[Path], dict[str, Comparison]]] = {
    "accuracy": _accuracy_family,
    "fixed topology": lambda results: _fixed_topology_family(results)[0],
    "SET net accuracy": _set_mlp_family,
}


def family_table(results: Path) -> str:
    """The write-up's table of statistical families (:mod:`.families`): each member with
    its test, its difference and its Holm-adjusted p, and when its family was fixed."""
    lines = [
        "| family | fixed | comparison (A minus B) | test | A minus B | p, Holm over the family |",
        "|---|---|---|---|---|---|",
    ]
    for declared in FAMILIES:
        computed = FAMILY_COMPARISONS[declared.name](results)
        for i, (name, what) in enumerate(declared.members.items()):
            c = computed[name]
            head = f"{declared.name} | {declared.fixed}" if i == 0 else " | "
            test = "paired t" if c.kind == "paired" else "Welch"
            lines.append(f"| {head} | {what} | {test}, n = {c.n} | {c.mean:+.3g} | {_p_number(c.p)} |")
    return "\n".join(lines) + "\n"


FACTS: dict[str, Callable[[Path], str]] = {
    "empty_pixels": empty_pixels,
    "decay_accuracy_paired": decay_accuracy_paired,
    "fixed_layers_paired": fixed_layers_paired,
    "idle_sign_skew": idle_sign_skew,
    "experiment_1_window": experiment_1_window,
    "growing_early": growing_early,
    "decoupled_paired": decoupled_paired,
    "fixed_topology_no_decay": fixed_topology_no_decay,
    "fixed_topology_decay": fixed_topology_decay,
    "seed_reruns": seed_reruns,
    "pruning_crossing": pruning_crossing,
    "turns_negative": turns_negative,
    "set_mlp_accuracy": set_mlp_accuracy,
    "protocol_crossings": protocol_crossings,
    # "Why it inverts" on what holds (issue 35, section 4): src/synapses_study/mechanism/account.py
    "newborn_survival_windows": mechanism.newborn_survival_windows,
    "core_rare_newborn_survival": mechanism.core_rare_newborn_survival,
    "never_medium_hazard": mechanism.never_medium_hazard,
    "old_hazards": mechanism.old_hazards,
    "core_recruit_deaths": mechanism.core_recruit_deaths,
    "equalised_account": mechanism.equalised_account,
    "tipping_against_crossing": mechanism.tipping_against_crossing,
    "account_epochs": mechanism.account_epochs,
    "unit_late_slope": mechanism.unit_late_slope,
    "top_pixels_by_band": mechanism.top_pixels_by_band,
    "scaled_against_standardised": mechanism.scaled_against_standardised,
}


def fact(name: str, results: Path) -> str:
    if name not in FACTS:
        raise ValueError(f"unknown fact {name!r}; known: {sorted(FACTS)}")
    return FACTS[name](results)


def main(argv: list[str] | None = None) -> int:
    for name, compute in FACTS.items():
        print(f"{name}: {compute(RESULTS)}  ({(compute.__doc__ or '').strip().splitlines()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
