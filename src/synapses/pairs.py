"""The two halves of a SET evolution step, on pair keys only (never an in x out mask).

* :func:`prune_closest_to_zero`: per sign, the fraction ``zeta`` of weights closest to zero.
* :func:`sample_free_pairs`: new (input, output) pairs drawn uniformly among those not taken.

A pair is handled as its flat key ``out_index * in_features + in_index``. Membership tests
are a ``searchsorted`` in the sorted keys of the taken pairs, so a step costs
O(n log n) in the number of connections n, whatever ``in_features * out_features`` is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def prune_closest_to_zero(weight: torch.Tensor, zeta: float) -> torch.Tensor:
    """Bool mask ``(n,)`` of the weights SET prunes.

    Among the non-negative weights, the ``int(zeta * count)`` smallest; among the negative
    ones, the ``int(zeta * count)`` largest (both: closest to zero). Exact zeros count as
    non-negative, so weights regrown with value 0 are the first to go.
    """
    mask = torch.zeros_like(weight, dtype=torch.bool)
    non_negative = weight >= 0
    for keep_sign, magnitude in ((non_negative, weight), (~non_negative, -weight)):
        count = int(keep_sign.sum())
        k = int(zeta * count)
        if k == 0:
            continue
        candidates = torch.where(keep_sign, magnitude, torch.full_like(magnitude, float("inf")))
        mask[torch.topk(candidates, k, largest=False, sorted=False).indices] = True
    return mask


def sample_free_pairs(
    taken_keys: torch.Tensor,
    k: int,
    n_pairs: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``k`` distinct keys uniformly from ``range(n_pairs)`` minus ``taken_keys``.

    Args:
        taken_keys: ``(m,)`` int64, distinct keys that must not be drawn (any order).
        k: how many keys to draw.
        n_pairs: size of the key space (``in_features * out_features``).
        generator: source of randomness; its device is where the drawing happens.
            ``None`` uses the default generator of ``taken_keys``' device.

    Returns:
        ``(k,)`` int64 keys on ``taken_keys``' device, in the order they were drawn.

    Sequential rejection sampling: candidates are drawn with replacement, those taken or
    already drawn are rejected, and the first ``k`` survivors in drawing order are a uniform
    sample without replacement. When the free set is small, a permutation of the whole key
    space is cheaper (and then O(n_pairs) = O(m) anyway).
    """
    device = taken_keys.device
    draw_device = generator.device if generator is not None else device
    free = n_pairs - taken_keys.numel()
    if k > free:
        raise ValueError(f"cannot draw {k} new pairs: only {free} of {n_pairs} are free")
    if k == 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    taken_sorted = torch.sort(taken_keys.to(draw_device)).values

    if 4 * k > free:
        candidates = torch.randperm(n_pairs, generator=generator, device=draw_device)
        return candidates[~_is_member(candidates, taken_sorted)][:k].to(device)

    accepted = torch.empty(0, dtype=torch.int64, device=draw_device)
    while accepted.numel() < k:
        missing = k - accepted.numel()
        # Expected acceptance rate is free / n_pairs; draw a little more than needed.
        n_draw = int(missing * n_pairs / free * 1.1) + 16
        candidates = torch.randint(n_pairs, (n_draw,), generator=generator, device=draw_device)
        fresh = ~_is_member(candidates, taken_sorted) & _first_occurrence(candidates)
        if accepted.numel():
            fresh &= ~_is_member(candidates, torch.sort(accepted).values)
        accepted = torch.cat([accepted, candidates[fresh][:missing]])
    return accepted.to(device)


def _is_member(values: torch.Tensor, sorted_set: torch.Tensor) -> torch.Tensor:
    """Bool ``(len(values),)``: whether each value is in ``sorted_set`` (sorted ascending)."""
    if sorted_set.numel() == 0:
        return torch.zeros_like(values, dtype=torch.bool)
    pos = torch.searchsorted(sorted_set, values).clamp_(max=sorted_set.numel() - 1)
    return sorted_set[pos] == values


def _first_occurrence(values: torch.Tensor) -> torch.Tensor:
    """Bool ``(len(values),)``: True where a value appears for the first time."""
    sorted_values, order = torch.sort(values, stable=True)
    first_sorted = torch.ones_like(sorted_values, dtype=torch.bool)
    first_sorted[1:] = sorted_values[1:] != sorted_values[:-1]
    first = torch.empty_like(first_sorted)
    first[order] = first_sorted
    return first


