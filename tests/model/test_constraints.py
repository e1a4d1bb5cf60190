"""The declared parameter rules: intervals, choices, pairs and bounds between parameters."""

from __future__ import annotations

import numpy as np
import pytest

from streamgmm.model.constraints import Bound, Interval, Options, Pair


@pytest.mark.parametrize("closed,low_in,high_in", [
    ("left", True, False), ("right", False, True), ("both", True, True),
    ("neither", False, False),
])
def test_an_interval_takes_its_ends_as_closed_says(closed, low_in, high_in):
    iv = Interval(float, 0, 1, closed=closed)
    assert iv.accepts(0) is low_in and iv.accepts(1.0) is high_in
    assert iv.accepts(0.5) and not iv.accepts(-0.1) and not iv.accepts(1.1)
    assert iv.schema_bounds() == {"min": 0, "exclusive_min": not low_in,
                                  "max": 1, "exclusive_max": not high_in}


def test_an_interval_takes_numpy_numbers_but_no_bool_nan_or_string():
    ints, numbers = Interval(int, 1, None), Interval(float, 0, None)
    assert ints.accepts(np.int64(3)) and not ints.accepts(3.0) and not ints.accepts(True)
    assert numbers.accepts(np.float32(2.5)) and numbers.accepts(2)
    for bad in (True, float("nan"), "1", None):
        assert not numbers.accepts(bad), bad


@pytest.mark.parametrize("iv,text", [
    (Interval(int, 1, None), "an integer >= 1"),
    (Interval(float, 0, None, closed="neither"), "a number > 0"),
    (Interval(float, 0, 0.5, closed="neither"), "a number in (0, 0.5)"),
    (Interval(float, 0, 0.25, closed="right"), "a number in (0, 0.25]"),
    (Interval(int, None, 9, closed="both"), "an integer <= 9"),
])
def test_an_interval_is_described_as_the_yaml_validator_describes_bounds(iv, text):
    assert iv.describe() == text


def test_options_pairs_and_bounds():
    assert Options("a", "b").accepts("b") and not Options("a", "b").accepts("c")
    assert Options("a", "b").describe() == "one of a, b" and Options("x").describe() == "'x'"
    assert Pair(1).accepts((1, 8)) and Pair(1).accepts([np.int64(2), 2])
    for bad in ((3, 1), (0, 2), (1,), (1, 2.0), 5):
        assert not Pair(1).accepts(bad), bad
    params = {"trim": 0.01, "contamination": 0.02, "n": 4, "k": None}
    assert not Bound("trim", "min", "contamination").holds(params)
    assert Bound("trim", "max", "contamination").holds(params)
    assert Bound("n", "min", "k", lambda p: 3).holds(params)
    assert Bound("k", "min", "n").holds(params), "None is not bounded"
    assert Bound("trim", "min", "contamination").named(params) == "contamination (0.02)"
