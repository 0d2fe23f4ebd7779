"""Every p value the write-up quotes, declared in one place: its family, its members, the
test, the correction, and when the family was fixed (before or after the results it tests
were seen).

A family's p values are Holm-adjusted over its members only. :mod:`.facts` computes them
(each family's function there returns the members named here, and fails if it does not);
the write-up's ``<!-- table: families -->`` lists them from this registry, and
``tests/study/test_report.py`` checks that every p value in the write-up sits in a fact of one of
these families.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    members: dict[str, str]  # comparison name -> what it compares (A minus B)
    test: str
    fixed: str  # when the family (members, test, correction) was fixed, and whether before or after looking
    facts: tuple[str, ...]  # the write-up facts that quote its p values
    correction: str = "Holm"


FAMILIES: tuple[Family, ...] = (
    Family(
        "accuracy",
        {
            "decay_1000": "test accuracy (points) at epoch 1000, L2 1e-3 minus no decay (reproduction)",
            "first_0.001": "test accuracy (points), positive minus inverted first layer, L2 1e-3 (fixed_layers)",
            "first_0": "test accuracy (points), positive minus inverted first layer, no decay (fixed_layers)",
            "second_0.001": "test accuracy (points), positive minus inverted second layer, L2 1e-3 (fixed_layers)",
            "second_0": "test accuracy (points), positive minus inverted second layer, no decay (fixed_layers)",
        },
        "paired t over seeds",
        "2026-12-03, after its runs were committed and read: after looking",
        ("decay_accuracy_paired", "fixed_layers_paired"),
    ),
    Family(
        "fixed topology",
        {
            "acc_0.001": "test accuracy (points) at epoch 155, positive minus inverted fixed topology, L2 1e-3",
            "loss_0.001": "test loss at epoch 155, positive minus inverted fixed topology, L2 1e-3",
            "acc_0": "test accuracy (points) at epoch 155, positive minus inverted fixed topology, no decay",
            "loss_0": "test loss at epoch 155, positive minus inverted fixed topology, no decay",
        },
        "paired t over seeds",
        "the four differences before the runs, then with Welch's test and no correction; the paired test "
        "and Holm over the four on 2026-12-07 (issue 35), after looking",
        ("fixed_topology_decay", "fixed_topology_no_decay"),
    ),
    Family(
        "SET net accuracy",
        {
            "set_vs_dense": "test accuracy (points) at the last epoch, SET without decay minus the dense net (Welch: "
            "different networks)",
            "set_decay": "test accuracy (points) at epoch 1000, SET without decay minus SET with L2 1e-3",
        },
        "Welch (against the dense net); paired t over seeds (against L2 1e-3)",
        "2026-12-07 (issue 35), after looking; before, both were Welch tests in no family",
        ("set_mlp_accuracy",),
    ),
)


def family(name: str) -> Family:
    for f in FAMILIES:
        if f.name == name:
            return f
    raise ValueError(f"unknown family {name!r}; known: {[f.name for f in FAMILIES]}")


def family_facts() -> dict[str, str]:
    """Fact name -> the family whose p values it quotes."""
    return {fact: f.name for f in FAMILIES for fact in f.facts}