def sample_near_parents(
    parent_keys: torch.Tensor,
    parent_weights: torch.Tensor,
    k: int,
    in_features: int,
    taken_keys: torch.Tensor,
    *,
    input_grid: tuple[int, int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Up to ``k`` free keys next to strong existing connections ("parents").

    Parents are drawn with probability proportional to ``|weight|``; each child keeps its
    parent's output and takes an input next to the parent's: one of the 8 neighbouring
    pixels when ``input_grid = (height, width)`` describes the inputs, else the input
    index +-1. Children outside the input range, already taken or drawn twice are dropped,
    so fewer than ``k`` keys may come back (the caller fills up uniformly).

    Args:
        parent_keys: ``(m,)`` keys of the surviving connections.
        parent_weights: ``(m,)`` their values.
        k: how many children to try.
        in_features: inputs of the layer (keys are ``out * in_features + in``).
        taken_keys: ``(t,)`` keys that must not be drawn.

    Returns:
        ``(<= k,)`` distinct int64 keys on ``parent_keys``' device.
    """
    device = parent_keys.device
    draw_device = generator.device if generator is not None else device
    strength = parent_weights.abs().to(draw_device, torch.float64)
    if k == 0 or parent_keys.numel() == 0 or not bool(strength.sum() > 0):
        return torch.empty(0, dtype=torch.int64, device=device)
    chosen = torch.multinomial(strength, k, replacement=True, generator=generator).to(device)
    keys = parent_keys[chosen]
    outputs, inputs = keys // in_features, keys % in_features
    if input_grid is None:
        step = torch.randint(2, (k,), generator=generator, device=draw_device).to(device) * 2 - 1
        child, valid = inputs + step, (inputs + step >= 0) & (inputs + step < in_features)
    else:
        height, width = input_grid
        if height * width != in_features:  # children would be keys of inputs the layer lacks
            raise ValueError(f"input_grid {tuple(input_grid)} does not have in_features={in_features} pixels")
        offsets = torch.tensor([(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc], device=device)
        pick = offsets[torch.randint(8, (k,), generator=generator, device=draw_device).to(device)]
        row, col = inputs // width + pick[:, 0], inputs % width + pick[:, 1]
        valid = (row >= 0) & (row < height) & (col >= 0) & (col < width)
        child = row * width + col
    child_keys = (outputs * in_features + child)[valid]
    fresh = ~_is_member(child_keys, torch.sort(taken_keys).values) & _first_occurrence(child_keys)
    return child_keys[fresh]


def largest_gradient_pairs(
    taken_keys: torch.Tensor,
    k: int,
    inputs: torch.Tensor,
    grad_outputs: torch.Tensor,
    *,
    chunk_elements: int = 1 << 22,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The ``k`` free pairs whose dense weight gradient is largest in magnitude (RigL).

    The gradient of a batch's loss with respect to the weight of pair (i, o) is
    ``sum_b grad_outputs[b, o] * inputs[b, i]``. It is computed for a block of outputs at a
    time, so peak memory is ``O(chunk_elements + k)`` beside the two inputs, never
    ``in x out``.

    Args:
        taken_keys: ``(m,)`` int64 flat keys ``out * in_features + in`` that may not be chosen.
        k: how many pairs to choose.
        inputs: ``(batch, in_features)`` the layer's input of the last training batch.
        grad_outputs: ``(batch, out_features)`` the loss gradient at the layer's output.
        chunk_elements: candidate gradients held at once (a block of whole output rows).
        reduce: applied to each ``(rows, in_features)`` block of the signed gradient before
            its magnitude is taken (data parallel: the sum over ranks, so that every rank
            chooses from the whole batch's gradient); ``None``: this process's batch alone.

    Returns:
        ``(k,)`` int64 keys, largest gradient magnitude first.
    """
    batch, in_features = inputs.shape
    out_features = grad_outputs.shape[1]
    if k > in_features * out_features - taken_keys.numel():
        raise ValueError(f"cannot choose {k} pairs: only {in_features * out_features - taken_keys.numel()} are free")
    taken = torch.sort(taken_keys).values
    rows = max(1, chunk_elements // in_features)
    best_scores = inputs.new_empty(0)
    best_keys = torch.empty(0, dtype=torch.int64, device=inputs.device)
    for start in range(0, out_features, rows):
        stop = min(start + rows, out_features)
        block = grad_outputs[:, start:stop].t() @ inputs  # (rows, in)
        if reduce is not None:
            block = reduce(block)
        scores = block.abs().flatten()  # (rows * in,)
        # taken pairs inside this block of outputs cannot be chosen
        low, high = torch.searchsorted(
            taken, torch.tensor([start * in_features, stop * in_features], device=taken.device)
        )
        scores[taken[low:high] - start * in_features] = -1.0
        top = torch.topk(scores, min(k, scores.numel()), sorted=False)
        best_scores = torch.cat([best_scores, top.values])
        best_keys = torch.cat([best_keys, top.indices + start * in_features])
        if best_scores.numel() > k:
            keep = torch.topk(best_scores, k, sorted=False).indices
            best_scores, best_keys = best_scores[keep], best_keys[keep]
    order = torch.argsort(best_scores, descending=True)
    return best_keys[order]
