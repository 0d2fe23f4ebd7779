"""The write-up's statistics, in one place: paired and Welch tests, Holm's correction, and
what a test at this sample size could have detected.

Seed-paired designs (two conditions run with the same seeds: the same initial network
and data order) are compared through their per-seed differences; unpaired ones with
Welch's t-test. Every p value belongs to a named family and is reported Holm-adjusted
within it. A difference that is not significant is reported with its confidence interval
and the smallest difference the test had 80% power to detect, never as "no effect".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Comparison:
    """One comparison of condition A against B (``mean`` is A - B)."""

    name: str
    kind: str  # "paired" or "welch"
    n: int  # pairs (paired) or the smaller group (welch)
    mean: float
    ci_low: float
    ci_high: float
    p: float
    detectable: float  # |difference| with 80% power at alpha 0.05 (two-sided), this n and sd
    higher_in: int | None = None  # paired: seeds where A > B

    def with_p(self, p: float) -> Comparison:
        return Comparison(
            self.name, self.kind, self.n, self.mean, self.ci_low, self.ci_high, p, self.detectable, self.higher_in
        )


def paired(name: str, a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> Comparison:
    """Paired t-test of ``a - b`` (``(n,)`` each, the same seeds in the same order)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(
            f"{name}: a paired test needs two equal-length samples of at least 2, got {a.shape} and {b.shape}"
        )
    diff = a - b
    n, mean, sd = len(diff), float(diff.mean()), float(diff.std(ddof=1))
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * sd / np.sqrt(n)
    p = float(stats.ttest_rel(a, b).pvalue) if sd > 0 else (0.0 if mean != 0 else 1.0)
    return Comparison(
        name,
        "paired",
        n,
        mean,
        mean - half,
        mean + half,
        p,
        detectable_difference(sd, n, paired=True),
        int((diff > 0).sum()),
    )


def welch(name: str, a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> Comparison:
    """Welch's t-test of ``mean(a) - mean(b)`` (independent samples)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"{name}: Welch's test needs at least 2 values per group, got {len(a)} and {len(b)}")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else len(a) + len(b) - 2
    mean = float(a.mean() - b.mean())
    half = stats.t.ppf((1 + confidence) / 2, dof) * se
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue) if se > 0 else (0.0 if mean != 0 else 1.0)
    pooled_sd = float(np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2))
    return Comparison(
        name,
        "welch",
        min(len(a), len(b)),
        mean,
        mean - half,
        mean + half,
        p,
        detectable_difference(pooled_sd, min(len(a), len(b)), paired=False),
    )


def holm(comparisons: list[Comparison]) -> list[Comparison]:
    """The family's comparisons with Holm-adjusted p values (same order)."""
    order = np.argsort([c.p for c in comparisons])
    m = len(comparisons)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * comparisons[index].p))
        adjusted[index] = running
    return [c.with_p(float(p)) for c, p in zip(comparisons, adjusted)]


def geometric_mean_ci(ratios: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the geometric mean of positive ``ratios`` (each one
    observation, such as a rate ratio per window of epochs) and its t confidence interval,
    computed on the log scale and taken back."""
    logs = np.log(np.asarray(ratios, float))
    if logs.ndim != 1 or len(logs) < 2 or not np.isfinite(logs).all():
        raise ValueError(f"a geometric mean's interval needs at least 2 positive ratios, got {ratios}")
    half = stats.t.ppf((1 + confidence) / 2, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs))
    mean = float(logs.mean())
    return float(np.exp(mean)), float(np.exp(mean - half)), float(np.exp(mean + half))


def slope(values: np.ndarray, first: int, last: int) -> float:
    """Least-squares slope per epoch of ``values`` ``(epochs,)`` (row ``e - 1`` after epoch
    ``e``) over epochs ``first`` to ``last`` inclusive."""
    epochs = np.arange(first, last + 1)
    return float(np.polyfit(epochs, np.asarray(values, float)[first - 1 : last], 1)[0])


def detectable_difference(sd: float, n: int, *, paired: bool, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference a two-sided t-test at ``alpha`` detects with ``power``
    (``n`` pairs, or ``n`` per group), for a standard deviation ``sd`` of the differences
    (paired) or of the values (two groups); by the noncentral t distribution."""
    if sd == 0 or n < 2:
        return 0.0 if sd == 0 else float("inf")
    dof = n - 1 if paired else 2 * n - 2
    scale = sd / np.sqrt(n) if paired else sd * np.sqrt(2 / n)
    critical = stats.t.ppf(1 - alpha / 2, dof)

    def achieved(effect: float) -> float:
        shift = effect / scale
        return float(1 - stats.nct.cdf(critical, dof, shift) + stats.nct.cdf(-critical, dof, shift))

    low, high = 0.0, scale
    while achieved(high) < power:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if achieved(middle) < power else (low, middle)
    return high


def describe(c: Comparison, digits: int = 2, unit: str = "") -> str:
    """``A - B = +0.15 (95% CI -0.10 to +0.40; paired t, n = 3, Holm p = 0.40; detectable: 0.52)``."""
    f = f"{{:+.{digits}f}}"
    test = "paired t" if c.kind == "paired" else "Welch"
    seeds = f", higher in {c.higher_in} of {c.n}" if c.higher_in is not None else ""
    return (
        f"{f.format(c.mean)}{unit} (95% CI {f.format(c.ci_low)} to {f.format(c.ci_high)}{unit}; {test}, n = "
        f"{c.n}{seeds}, "
        f"Holm p = {c.p:.2g}; 80% power at {c.detectable:.{digits}f}{unit})"
    )


Formatter = Callable[[np.ndarray], str]  # one value per finished seed -> table cell


def mean_std(digits: int, scale: float = 1.0) -> Formatter:
    """Cells as ``mean ± standard deviation`` (sample, ddof=1) of ``scale`` times the values."""

    def format_cell(values: np.ndarray) -> str:
        values = np.asarray(values, dtype=float) * scale
        values = values[~np.isnan(values)]  # NaN: a seed without that value (a shorter run)
        if len(values) == 0:
            return "–"
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"

    return format_cell
