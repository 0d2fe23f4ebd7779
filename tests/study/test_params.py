"""Notebook parameter checks."""

import math

import pytest

from synapses_study.setup.params import (
    ParameterError,
    check_parameters,
    list_of,
    mapping,
    non_negative_int,
    non_negative_number,
    number_in,
    one_of,
    optional,
    positive_int,
    text,
)


@pytest.mark.parametrize(
    "value, rule, ok",
    [
        ("smoke", one_of("smoke", "paper"), True),
        ("nonsense", one_of("smoke", "paper"), False),
        (None, optional(positive_int), True),
        (0, positive_int, False),
        (True, positive_int, False),
        (3, non_negative_int, True),
        (-1, non_negative_int, False),
        (1e-3, non_negative_number, True),
        (math.nan, non_negative_number, False),
        ([0, 1], list_of(non_negative_int), True),
        ([], list_of(non_negative_int), False),
        (3, list_of(non_negative_int), False),
        ([0, "1"], list_of(non_negative_int), False),
        (0.01, number_in(0, 1, low_open=True), True),
        (0, number_in(0, 1, low_open=True), False),
        (1.5, number_in(0, 1), False),
        ("", text, False),
        ({}, mapping, True),
    ],
)
def test_rules(value, rule, ok):
    assert (rule(value) is None) == ok


def test_every_bad_parameter_is_named_once_in_one_error():
    with pytest.raises(ParameterError) as info:
        check_parameters(
            profile=("x", one_of("smoke")), seeds=([1], optional(list_of(non_negative_int))), epochs=(0, positive_int)
        )
    assert (
        str(info.value)
        == "parameter profile must be one of 'smoke', got 'x'; parameter epochs must be an integer >= 1, got 0"
    )
