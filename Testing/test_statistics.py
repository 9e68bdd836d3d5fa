"""Paired statistics of two methods on the same subjects."""
import numpy as np
import pytest
from scipy import stats

from PETITELib.engine.statistics import paired_difference


def test_paired_difference_matches_a_hand_computation():
    a = {"s1": 31.0, "s2": 30.5, "s3": 32.0, "s4": 31.2, "s5": 30.9, "extra": 99.0}
    b = {"s1": 30.0, "s2": 30.1, "s3": 31.0, "s4": 30.0, "s5": 30.4}
    result = paired_difference(a, b)
    differences = np.array([1.0, 0.4, 1.0, 1.2, 0.5])
    half = stats.t.ppf(0.975, 4) * differences.std(ddof=1) / np.sqrt(5)
    assert result["n"] == 5 and result["mean"] == pytest.approx(0.82)
    assert result["ci95"] == pytest.approx([0.82 - half, 0.82 + half])
    assert result["wilcoxon_p"] == pytest.approx(0.0625)  # all 5 differences positive: exact p = 2 / 32
    assert result["significant"] is False


def test_paired_difference_needs_two_shared_subjects_and_handles_ties():
    assert paired_difference({"a": 1.0}, {"a": 2.0}) is None
    same = paired_difference({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0})
    assert same["mean"] == 0.0 and same["wilcoxon_p"] == 1.0 and not same["significant"]
